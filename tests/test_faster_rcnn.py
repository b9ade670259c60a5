"""Faster R-CNN: anchors, anchor labels (incl. the best-anchor rule), sampling, the RPN loss, the
proposal layer, and an end-to-end run on a tiny set."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from stages.data.sources import CocoDataset
from stages.evaluation import evaluate
from stages.faster_rcnn import (FasterRCNNConfig, anchor_shapes, assign_anchors, build_faster_rcnn,
                                flatten_rpn_outputs, grid_anchors, inside_image, propose, rpn_loss,
                                sample_anchors)
from stages.faster_rcnn.__main__ import main as faster_rcnn_main
from stages.ops import BoxCoder, box_iou


def test_anchor_shapes_keep_area_and_ratio():
    base = anchor_shapes((16, 32, 64), (0.5, 1.0, 2.0))
    assert base.shape == (9, 4)
    w, h = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    sizes = torch.tensor([16., 32., 64.]).repeat(3)
    ratios = torch.tensor([0.5, 1.0, 2.0]).repeat_interleave(3)
    # rounding to whole pixels moves the area by at most a few percent
    assert torch.allclose((w * h).sqrt(), sizes, rtol=0.05)
    assert torch.allclose(h / w, ratios, rtol=0.1)
    assert torch.equal((base[:, :2] + base[:, 2:]) / 2, torch.zeros(9, 2))  # centred on 0


def test_grid_anchors_count_centres_and_torchvision():
    base = anchor_shapes()
    anchors = grid_anchors((3, 5), 8, base)  # H = 3, W = 5
    assert anchors.shape == (3 * 5 * 9, 4)
    centres = ((anchors[:, :2] + anchors[:, 2:]) / 2).reshape(3, 5, 9, 2)
    for y in range(3):
        for x in range(5):  # all 9 shapes share the centre of their location, on the stride grid
            assert torch.equal(centres[y, x], torch.tensor([[8. * x, 8. * y]]).expand(9, 2))
    # equal to torchvision's AnchorGenerator on the same map
    generator = AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),))
    feature = torch.zeros(1, 4, 3, 5)
    theirs = generator(ImageList(torch.zeros(1, 3, 24, 40), [(24, 40)]), [feature])[0]
    assert torch.equal(anchors, theirs)


def test_flatten_order_matches_grid_anchors():
    N, A, H, W = 1, 9, 3, 4
    objectness = torch.zeros(N, A, H, W)
    deltas = torch.zeros(N, 4 * A, H, W)
    objectness[0, 7, 2, 1] = 1.0  # shape 7 at row 2, column 1
    deltas[0, 7 * 4 + 2, 2, 1] = 5.0  # its d_w
    flat_obj, flat_deltas = flatten_rpn_outputs(objectness, deltas)
    index = (2 * W + 1) * A + 7
    assert flat_obj.argmax().item() == index and flat_deltas[0, index, 2] == 5.0
    assert flat_deltas.abs().sum() == 5.0


def test_assign_anchors_thresholds_and_best_anchor_rule():
    anchors = torch.tensor([
        [0., 0., 10., 10.],    # 0: = gt A (IoU 1)                           -> positive (ii)
        [1., 0., 11., 10.],    # 1: IoU 0.82 with gt A                         -> positive (ii)
        [5., 0., 15., 10.],    # 2: IoU 1/3 with gt A                          -> ignored
        [40., 40., 50., 50.],  # 3: far from both                             -> negative
        [60., 60., 80., 80.],  # 4: IoU 0.44 with gt B, its best anchor          -> positive (i)
        [62., 62., 80., 80.],  # 5: IoU 0.36 with gt B (between 0.3 and 0.7)     -> ignored
        [58., 58., 70., 70.],  # 6: IoU 0.1 with gt B                            -> negative
    ])
    gt = torch.tensor([[0., 0., 10., 10.], [55., 55., 85., 85.]])
    iou = box_iou(gt, anchors)
    assert iou[1].max() < 0.7 and iou[1].argmax() == 4  # gt B has no anchor over 0.7
    labels, matched = assign_anchors(anchors, gt, pos_iou=0.7, neg_iou=0.3)
    assert labels.tolist() == [1, 1, -1, 0, 1, -1, 0]
    assert torch.equal(matched[4], gt[1]) and torch.equal(matched[0], gt[0])
    # the paper's cross-boundary rule: anchors over the border of a 12 x 12 image are ignored
    valid = inside_image(anchors, (12, 12))
    assert valid.tolist() == [True, True, False, False, False, False, False]
    labels, _ = assign_anchors(anchors, gt[:1], valid=valid)
    assert labels.tolist() == [1, 1, -1, -1, -1, -1, -1]
    # an image without objects: every valid anchor is negative
    labels, _ = assign_anchors(anchors, torch.zeros(0, 4))
    assert (labels == 0).all()


def test_sample_anchors_at_most_half_positive():
    torch.manual_seed(0)
    labels = torch.cat([torch.ones(300), torch.zeros(1000), -torch.ones(50)]).long()
    pos, neg = sample_anchors(labels, 256, 0.5)
    assert len(pos) == 128 and len(neg) == 128
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    labels = torch.cat([torch.ones(10), torch.zeros(1000)]).long()
    pos, neg = sample_anchors(labels, 256, 0.5)  # few positives: padded with negatives
    assert len(pos) == 10 and len(neg) == 246


def test_rpn_loss_uses_only_sampled_anchors_and_positive_boxes():
    objectness = torch.zeros(1, 6, requires_grad=True)
    deltas = torch.zeros(1, 6, 4, requires_grad=True)
    pos, neg = torch.tensor([0]), torch.tensor([3, 4])
    targets = [torch.full((6, 4), 9.0)]
    targets[0][0] = torch.tensor([1.0, 0.0, 0.0, 0.0])
    losses = rpn_loss(objectness, deltas, [(pos, neg)], targets, n_reg=2, loss_lambda=1.0, beta=1.0)
    # BCE at logit 0 is log 2 for each of the 3 sampled anchors, averaged over N_cls = 3
    torch.testing.assert_close(losses["loss_objectness"], torch.tensor(math.log(2.0)))
    # smooth L1 of the one positive: 0.5 * 1^2, over N_reg = 2
    torch.testing.assert_close(losses["loss_rpn_box"], torch.tensor(0.25))
    sum(losses.values()).backward()
    assert set(torch.nonzero(objectness.grad[0]).flatten().tolist()) == {0, 3, 4}
    assert set(torch.nonzero(deltas.grad[0].abs().sum(-1)).flatten().tolist()) == {0}


@pytest.mark.parametrize("kernel", ["ours", "torchvision"])
def test_proposal_layer_order_and_limits(kernel):
    torch.manual_seed(0)
    anchors = grid_anchors((8, 8), 8, anchor_shapes())  # 576 anchors on a 64 x 64 image
    M = len(anchors)
    objectness = torch.randn(1, M)
    deltas = 0.1 * torch.randn(1, M, 4)
    boxes, scores = propose(objectness, deltas, anchors, [(64, 64)], BoxCoder((1., 1., 1., 1.)),
                            pre_nms_top_n=200, post_nms_top_n=50, nms_thresh=0.7, min_size=2.0,
                            nms_kernel=kernel)
    boxes, scores = boxes[0], scores[0]
    assert len(boxes) == 50
    assert (scores[:-1] >= scores[1:]).all()  # best first
    assert (boxes >= 0).all() and (boxes[:, 2:] <= 64).all()  # clipped to the image
    assert ((boxes[:, 2:] - boxes[:, :2]) >= 2.0).all()  # no tiny boxes
    iou = box_iou(boxes, boxes).fill_diagonal_(0)
    assert iou.max() <= 0.7  # NMS at 0.7 leaves no closer pair
    # every proposal comes from the 200 best-scored anchors
    top = set(torch.sigmoid(objectness[0]).topk(200).values.tolist())
    assert set(scores.tolist()) <= top
    # post-NMS limit larger than what survives: all survivors, none invented
    boxes, _ = propose(objectness, deltas, anchors, [(64, 64)], BoxCoder((1., 1., 1., 1.)),
                       pre_nms_top_n=20, post_nms_top_n=1000, nms_kernel=kernel)
    assert len(boxes[0]) <= 20


@pytest.fixture
def tiny_train(tiny_synthetic):
    return CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")


def test_end_to_end_recovers_a_training_image(tiny_train, overfit):
    """Overfit two training images with our kernels (RoI pooling, NMS): AP50 on them reaches 100."""
    subset = tiny_train.subset([0, 5])
    torch.manual_seed(0)
    cfg = FasterRCNNConfig(pool_kernel="ours", nms_kernel="ours", lr=0.01, warmup_steps=10)
    model = build_faster_rcnn(cfg, tiny_train.num_classes)
    names = overfit(model, subset, cfg.lr, cfg.warmup_steps, steps=150)
    # every step returns the same losses
    assert names == {frozenset({"loss_objectness", "loss_rpn_box", "loss_cls", "loss_box"})}
    ev = evaluate(model, subset)
    assert ev["box"]["AP50"] == pytest.approx(100.0), ev["box"]
    assert ev["ms_proposals"] > 0 and ev["ms_network"] > 0


def test_command_trains_saves_and_evaluates(tiny_synthetic, data_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data-root", str(data_root), "--out", str(out), "--epochs", "1", "--no-progress",
            "--device", "cpu", "--data", f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"]
    result = faster_rcnn_main(argv)
    assert (out / "checkpoint.pt").exists() and (out / "predictions.png").exists()
    record = json.loads((out / "metrics.json").read_text())
    assert record["stage"] == "faster_rcnn" and "proposals=rpn" in record["variant"]
    assert result.ms_per_image > 0 and "proposals" in result.timing_ms
    assert "faster_rcnn" in capsys.readouterr().out
    again = faster_rcnn_main(argv + ["--eval-only"])
    assert again.box == result.box
