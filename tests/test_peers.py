"""``python -m stages.torchvision.peers``: torchvision's Faster / Mask R-CNN peers trained and saved like a stage.

One epoch on the tiny synthetic set (7 train / 1 val images). The heads are made narrow with the
command's own flags (``--representation-size``, ``--mask-head-channels``) so that evaluating an
untrained model, whose 100 low-score detections all go through the mask head, takes well under a
second; the defaults (torchvision's 1024 and 256) are checked without training.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from stages.training.checkpoint import load_checkpoint
from stages.run_stage import default_config, run_stage
from stages.torchvision.peers import KINDS, PeerConfig, build_peer, main
from stages.flags import RunConfig

NARROW = ["--representation-size", "64", "--mask-head-channels", "16"]


@pytest.fixture(scope="module")
def argv(tiny_synthetic, data_root):
    data = f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"
    return ["--data", data, "--data-root", str(data_root), "--epochs", "1", "--device", "cpu",
            "--no-progress", *NARROW]


@pytest.fixture(scope="module")
def trained(tiny_synthetic, data_root, tmp_path_factory):
    """{kind: (result, out folder)}: each peer trained for one epoch, as compare calls it
    (``run_stage`` with typed settings: the same as ``argv`` on the command line)."""
    data = f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"
    run = RunConfig(data=data, data_root=str(data_root), epochs=1, device="cpu", progress=False)
    runs = {}
    for kind in KINDS:
        out = tmp_path_factory.mktemp("peers") / f"torchvision_{kind}"
        cfg = default_config(f"torchvision_{kind}", representation_size=64, mask_head_channels=16)
        runs[kind] = run_stage(f"torchvision_{kind}", dataclasses.replace(run, out=str(out)), cfg), out
    return runs


def test_defaults_keep_torchvisions_heads_and_scale_the_proposals():
    cfg = PeerConfig(fpn=True)
    model = build_peer("mask_rcnn", cfg, num_classes=3, image_size=128).model
    heads, rpn = model.roi_heads, model.rpn
    assert isinstance(heads.box_head, TwoMLPHead) and heads.box_head.fc7.out_features == 1024
    assert isinstance(heads.box_roi_pool, MultiScaleRoIAlign) and heads.box_roi_pool.sampling_ratio == 2
    assert heads.box_roi_pool.featmap_names == ["P2", "P3", "P4", "P5"]
    assert heads.mask_head[0][0].out_channels == 256 and heads.box_predictor.cls_score.out_features == 4
    assert model.backbone.out_channels == 64  # --fpn: a 64-channel pyramid
    # the default, as our stage 4: one level, EfficientNet-Lite0's C3 (40 channels)
    single = build_peer("mask_rcnn", PeerConfig(), num_classes=3, image_size=256).model
    assert single.roi_heads.box_roi_pool.featmap_names == ["C3"] and single.backbone.out_channels == 40
    # scaled for 128-px images: 300 proposals (torchvision 2000 / 1000), 64 RoIs (torchvision 512)
    assert rpn._post_nms_top_n == {"training": 300, "testing": 300}
    assert rpn._pre_nms_top_n == {"training": 2000, "testing": 1000}  # torchvision's, kept
    assert heads.fg_bg_sampler.batch_size_per_image == 64
    assert model.transform.min_size == (128,) and model.transform.max_size == 128
    with pytest.raises(ValueError, match="unknown peer"):
        build_peer("yolo", cfg, 3, 128)


@pytest.mark.parametrize("kind", KINDS)
def test_a_peer_run_writes_what_a_stage_writes(trained, kind):
    result, out = trained[kind]
    for name in ("checkpoint.pt", "losses.json", "metrics.json", "predictions.png"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "metrics.json").read_text())
    assert record["stage"] == f"torchvision_{kind}" == result.stage
    assert record["box"]["AP"] == result.box["AP"] and 0 <= result.box["AP50"] <= 100
    assert (record["mask"] is not None) == (kind == "mask_rcnn")
    if kind == "mask_rcnn":
        assert set(record["mask"]) >= {"AP", "AP50", "AP75"}
    assert result.ms_per_image > 0 and result.ms_proposals > 0  # the RPN hooks timed it
    state = load_checkpoint(out / "checkpoint.pt", stage=f"torchvision_{kind}")
    assert state["epoch"] == 1 and state["step"] == 4  # 7 images, 2 per batch
    # torchvision enlarges the 128-px images 2x, as our stages do (input_scale)
    assert state["config"]["kind"] == kind and state["config"]["image_size"] == 256


@pytest.mark.parametrize("kind", KINDS)
def test_eval_only_gives_the_same_metrics(trained, argv, kind):
    result, out = trained[kind]
    again = main([kind, *argv, "--out", str(out), "--eval-only"])
    assert again.box == result.box and again.mask == result.mask
    assert again.train_time_s == result.train_time_s  # read from the checkpoint


def test_resume_continues_from_the_checkpoint(trained, argv, tmp_path, capsys):
    _, first = trained["faster_rcnn"]
    out = tmp_path / "resumed"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((first / "checkpoint.pt").read_bytes())
    main(["faster_rcnn", *argv, "--out", str(out), "--epochs", "2", "--resume"])
    assert "resumed from" in capsys.readouterr().out
    history = json.loads((out / "losses.json").read_text())
    assert [h["step"] for h in history] == list(range(1, 9))  # 4 steps kept, 4 more
    assert {h["epoch"] for h in history[4:]} == {2}
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2


def test_eval_only_without_a_checkpoint_says_so(argv, tmp_path):
    with pytest.raises(SystemExit, match="checkpoint not found"):
        main(["mask_rcnn", *argv, "--out", str(tmp_path / "empty"), "--eval-only"])


def test_weights_of_other_flags_are_refused_clearly(trained, argv):
    _, out = trained["faster_rcnn"]
    with pytest.raises(SystemExit, match="trained with other flags"):
        main(["faster_rcnn", *argv, "--out", str(out), "--eval-only", "--representation-size", "32"])
