"""The shared training utilities: device choice, seeding, the loop, checkpoints and resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from stages.training import engine
from stages.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stages.flags import RunConfig, add_dataclass_args, dataclass_from_args
from stages.data.sources import CocoDataset
from stages.devices import choose_device, count_parameters, seed_everything


class ToyDetector(nn.Module):
    """Predicts one box per image from the mean colour: just enough model to drive the loop.

    train mode: ``model(images, targets)`` -> dict of named losses; eval mode: ``model(images)``
    -> one dict per image, as every stage's model does.
    """

    def __init__(self, nan_after: int | None = None):
        super().__init__()
        self.box = nn.Linear(3, 4)
        self.cls = nn.Linear(3, 4)
        self.calls, self.nan_after = 0, nan_after

    def forward(self, images, targets=None):
        feats = torch.stack([im.mean(dim=(1, 2)) for im in images])  # (N, 3)
        if self.training:
            self.calls += 1
            gt_box = torch.stack([t["boxes"][0] / 128 if len(t["boxes"]) else torch.zeros(4)
                                  for t in targets])
            gt_cls = torch.stack([t["labels"][0] if len(t["labels"]) else torch.tensor(0)
                                  for t in targets])
            loss_box = nn.functional.smooth_l1_loss(self.box(feats), gt_box)
            if self.nan_after is not None and self.calls > self.nan_after:
                loss_box = loss_box * float("nan")
            return {"loss_cls": nn.functional.cross_entropy(self.cls(feats), gt_cls),
                    "loss_box": loss_box}
        boxes = (self.box(feats) * 128).sort(dim=1).values  # crude but valid x1<=.., fine here
        scores, labels = self.cls(feats).softmax(1)[:, 1:].max(1)
        return [{"boxes": b[None][:, [0, 1, 2, 3]], "labels": (l + 1)[None], "scores": s[None]}
                for b, l, s in zip(boxes, labels, scores)]


@pytest.fixture
def train_set(tiny_synthetic):
    return CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")


def _run(train_set, out_dir, seed=0, epochs=2, resume=False, model=None, **kw):
    seed_everything(seed)
    model = model or ToyDetector()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    result = engine.train(model, optimizer, train_set, out_dir=out_dir, stage="toy",
                          config={"lr": 0.1}, epochs=epochs, batch_size=2, seed=seed,
                          resume=resume, progress=False, **kw)
    return model, result


def test_device_choice():
    assert choose_device("cpu").type == "cpu"
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="--device 'tpu'"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            choose_device("cuda")


def test_training_writes_checkpoint_and_losses(train_set, tmp_path):
    model, result = _run(train_set, tmp_path)
    assert result.epochs == 2 and result.steps == 8 and result.stopped_by == "epochs"
    losses = json.loads((tmp_path / "losses.json").read_text())
    assert len(losses) == 8 and {"loss", "loss_cls", "loss_box", "epoch", "step"} <= set(losses[0])
    assert losses[-1]["loss"] < losses[0]["loss"], "the toy model should learn something"
    state = load_checkpoint(tmp_path / "checkpoint.pt", stage="toy", class_names=train_set.class_names)
    assert state["epoch"] == 2 and state["step"] == 8
    assert torch.equal(state["model"]["box.weight"], model.box.weight)
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_same_seed_same_losses_different_seed_different(train_set, tmp_path):
    _, a = _run(train_set, tmp_path / "a", seed=3)
    _, b = _run(train_set, tmp_path / "b", seed=3)
    _, c = _run(train_set, tmp_path / "c", seed=4)
    strip = lambda h: [{k: v for k, v in r.items() if k != "time_s"} for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert strip(a.history) != strip(c.history)


def test_resume_continues_where_it_stopped(train_set, tmp_path):
    full_model, full = _run(train_set, tmp_path / "full", epochs=3)
    _run(train_set, tmp_path / "split", epochs=1)
    resumed_model, resumed = _run(train_set, tmp_path / "split", epochs=3, resume=True, seed=0)
    assert resumed.epochs == 3 and resumed.steps == full.steps
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in full.history])
    torch.testing.assert_close(resumed_model.box.weight, full_model.box.weight)


def test_lr_drops_tenfold_after_the_given_fraction_and_survives_resume(train_set, tmp_path):
    _, result = _run(train_set, tmp_path / "a", epochs=4, lr_drop=0.75)  # 4 steps per epoch
    lrs = [r["lr"] for r in result.history]
    assert lrs == pytest.approx([0.1] * 12 + [0.01] * 4)
    # a run resumed after the drop keeps dividing the *initial* lr, not the dropped one again
    _run(train_set, tmp_path / "b", epochs=4, lr_drop=0.75)
    _, resumed = _run(train_set, tmp_path / "b", epochs=5, lr_drop=0.75, resume=True)
    assert resumed.history[-1]["lr"] == pytest.approx(0.01)


def test_time_budget_stops_training(train_set, tmp_path):
    _, result = _run(train_set, tmp_path, epochs=None, time_budget_s=1e-9)
    assert result.stopped_by == "time_budget" and result.steps == 1
    assert (tmp_path / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="stopping rule"):
        _run(train_set, tmp_path, epochs=None, time_budget_s=None)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(train_set, tmp_path):
    _run(train_set, tmp_path, epochs=1)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with pytest.raises(engine.NonFiniteLossError, match=r"loss became nan at epoch 2, step 6.*"
                                                        r"last good checkpoint .*checkpoint\.pt is kept"):
        _run(train_set, tmp_path, epochs=3, resume=True, model=ToyDetector(nan_after=1))
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_checkpoint_from_another_stage_or_class_count_is_refused(tmp_path):
    model = ToyDetector()
    path = save_checkpoint(tmp_path / "c.pt", stage="fast_rcnn", class_names=["background", "a", "b"],
                           config={}, model=model)
    with pytest.raises(CheckpointError, match="written by stage 'fast_rcnn', not 'mask_rcnn'"):
        load_checkpoint(path, stage="mask_rcnn")
    with pytest.raises(CheckpointError, match="trained for 2 classes, the data has 3"):
        load_checkpoint(path, stage="fast_rcnn", class_names=["background", "a", "b", "c"])
    assert load_checkpoint(path, stage="fast_rcnn", class_names=["background", "a", "b"])["epoch"] == 0


def test_checkpoint_loading_runs_no_code_and_names_damaged_files(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this code ran",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "rcnn-stages-checkpoint/1", "payload": Evil()}, evil)
    with pytest.raises(CheckpointError, match="evil.pt: refused"):
        load_checkpoint(evil)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="damaged.pt: not a readable checkpoint"):
        load_checkpoint(damaged)
    with pytest.raises(CheckpointError, match="nothere.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nothere.pt")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an R-CNN Stages checkpoint"):
        load_checkpoint(other)


def test_cli_flags_come_from_the_dataclass():
    import argparse
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class StageConfig:
        anchor_sizes: tuple = (16, 32, 64)
        lr: float = 0.01
        bbox_reg: bool = True
        pool: str = "roi"

    parser = argparse.ArgumentParser()
    add_dataclass_args(parser, RunConfig)
    add_dataclass_args(parser, StageConfig)
    args = parser.parse_args(["--anchor-sizes", "8", "16", "--no-bbox-reg", "--epochs", "3",
                              "--time-budget", "9.5", "--device", "cpu"])
    cfg = dataclass_from_args(StageConfig, args)
    run = dataclass_from_args(RunConfig, args)
    assert cfg == StageConfig(anchor_sizes=(8, 16), lr=0.01, bbox_reg=False, pool="roi")
    assert run.epochs == 3 and run.time_budget == 9.5 and run.device == "cpu" and run.seed == 0
    assert dataclass_from_args(RunConfig, parser.parse_args([])) == RunConfig()


def test_count_parameters():
    assert count_parameters(ToyDetector()) == 2 * (3 * 4 + 4)
