"""Worked examples for ``stages.ops``, and comparisons with torchvision, the trusted reference.

Hand-computed cases first (each number can be checked on paper), then random inputs on which our
ops must give torchvision's results exactly: same values, same dtype, same indices in the same
order. The random boxes mix in the corner cases on purpose: exact duplicates, tied scores,
zero-area boxes, flipped boxes (x2 < x1) and coordinates on a half-pixel grid, so that IoUs land
exactly on thresholds.
"""

from __future__ import annotations

import dataclasses
import importlib
import math

import pytest
import torch
import torchvision
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from stages.ops import (
    KERNELS,
    BoxCoder,
    batched_nms,
    box_area,
    box_inter_union,
    box_iou,
    clip_boxes_to_image,
    kernels,
    match_to_ground_truth,
    nms,
    remove_small_boxes,
    unique_boxes,
)
from stages.ops.nms import batched_nms_offset_trick, batched_nms_per_category

# Not ``import stages.ops.nms``: the package attribute ``stages.ops.nms`` is the function nms.
nms_module = importlib.import_module("stages.ops.nms")

tv_ops = torchvision.ops


def random_boxes(n: int, seed: int, dtype=torch.float32, size: float = 100.0) -> torch.Tensor:
    """n boxes (x1, y1, x2, y2) in a size x size image, with the corner cases mixed in."""
    g = torch.Generator().manual_seed(seed)
    x1y1 = torch.rand(n, 2, generator=g, dtype=torch.float64) * size  # (n, 2)
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * size / 3  # (n, 2)
    boxes = torch.cat([x1y1, x1y1 + wh], dim=1)  # (n, 4)
    kind = torch.randint(0, 10, (n,), generator=g)  # (n,) which corner case, if any
    boxes[kind == 0] = (boxes[kind == 0] * 2).round() / 2  # on a half-pixel grid: exact IoUs
    boxes[kind == 1, 2:] = boxes[kind == 1, :2]  # zero area: a point
    boxes[kind == 2, 2] = boxes[kind == 2, 0]  # zero area: a vertical line
    boxes[kind == 3] = boxes[kind == 3][:, [2, 3, 0, 1]]  # flipped: x2 < x1 and y2 < y1
    if n > 1:  # exact duplicates of box 0, one in ten
        boxes[kind == 4] = boxes[0].clone()
    return boxes.to(dtype)


def random_scores(n: int, seed: int, dtype=torch.float32, ties: bool = True) -> torch.Tensor:
    """n scores in [0, 1]; with ``ties`` only 11 distinct values, so most scores are tied."""
    g = torch.Generator().manual_seed(seed + 1000)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    if ties:
        scores = (scores * 10).round() / 10
    return scores.to(dtype)


def assert_identical(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Same shape, dtype and values, bit for bit (nan where theirs is nan)."""
    assert ours.dtype == theirs.dtype
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0, equal_nan=True)


# ---------------------------------------------------------------- boxes.py: worked examples


def test_box_area_worked_example():
    boxes = torch.tensor([[0.0, 0.0, 2.0, 3.0], [1.0, 1.0, 1.0, 5.0], [3.0, 3.0, 2.0, 2.0]])
    # 2 x 3 = 6; a vertical line has area 0; the flipped box is not checked: (-1) * (-1) = +1
    assert box_area(boxes).tolist() == [6.0, 0.0, 1.0]


def test_box_iou_worked_example():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 6.0, 6.0]])
    # with b[0]: inter = the unit square (1, 1, 2, 2) = 1, union = 4 + 4 - 1 = 7
    inter, union = box_inter_union(a, b)
    assert inter.tolist() == [[1.0, 4.0, 0.0]]
    assert union.tolist() == [[7.0, 4.0, 5.0]]
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))
    assert box_iou(a, b).shape == (1, 3)


def test_box_iou_of_zero_area_boxes_is_nan_as_in_torchvision():
    point = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    square = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert torch.isnan(box_iou(point, point)).item()  # 0 / 0
    assert box_iou(point, square).item() == 0.0  # 0 / 4
    assert torch.isnan(tv_ops.box_iou(point, point)).item()  # ... and torchvision agrees


def test_box_iou_of_integer_boxes_is_float32():
    a = torch.tensor([[0, 0, 2, 2]], dtype=torch.int16)
    b = torch.tensor([[1, 1, 3, 3]], dtype=torch.int16)
    assert box_iou(a, b).dtype == torch.float32
    assert box_iou(a, b).item() == pytest.approx(1 / 7)
    big = torch.tensor([[0, 0, 200, 200]], dtype=torch.int16)  # area 40000 > int16's 32767
    assert box_area(big).item() == 40000


def test_clip_boxes_to_image_worked_example():
    boxes = torch.tensor([[-5.0, 10.0, 250.0, 120.0], [300.0, 300.0, 400.0, 400.0]])
    clipped = clip_boxes_to_image(boxes, (100, 200))  # (height, width)
    # x in [0, 200], y in [0, 100]; the second box lies outside and collapses onto the corner
    assert clipped.tolist() == [[0.0, 10.0, 200.0, 100.0], [200.0, 100.0, 200.0, 100.0]]


def test_remove_small_boxes_worked_example():
    boxes = torch.tensor(
        [[0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 0.5, 5.0], [0.0, 0.0, 5.0, 0.99], [2.0, 2.0, 9.0, 9.0]]
    )
    keep = remove_small_boxes(boxes, min_size=1.0)
    assert keep.tolist() == [0, 3]  # width exactly 1 is kept; width 0.5 and height 0.99 are not
    assert keep.dtype == torch.int64


def test_unique_boxes_keeps_the_first_of_each_in_input_order():
    boxes = torch.tensor([[5.0, 5.0, 9.0, 9.0], [0.0, 0.0, 2.0, 2.0], [5.0, 5.0, 9.0, 9.0],
                          [1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0]])
    assert unique_boxes(boxes).tolist() == [[5.0, 5.0, 9.0, 9.0], [0.0, 0.0, 2.0, 2.0],
                                            [1.0, 1.0, 3.0, 3.0]]  # not sorted: input order
    assert unique_boxes(torch.zeros((0, 4))).shape == (0, 4)


# ---------------------------------------------------------------- matcher.py


def test_match_to_ground_truth_worked_example():
    boxes = torch.tensor([
        [0.0, 0.0, 10.0, 10.0],  # covers gt 0 (0, 0, 10, 5) twice: IoU 50 / 100 = 0.5
        [10.0, 0.0, 20.0, 10.0],  # is gt 1 exactly: IoU 1
        [40.0, 40.0, 50.0, 50.0],  # touches nothing: IoU 0, still "matched" to gt 0
    ])
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 5.0], [10.0, 0.0, 20.0, 10.0]])
    gt_labels = torch.tensor([3, 7])
    max_iou, gt_index, gt_label = match_to_ground_truth(boxes, gt_boxes, gt_labels)
    assert max_iou.tolist() == [0.5, 1.0, 0.0]
    assert gt_index.tolist() == [0, 1, 0]  # a row of zeros picks the first gt, as Tensor.max
    assert gt_label.tolist() == [3, 7, 3]
    assert gt_index.dtype == torch.int64


def test_match_to_ground_truth_without_ground_truth_is_all_zeros():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 8.0, 8.0]])
    max_iou, gt_index, gt_label = match_to_ground_truth(
        boxes, torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64))
    assert max_iou.tolist() == [0.0, 0.0]
    assert gt_index.tolist() == [0, 0] and gt_label.tolist() == [0, 0]
    assert gt_index.dtype == torch.int64 and max_iou.device == boxes.device
    empty = match_to_ground_truth(torch.zeros((0, 4)), boxes, torch.tensor([1, 2]))
    assert [len(t) for t in empty] == [0, 0, 0]


# ---------------------------------------------------------------- boxes.py: against torchvision


@pytest.mark.parametrize(
    "dtype", [torch.float32, torch.float64, torch.float16, torch.int32, torch.int16]
)
@pytest.mark.parametrize("seed", range(3))
def test_box_area_and_iou_match_torchvision(seed, dtype):
    for n, m in [(0, 0), (0, 5), (1, 1), (17, 40), (300, 120)]:
        boxes1 = random_boxes(n, seed, dtype=torch.float64).to(dtype)
        boxes2 = random_boxes(m, seed + 50, dtype=torch.float64).to(dtype)
        assert_identical(box_area(boxes1), tv_ops.box_area(boxes1))
        assert_identical(box_iou(boxes1, boxes2), tv_ops.box_iou(boxes1, boxes2))
        assert_identical(box_iou(boxes1, boxes1), tv_ops.box_iou(boxes1, boxes1))


def test_box_iou_with_batch_dimensions_matches_torchvision():
    boxes1 = random_boxes(3 * 20, seed=0).reshape(3, 20, 4)
    boxes2 = random_boxes(3 * 7, seed=1).reshape(3, 7, 4)
    ours = box_iou(boxes1, boxes2)
    assert ours.shape == (3, 20, 7)
    assert_identical(ours, tv_ops.box_iou(boxes1, boxes2))
    assert_identical(ours[1], box_iou(boxes1[1], boxes2[1]))  # batch entries are independent


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
@pytest.mark.parametrize("seed", range(3))
def test_clip_and_remove_small_boxes_match_torchvision(seed, dtype):
    boxes = random_boxes(200, seed, dtype=torch.float64, size=140.0) - 20  # many partly outside
    boxes = boxes.to(dtype)
    for size in [(100, 120), (37, 11)]:
        assert_identical(clip_boxes_to_image(boxes, size), tv_ops.clip_boxes_to_image(boxes, size))
    stacked = boxes.reshape(2, 100, 4)  # any leading dimensions
    assert_identical(
        clip_boxes_to_image(stacked, (50, 60)), tv_ops.clip_boxes_to_image(stacked, (50, 60))
    )
    for min_size in [0.0, 1e-3, 1.0, 10.0]:
        assert_identical(
            remove_small_boxes(boxes, min_size), tv_ops.remove_small_boxes(boxes, min_size)
        )


# ---------------------------------------------------------------- nms.py: worked examples


def test_nms_worked_example():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    # IoU(0, 1) = 9 * 9 / (100 + 100 - 81) = 81 / 119 = 0.68: box 1 is suppressed at 0.5, not at 0.7
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2]
    # the result is sorted by score, not by index
    assert nms(boxes, torch.tensor([0.1, 0.8, 0.9]), 0.5).tolist() == [2, 1]


def test_nms_suppresses_only_above_the_threshold():
    # (0, 0, 3, 1) and (1, 0, 4, 1): inter = 2, union = 3 + 3 - 2 = 4, IoU = 0.5 exactly
    boxes = torch.tensor([[0.0, 0.0, 3.0, 1.0], [1.0, 0.0, 4.0, 1.0]], dtype=torch.float64)
    scores = torch.tensor([1.0, 0.5], dtype=torch.float64)
    assert box_iou(boxes, boxes)[0, 1].item() == 0.5
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]  # 0.5 > 0.5 is False: both kept
    assert nms(boxes, scores, 0.49).tolist() == [0]


def test_nms_ties_go_to_the_lower_index_like_torchvision():
    square, far = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]
    boxes = torch.tensor([square, square, square, far])
    scores = torch.tensor([0.5, 0.9, 0.9, 0.9])
    # boxes 1, 2, 3 tie at 0.9: a stable sort visits them as 1, 2, 3; box 1 suppresses its
    # duplicates 2 (tied) and 0 (lower score)
    assert nms(boxes, scores, 0.5).tolist() == [1, 3]
    assert tv_ops.nms(boxes, scores, 0.5).tolist() == [1, 3]
    # all scores equal, no overlap: index order
    spread = torch.tensor([[10.0 * i, 0.0, 10.0 * i + 5, 5.0] for i in range(20)])
    assert nms(spread, torch.ones(20), 0.5).tolist() == list(range(20))


def test_nms_compares_the_threshold_in_float64_like_torchvision():
    # A = (0, 0, 6.5, 1), B = (3.5, 0, 10, 1): inter = 3, union = 6.5 + 6.5 - 3 = 10, IoU = 0.3.
    boxes64 = torch.tensor([[0.0, 0.0, 6.5, 1.0], [3.5, 0.0, 10.0, 1.0]], dtype=torch.float64)
    scores = torch.tensor([1.0, 0.5])
    boxes32 = boxes64.float()
    iou32 = box_iou(boxes32, boxes32)[0, 1]
    # in float32, 3 / 10 rounds UP to 0.30000001192..., which is greater than the float64 0.3
    assert iou32.item() > 0.3
    assert iou32.item() == torch.tensor(0.3, dtype=torch.float32).item()  # it IS float32(0.3)
    assert nms(boxes32, scores, 0.3).tolist() == [0]  # suppressed
    assert tv_ops.nms(boxes32, scores, 0.3).tolist() == [0]
    assert nms(boxes64, scores.double(), 0.3).tolist() == [0, 1]  # exactly 0.3: kept
    assert tv_ops.nms(boxes64, scores.double(), 0.3).tolist() == [0, 1]
    # the naive float32 comparison would have kept it
    assert not (iou32 > 0.3).item()


def test_nms_keeps_zero_area_boxes():
    boxes = torch.tensor(
        [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 1.0, 2.0]]
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    # duplicates of a point: IoU nan, not > 0.5; a point or a line inside the square: IoU 0
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 2, 3]
    assert tv_ops.nms(boxes, scores, 0.5).tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("op", ["nms", "batched_nms"])
def test_nms_of_nothing_is_an_empty_int64_tensor(op):
    boxes, scores, idxs = torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    args = (boxes, scores, 0.5) if op == "nms" else (boxes, scores, idxs, 0.5)
    for impl in ("ours", "torchvision"):
        keep = getattr(kernels(impl), op)(*args)
        assert keep.shape == (0,) and keep.dtype == torch.int64


def test_batched_nms_worked_example():
    square = [0.0, 0.0, 10.0, 10.0]
    boxes = torch.tensor([square, square, square, [1.0, 1.0, 11.0, 11.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([1, 2, 1, 2])
    # same box, different classes: both kept; within each class the lower score goes
    assert batched_nms(boxes, scores, labels, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5).tolist() == [0]  # class-agnostic: only one survives


# ---------------------------------------------------------------- nms.py: against torchvision


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(4))
def test_nms_matches_torchvision(seed, dtype):
    for n in [1, 2, 5, 60, 300]:
        boxes = random_boxes(n, seed, dtype=dtype)
        for ties in (True, False):
            scores = random_scores(n, seed, dtype=dtype, ties=ties)
            for threshold in [0.0, 0.3, 0.5, 0.7, 1.0]:
                ours = nms(boxes, scores, threshold)
                theirs = tv_ops.nms(boxes, scores, threshold)
                assert ours.dtype == torch.int64
                assert torch.equal(ours, theirs), (n, ties, threshold)


@pytest.mark.parametrize("ious_per_block", [1, 7, 300, 10**9])
def test_nms_block_size_never_changes_the_result(monkeypatch, ious_per_block):
    boxes, scores = random_boxes(150, seed=3), random_scores(150, seed=3)
    expected = tv_ops.nms(boxes, scores, 0.5)
    monkeypatch.setattr(nms_module, "IOUS_PER_BLOCK", ious_per_block)
    assert torch.equal(nms(boxes, scores, 0.5), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", range(3))
def test_batched_nms_matches_torchvision(seed, dtype):
    # torchvision (and we) switch from the offset trick to a loop over categories above 1000 boxes
    for n, n_classes in [(1, 1), (40, 3), (400, 5), (1000, 4), (1001, 4), (1300, 8)]:
        boxes = random_boxes(n, seed, dtype=dtype)
        scores = random_scores(n, seed, dtype=dtype)  # tied, also across categories
        idxs = torch.randint(0, n_classes, (n,), generator=torch.Generator().manual_seed(seed))
        for threshold in [0.3, 0.7]:
            ours = batched_nms(boxes, scores, idxs, threshold)
            theirs = tv_ops.batched_nms(boxes, scores, idxs, threshold)
            assert torch.equal(ours, theirs), (n, threshold)


def test_offset_trick_is_per_category_nms():
    # Integer coordinates and distinct scores: the offsets are exact, so the two ways must agree.
    g = torch.Generator().manual_seed(0)
    x1y1 = torch.randint(0, 50, (200, 2), generator=g)
    boxes = torch.cat([x1y1, x1y1 + torch.randint(1, 20, (200, 2), generator=g)], dim=1).float()
    scores = torch.randperm(200, generator=g).float()
    idxs = torch.randint(0, 6, (200,), generator=g)
    by_offsets = batched_nms_offset_trick(boxes, scores, idxs, 0.5)
    by_loop = batched_nms_per_category(boxes, scores, idxs, 0.5)
    assert torch.equal(by_offsets, by_loop)
    assert len(by_offsets) > len(nms(boxes, scores, 0.5))  # categories keep more than one NMS


# ---------------------------------------------------------------- box_coder.py


def test_box_coder_worked_example():
    proposal = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # centre (5, 5), 10 x 10
    gt = torch.tensor([[2.0, 0.0, 12.0, 20.0]])  # centre (7, 10), 10 x 20
    t = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0)).encode(gt, proposal)
    torch.testing.assert_close(t, torch.tensor([[0.2, 0.5, 0.0, math.log(2.0)]]))
    t = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).encode(gt, proposal)  # = 1 / sigma
    torch.testing.assert_close(t, torch.tensor([[2.0, 5.0, 0.0, 5 * math.log(2.0)]]))
    torch.testing.assert_close(BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).decode(t, proposal), gt)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_coder_round_trip(weights, dtype):
    coder = BoxCoder(weights=weights)
    proposals = random_boxes(500, seed=0, dtype=torch.float64)
    gt = random_boxes(500, seed=1, dtype=torch.float64)
    def sides_over_1px(b):  # (R, 4) -> (R,) bool: no zero-area or flipped boxes
        return (b[:, 2:] - b[:, :2] > 1).all(dim=1)

    positive = sides_over_1px(proposals) & sides_over_1px(gt)
    proposals, gt = proposals[positive].to(dtype), gt[positive].to(dtype)
    assert len(gt) > 100
    decoded = coder.decode(coder.encode(gt, proposals), proposals)  # decode(encode(b)) == b
    atol = 1e-3 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(decoded, gt, rtol=0, atol=atol)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_box_coder_matches_torchvision(weights, dtype):
    ours, theirs = BoxCoder(weights=weights), TorchvisionBoxCoder(weights)
    for n in [0, 1, 257]:
        # x2 += 1, y2 += 1: zero-area boxes get a size (flipped ones still give nan, in both coders)
        grow = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=dtype)
        proposals = random_boxes(n, seed=n, dtype=dtype) + grow
        gt = random_boxes(n, seed=n + 1, dtype=dtype) + grow
        assert_identical(ours.encode(gt, proposals), theirs.encode_single(gt, proposals))
        g = torch.Generator().manual_seed(n)
        for k in [1, 3]:  # class-agnostic [R, 4] and class-specific [R, K*4] deltas
            deltas = torch.randn(n, 4 * k, generator=g, dtype=torch.float64).to(dtype) * 3
            decoded = ours.decode(deltas, proposals)
            assert decoded.shape == (n, 4 * k)
            assert_identical(decoded, theirs.decode_single(deltas, proposals))


def test_box_coder_class_specific_columns_are_independent_boxes():
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    proposals = random_boxes(30, seed=0) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    deltas = torch.randn(30, 3 * 4, generator=torch.Generator().manual_seed(0))  # K = 3
    decoded = coder.decode(deltas, proposals)  # (30, 12)
    for k in range(3):  # class k's box = class k's deltas applied alone
        columns = slice(4 * k, 4 * k + 4)
        assert_identical(decoded[:, columns], coder.decode(deltas[:, columns], proposals))


def test_box_coder_clips_growth_at_bbox_xform_clip():
    coder = BoxCoder()  # weights (1, 1, 1, 1), clip log(1000 / 16)
    proposal = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    huge = torch.tensor([[0.0, 0.0, 100.0, 100.0]])  # exp(100) would overflow float32
    box = coder.decode(huge, proposal)[0]
    torch.testing.assert_close(box[2] - box[0], torch.tensor(1000.0))  # 16 px * 62.5 = 1000 px
    assert torch.isfinite(box).all()


def test_box_coder_is_frozen():
    coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        coder.weights = (1.0, 1.0, 1.0, 1.0)


# ---------------------------------------------------------------- the kernels() switch


def test_kernels_switch_between_ours_and_torchvision():
    ours, theirs = kernels("ours"), kernels("torchvision")
    assert ours.nms is nms and ours.batched_nms is batched_nms and ours.box_iou is box_iou
    assert theirs.nms is tv_ops.nms and theirs.batched_nms is tv_ops.batched_nms
    assert theirs.box_iou is tv_ops.box_iou
    assert set(vars(ours)) == set(vars(theirs)) == set(KERNELS)
    boxes, scores = random_boxes(100, seed=7), random_scores(100, seed=7)
    assert torch.equal(ours.nms(boxes, scores, 0.5), theirs.nms(boxes, scores, 0.5))


def test_kernels_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="'ours' or 'torchvision'"):
        kernels("cuda")
