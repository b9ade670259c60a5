"""``--steps N`` stops every stage after exactly N optimizer steps; ``--device`` reaches R-CNN's
every part (checked on the CPU with a pretend "cuda", and on a real GPU where there is one)."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest
import torch

from stages.data.sources import CocoDataset
from stages.training import engine
from stages import run
from stages.devices import seed_everything

TINY_CHANNELS = ("--backbone", "tiny", "--backbone-channels", "8", "16", "16", "16", "16")
STAGES = {  # stage: its flags for a fast run on the tiny set
    "rcnn": ["--workers", "1", *TINY_CHANNELS],
    "fast_rcnn": [],
    "faster_rcnn": [],
    "mask_rcnn": [],
}


def stage_argv(tiny_synthetic, data_root, out) -> list[str]:
    return ["--data", f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}",
            "--data-root", str(data_root), "--out", str(out), "--no-progress", "--device", "cpu"]


@pytest.mark.parametrize("stage", list(STAGES))
def test_steps_stop_every_stage_after_exactly_n(stage, tiny_synthetic, data_root, tmp_path):
    main = importlib.import_module(f"stages.{stage}.__main__").main
    out = tmp_path / stage
    # 5 steps: more than one epoch of the 7 training images in batches of 2 (stages 2-4), and no
    # time budget: --steps replaces the quick preset's seconds
    result = main(stage_argv(tiny_synthetic, data_root, out) + STAGES[stage] + ["--steps", "5"])
    assert result.steps == 5 and result.stopped_by == "steps"
    record = json.loads((out / "metrics.json").read_text())
    assert record["steps"] == 5 and record["stopped_by"] == "steps"
    if stage == "rcnn":  # its CNN's mini-batches
        assert len(json.loads((out / "train_log.json").read_text())["cnn_history"]) == 5
    else:
        assert [r["step"] for r in json.loads((out / "losses.json").read_text())] == [1, 2, 3, 4, 5]


def test_rcnn_steps_are_shared_between_pre_training_and_fine_tuning(tiny_synthetic, data_root,
                                                                    tmp_path):
    from stages.rcnn.__main__ import main
    out = tmp_path / "run"
    main(stage_argv(tiny_synthetic, data_root, out) + STAGES["rcnn"]
         + ["--pretrain-epochs", "50", "--steps", "4"])
    history = json.loads((out / "train_log.json").read_text())["cnn_history"]
    kinds = [h["step"] for h in history]
    assert len(kinds) == 4 and kinds[-1] == "finetune"  # the planned share, one at least fine-tunes
    assert "pretrain" in kinds


def test_a_record_without_a_newer_flag_counts_as_its_default():
    from stages.compare_reuse import same_settings
    wanted = {"seed": 0, "steps": None}
    assert same_settings({"seed": 0}, wanted)  # written before --steps existed
    assert not same_settings({"seed": 0}, {"seed": 0, "steps": 5})
    assert not same_settings({"seed": 1}, wanted) and not same_settings(None, wanted)


def test_steps_count_across_a_resume(tiny_synthetic, tmp_path):
    from test_engine import ToyDetector

    train_set = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")

    def train(max_steps, resume):
        seed_everything(0)
        model = ToyDetector()
        return engine.train(model, torch.optim.SGD(model.parameters(), lr=0.1), train_set,
                            out_dir=tmp_path, stage="toy", config={}, epochs=None,
                            max_steps=max_steps, batch_size=3, resume=resume, progress=False)

    first = train(4, resume=False)  # 3 batches per epoch: it stops inside epoch 2
    assert first.steps == 4 and first.stopped_by == "steps" and first.epochs == 2
    again = train(9, resume=True)
    assert again.steps == 9 and [r["step"] for r in again.history] == list(range(1, 10))
    assert train(9, resume=True).steps == 9  # nothing left: no step taken


def test_a_bad_steps_value_is_one_line(tiny_synthetic, data_root, tmp_path, capsys):
    """The parser refuses it (exit status 2), before any data is read."""
    from stages.faster_rcnn.__main__ import main
    with pytest.raises(SystemExit) as e:
        main(stage_argv(tiny_synthetic, data_root, tmp_path) + ["--steps", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("error: argument --steps: 0: expected a number >= 1 "
                        "(see python -m stages.faster_rcnn --help)") and "\n" not in err


def test_rcnn_threads_the_device_through_every_part(monkeypatch, tiny_synthetic, data_root,
                                                    tmp_path):
    """--device cuda on a CPU-only machine, the device check told to take it: every part R-CNN
    runs on the device is handed "cuda" (recorded, then run on the CPU so that the test can
    finish)."""
    rcnn_main = importlib.import_module("stages.rcnn.__main__")
    rcnn_train = importlib.import_module("stages.rcnn.train")  # train_rcnn: the steps it calls
    seen = {}
    cpu = torch.device("cpu")
    monkeypatch.setattr(run, "choose_device", torch.device)  # "cuda", unchecked

    def spy(name, function):
        def wrapper(*args, device, **kwargs):
            seen[name] = torch.device(device)
            return function(*args, device=cpu, **kwargs)
        return wrapper

    class RecordingRCNN(rcnn_train.RCNN):
        def to(self, device):  # the model's CNN, SVMs and regressors on the device
            seen["model"] = torch.device(device)
            return super().to(cpu)

    finish = run.finish

    def recording_finish(model, ctx, **kwargs):  # evaluation and the prediction figure
        seen["evaluate"] = ctx.device
        return finish(model, dataclasses.replace(ctx, device=cpu), **kwargs)

    monkeypatch.setattr(rcnn_train, "train_cnn", spy("train_cnn", rcnn_train.train_cnn))
    monkeypatch.setattr(rcnn_train, "region_features", spy("features", rcnn_train.region_features))
    monkeypatch.setattr(rcnn_train, "RCNN", RecordingRCNN)
    monkeypatch.setattr(run, "finish", recording_finish)
    argv = stage_argv(tiny_synthetic, data_root, tmp_path / "run") + STAGES["rcnn"]
    argv[argv.index("--device") + 1] = "cuda"
    rcnn_main.main(argv + ["--steps", "2"])
    assert seen == {name: torch.device("cuda")
                    for name in ("train_cnn", "features", "model", "evaluate")}


def test_rcnn_model_to_moves_the_svms_and_regressors():
    """``model.to(...)`` moves the plain tensors of the SVMs and regressors with the CNN (here to
    float64, a move that the CPU can show)."""
    from stages.rcnn import RCNN, RCNNConfig
    from stages.rcnn.bbox_regression import BoxRegressors
    from stages.rcnn.model import build_region_cnn
    from stages.rcnn.svm import ClassSVMs

    cfg = RCNNConfig(backbone="tiny", backbone_channels=(8, 16, 16, 16, 16), warp_size=56)
    cnn = build_region_cnn(cfg, 2)
    D, F = cnn.fc.fc7.out_features, cnn.pool5_dim
    model = RCNN(cfg, lambda image: torch.zeros(0, 4), cnn,
                 ClassSVMs(torch.zeros(2, D), torch.zeros(2), 1.0),
                 BoxRegressors(torch.zeros(2, 4, F), torch.zeros(2, 4), 1.0)).double()
    assert model.svms.weight.dtype == model.regressors.weight.dtype == torch.float64
    assert model.cnn.cls_score.weight.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_rcnn_on_a_gpu(tiny_synthetic, data_root, tmp_path):
    from stages.rcnn.__main__ import main
    argv = stage_argv(tiny_synthetic, data_root, tmp_path / "run") + STAGES["rcnn"]
    argv[argv.index("--device") + 1] = "cuda"
    main(argv + ["--steps", "3"])
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["device"].startswith("cuda") and record["steps"] == 3
    assert record["box"]["AP"] >= 0 and record["ms_network"] > 0
