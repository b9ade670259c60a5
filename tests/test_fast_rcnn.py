"""Fast R-CNN: sampling, the multi-task loss, detection, and an end-to-end run on a tiny set."""

from __future__ import annotations

import json

import pytest
import torch

from stages.backbone import Backbone, batch_images
from stages.data.sources import CocoDataset
from stages.evaluation import evaluate
from stages.fast_rcnn import FastRCNNConfig, build_fast_rcnn, detect, fast_rcnn_loss, sample_rois
from stages.fast_rcnn.__main__ import main as fast_rcnn_main
from stages.ops import BoxCoder
from stages.selective_search import ProposalCache


def test_backbone_levels_and_padding():
    backbone = Backbone(last_level="C5")
    images = [torch.rand(3, 100, 128), torch.rand(3, 128, 90)]
    batch, sizes = batch_images(images)
    assert batch.shape == (2, 3, 128, 128) and sizes == [(100, 128), (128, 90)]
    assert torch.equal(batch[0, :, :100, :128], images[0]) and (batch[0, :, 100:] == 0).all()
    levels = backbone(batch)
    assert [tuple(v.shape[-2:]) for v in levels.values()] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert Backbone(last_level="C3").stride == 8 and "C4" not in Backbone(last_level="C3").stages


def test_sample_rois_fractions_and_labels():
    torch.manual_seed(0)
    gt = torch.tensor([[10., 10., 50., 50.], [60., 60., 100., 100.]])
    gt_labels = torch.tensor([2, 3])
    # 10 near-copies of each gt (foreground), and 100 boxes elsewhere (background, IoU < 0.5)
    fg = gt.repeat_interleave(10, 0) + torch.randn(20, 4)
    bg = torch.tensor([[0., 0., 12., 12.]]) + torch.arange(100)[:, None] * torch.tensor([0.5, 1., 0.5, 1.])
    rois, labels, matched = sample_rois(torch.cat([fg, bg]), gt, gt_labels, num=64)
    assert len(rois) == 64
    assert (labels > 0).sum() == 16  # 25 % of 64
    assert set(labels[labels > 0].tolist()) <= {2, 3}
    # each foreground RoI is matched to the gt box it overlaps, with that box's class
    for r, u, m in zip(rois, labels, matched):
        if u > 0:
            assert torch.equal(m, gt[u - 2])
    # few foregrounds: all are taken (including the gt boxes themselves), background fills up
    rois, labels, _ = sample_rois(bg, gt, gt_labels, num=64)
    assert (labels > 0).sum() == 2 and len(rois) == 64
    # no objects at all: every RoI is background
    rois, labels, _ = sample_rois(bg, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), num=32)
    assert len(rois) == 32 and (labels == 0).all()


def test_multi_task_loss_uses_only_the_true_class_offsets_of_foreground_rois():
    K = 3
    logits = torch.zeros(4, K + 1, requires_grad=True)
    deltas = torch.zeros(4, 4 * (K + 1), requires_grad=True)
    labels = torch.tensor([2, 0, 1, 0])
    targets = torch.tensor([[1., 0., 0., 0.], [9., 9., 9., 9.], [0., 0., 3., 0.], [9., 9., 9., 9.]])
    losses = fast_rcnn_loss(logits, deltas, labels, targets, loss_lambda=1.0, beta=1.0)
    # L_cls: uniform p over 4 classes -> -log(1/4); L_loc: smooth_L1(1) = 0.5 and smooth_L1(3) = 2.5
    torch.testing.assert_close(losses["loss_cls"], torch.log(torch.tensor(4.0)))
    torch.testing.assert_close(losses["loss_box"], torch.tensor((0.5 + 2.5) / 4))
    losses["loss_box"].backward()
    grad = deltas.grad.reshape(4, K + 1, 4)
    nonzero = {(r, k) for r, k in torch.nonzero(grad.abs().sum(-1)).tolist()}
    assert nonzero == {(0, 2), (2, 1)}  # background RoIs and other classes get no box gradient


def test_detect_decodes_per_class_and_suppresses_duplicates():
    coder = BoxCoder((10., 10., 5., 5.))
    rois = [torch.tensor([[10., 10., 30., 30.], [11., 11., 31., 31.], [60., 60., 90., 90.]])]
    logits = torch.tensor([[0., 5., 0.], [0., 4., 0.], [0., 0., 5.]])  # K = 2
    deltas = torch.zeros(3, 12)
    deltas[2, 8:12] = coder.encode(torch.tensor([[58., 62., 92., 94.]]), rois[0][2:3])  # class 2
    out = detect(logits, deltas, rois, [(128, 128)], coder, score_thresh=0.5, nms_thresh=0.3)[0]
    assert out["labels"].tolist() == [2, 1] or out["labels"].tolist() == [1, 2]
    assert len(out["boxes"]) == 2  # RoI 1 duplicates RoI 0 (IoU 0.82 > 0.3): suppressed
    torch.testing.assert_close(out["boxes"][out["labels"] == 2][0], torch.tensor([58., 62., 92., 94.]))


@pytest.fixture
def tiny(tiny_synthetic, data_root):
    train = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")
    return train, ProposalCache(data_root / "proposals")


@pytest.mark.parametrize("pool, kernel", [("roi", "ours"), ("spp", "torchvision")])
def test_end_to_end_recovers_a_training_image(tiny, pool, kernel, overfit):
    """Overfit two training images: AP50 on them reaches 100. RoI pooling runs our kernel; SPP
    runs torchvision's (quicker; ``tests/test_roi_pool.py`` shows the two agree).

    Images 0 and 5 of the tiny set: selective search covers each of their objects at IoU >= 0.69,
    and no two objects of one class overlap. (Image 1 has an object that no proposal reaches at
    IoU 0.5: no head can recover it, the limit that stage 3's learned proposals address. Image 2
    has two circles whose boxes overlap at IoU > 0.3: the paper's NMS at 0.3 keeps only one.)"""
    train, cache = tiny
    subset = train.subset([0, 5])
    torch.manual_seed(0)
    cfg = FastRCNNConfig(pool=pool, pool_kernel=kernel, lr=0.01, warmup_steps=10)
    model = build_fast_rcnn(cfg, train.num_classes, cache)
    overfit(model, subset, cfg.lr, cfg.warmup_steps, steps=150)
    ev = evaluate(model, subset)
    assert ev["box"]["AP50"] == pytest.approx(100.0), ev["box"]
    assert ev["ms_proposals"] > 0 and ev["ms_network"] > 0


def test_command_trains_saves_and_evaluates(tiny_synthetic, data_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data-root", str(data_root), "--out", str(out), "--epochs", "1", "--no-progress",
            "--device", "cpu", "--pool", "spp"]
    # the tiny synthetic set, read as any COCO data (the every-5th-image split gives 7 + 1)
    argv += ["--data", f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"]
    result = fast_rcnn_main(argv)
    assert (out / "checkpoint.pt").exists() and (out / "predictions.png").exists()
    record = json.loads((out / "metrics.json").read_text())
    assert record["stage"] == "fast_rcnn" and "pool=spp" in record["variant"]
    assert record["n_val"] == 1 and result.ms_per_image > 0
    assert "fast_rcnn" in capsys.readouterr().out
    # --eval-only reads the checkpoint back and gives the same metrics
    again = fast_rcnn_main(argv + ["--eval-only"])
    assert again.box == result.box
