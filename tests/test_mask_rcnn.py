"""Mask R-CNN: FPN, level assignment, the multi-level pooler, mask targets, the mask loss, mask
pasting, an end-to-end run that recovers a training image's masks, the command and its variants,
and the torchvision path through its own command (python -m stages.torchvision.finetune)."""

from __future__ import annotations

import json
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision

from stages.backbone import Backbone
from stages.data.sources import CocoDataset
from stages.evaluation import evaluate
from stages.mask_rcnn import (FPN, MaskRCNNConfig, MultiLevelPooler, assign_levels, build_mask_rcnn,
                              build_pooler, mask_loss, mask_targets, paste_masks)
from stages.mask_rcnn.__main__ import main as mask_rcnn_main
from stages.torchvision.finetune import main as finetune_main


def test_fpn_levels_strides_and_widths():
    backbone = Backbone(last_level="C5")
    fpn = FPN(backbone.level_channels, 32)
    pyramid = fpn(backbone(torch.rand(2, 3, 128, 96)))
    assert list(pyramid) == ["P2", "P3", "P4", "P5", "P6"]
    sizes = [tuple(p.shape[-2:]) for p in pyramid.values()]
    assert sizes == [(32, 24), (16, 12), (8, 6), (4, 3), (2, 2)]
    assert all(p.shape[:2] == (2, 32) for p in pyramid.values())


def test_fpn_top_down_reaches_the_finest_level():
    """A change in C5 alone changes P2: the top-down pathway carries it down."""
    backbone = Backbone(last_level="C5")
    fpn = FPN(backbone.level_channels, 16).eval()
    levels = backbone.eval()(torch.rand(1, 3, 64, 64))
    before = fpn(levels)["P2"]
    levels["C5"] = levels["C5"] + 1.0
    assert not torch.allclose(fpn(levels)["P2"], before)


def test_assign_levels_follows_fpn_eq_1():
    boxes = torch.tensor([[0., 0., 224., 224.], [0., 0., 112., 112.], [0., 0., 448., 448.],
                          [0., 0., 10., 10.], [0., 0., 1000., 1000.], [0., 0., 223., 223.]])
    assert assign_levels(boxes, 2, 5, k0=4, canonical=224).tolist() == [4, 3, 5, 2, 5, 3]
    # our scaled canonical size, 56: RoIs under 28 px on P2, 28-55 px on P3, 56-111 px on P4
    boxes = torch.tensor([[0., 0., 14., 14.], [0., 0., 27., 27.], [0., 0., 28., 28.], [0., 0., 56., 56.],
                          [0., 0., 111., 111.]])
    assert assign_levels(boxes, 2, 5, k0=4, canonical=56).tolist() == [2, 2, 3, 4, 4]


@pytest.mark.parametrize("pool, kernel", [("align", "ours"), ("roi", "torchvision")])
def test_multi_level_pooler_reads_each_roi_from_its_level(pool, kernel):
    torch.manual_seed(0)
    maps = [torch.rand(2, 4, 32 // 2 ** i, 32 // 2 ** i) for i in range(4)]  # strides 4..32 on 128 px
    cfg = MaskRCNNConfig(pool=pool, pool_kernel=kernel, fpn_k0=4, fpn_canonical_size=112)
    pooler = build_pooler(cfg, 4, (4, 8, 16, 32), 7)
    assert isinstance(pooler, MultiLevelPooler)
    rois = [torch.tensor([[0., 0., 20., 20.], [10., 10., 90., 90.]]), torch.tensor([[5., 5., 125., 125.]])]
    out = pooler(maps, rois)
    assert out.shape == (3, 4, 7, 7)
    assert pooler.levels(torch.cat(rois)).tolist() == [0, 1, 2]  # P2, P3, P4
    direct = (torchvision.ops.roi_align if pool == "align" else torchvision.ops.roi_pool)
    extra = {"sampling_ratio": 2, "aligned": True} if pool == "align" else {}
    for i, (image, box, level) in enumerate([(0, rois[0][0], 0), (0, rois[0][1], 1), (1, rois[1][0], 2)]):
        expected = direct(maps[level], torch.cat([torch.tensor([float(image)]), box])[None], 7,
                          1 / (4 * 2 ** level), **extra)
        torch.testing.assert_close(out[i:i + 1], expected, atol=1e-5, rtol=1e-5)


def test_mask_targets_crop_and_resize_the_matched_instance():
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 20:40] = 1  # instance 0: a 20 x 20 square
    masks[1, 40:60, 40:60] = 1
    rois = torch.tensor([[20., 10., 40., 30.], [20., 10., 60., 30.], [40., 40., 60., 60.]])
    targets = mask_targets(masks, rois, torch.tensor([0, 0, 1]), size=28)
    assert targets.shape == (3, 28, 28)
    assert targets[0].all() and targets[2].all()  # each RoI exactly on its instance
    assert targets[1][:, :14].all() and not targets[1][:, 14:].any()  # twice as wide: left half
    # instance 1's mask never leaks into a RoI matched to instance 0
    assert not mask_targets(masks, rois[2:], torch.tensor([0]), size=28).any()


def test_mask_loss_only_the_ground_truth_class_channel_learns():
    K, m = 3, 28
    logits = torch.zeros(2, K, m, m, requires_grad=True)
    labels = torch.tensor([2, 3])
    targets = torch.ones(2, m, m)
    loss = mask_loss(logits, labels, targets, "sigmoid")
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(torch.zeros(1), torch.ones(1)))
    loss.backward()
    touched = {(r, k) for r, k in torch.nonzero(logits.grad.abs().sum((2, 3))).tolist()}
    assert touched == {(0, 1), (1, 2)}  # channel label - 1 of each RoI, nothing else
    # the softmax ablation: every channel gets gradient (the classes compete)
    logits = torch.zeros(2, K + 1, m, m, requires_grad=True)
    mask_loss(logits, labels, targets, "softmax").backward()
    assert (logits.grad.abs().sum((2, 3)) > 0).all()
    # no positive RoI: zero, and backward still works
    empty = torch.zeros(0, K, m, m, requires_grad=True)
    loss = mask_loss(empty, torch.zeros(0, dtype=torch.int64), torch.zeros(0, m, m))
    loss.backward()
    assert loss.item() == 0.0


def test_paste_masks_fills_the_box_and_nothing_else():
    masks = torch.ones(2, 28, 28)
    masks[1, :, 14:] = 0  # right half off
    boxes = torch.tensor([[10., 20., 30., 50.], [0., 0., 40., 40.]])
    pasted = paste_masks(masks, boxes, (64, 64))
    assert pasted.shape == (2, 64, 64)
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[20:50, 10:30] = True
    assert torch.equal(pasted[0] > 0.5, inside)
    right = torch.zeros(64, 64, dtype=torch.bool)
    right[:40, :20] = True
    assert torch.equal(pasted[1] > 0.5, right)
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), (8, 8)).shape == (0, 8, 8)


@pytest.fixture
def tiny_train(tiny_synthetic):
    return CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")


def test_end_to_end_recovers_a_training_images_masks(tiny_train, overfit):
    """Overfit two training images with our RoIAlign: mask AP50 on them reaches 100."""
    subset = tiny_train.subset([0, 5])
    torch.manual_seed(0)
    # lr 0.005: with the 1024-wide head (torchvision's, stages 2-4) this loop's old 0.01 diverges
    cfg = MaskRCNNConfig(pool_kernel="ours", nms_kernel="ours", lr=0.005, warmup_steps=10)
    model = build_mask_rcnn(cfg, tiny_train.num_classes)
    names = overfit(model, subset, cfg.lr, cfg.warmup_steps, steps=150)
    # every step returns the same losses
    assert names == {frozenset({"loss_objectness", "loss_rpn_box", "loss_cls", "loss_box",
                                "loss_mask"})}
    ev = evaluate(model, subset)
    assert ev["mask"]["AP50"] == pytest.approx(100.0), ev["mask"]
    assert ev["box"]["AP50"] == pytest.approx(100.0), ev["box"]


@pytest.fixture
def coco_argv(tiny_synthetic, data_root, tmp_path):
    return ["--data-root", str(data_root), "--no-progress", "--device", "cpu",
            "--data", f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"]


def test_command_trains_saves_and_evaluates_masks(coco_argv, tmp_path):
    out = tmp_path / "run"
    argv = coco_argv + ["--out", str(out), "--epochs", "1"]
    result = mask_rcnn_main(argv)
    assert (out / "checkpoint.pt").exists() and (out / "predictions.png").exists()
    record = json.loads((out / "metrics.json").read_text())
    assert record["stage"] == "mask_rcnn" and record["mask"] is not None
    assert "pool=align" in record["variant"] and "+fpn" not in record["variant"]  # one level
    again = mask_rcnn_main(argv + ["--eval-only"])
    assert again.box == result.box and again.mask == result.mask


@pytest.mark.parametrize("flags", [["--fpn", "--input-scale", "1"], ["--pool", "roi"], ["--mask-loss", "softmax"],
                                   ["--pool-kernel", "ours", "--align-reduce", "max"]])
def test_ablation_switches_train_and_evaluate(coco_argv, tmp_path, flags):
    result = mask_rcnn_main(coco_argv + ["--out", str(tmp_path / "run"), "--epochs", "1",
                                         "--time-budget", "2"] + flags)
    assert result.mask is not None


def test_torchvision_path_through_its_own_command(coco_argv, tmp_path):
    out = tmp_path / "tv"
    result = finetune_main(coco_argv + ["--out", str(out), "--epochs", "1", "--time-budget", "3"])
    record = json.loads((out / "metrics.json").read_text())
    assert record["stage"] == "mask_rcnn_torchvision" and result.mask is not None


def test_the_old_torchvision_flag_of_stage_4_says_where_the_command_went(coco_argv):
    with pytest.raises(SystemExit, match="python -m stages.torchvision.finetune"):
        mask_rcnn_main(coco_argv + ["--model", "torchvision"])
    with pytest.raises(SystemExit, match="python -m stages.torchvision.finetune"):
        mask_rcnn_main(coco_argv + ["--weights=coco"])


def test_torchvision_path_offline_coco_weights_name_the_flag(coco_argv, tmp_path, monkeypatch, capsys):
    from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(MaskRCNN_ResNet50_FPN_Weights, "get_state_dict", offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(SystemExit) as exc:
        finetune_main(coco_argv + ["--weights", "coco", "--out", str(tmp_path / "tv"),
                                   "--epochs", "1"])
    assert "--weights" in str(exc.value)
