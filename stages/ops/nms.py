"""Greedy non-maximum suppression (NMS): keep the best box, drop the boxes that overlap it, repeat.

Paper: R-CNN (Girshick et al., CVPR 2014), sec. 2.2 "Test-time detection": "given all scored
regions in an image, we apply a greedy non-maximum suppression (for each class independently)
that rejects a region if it has an intersection-over-union (IoU) overlap with a higher scoring
selected region larger than a learned threshold" (0.3 in the R-CNN and Fast R-CNN code).
Faster R-CNN (sec. 3.3) runs the same NMS, class-agnostic, at IoU 0.7 on the RPN proposals.

The algorithm, for N boxes sorted by decreasing score:

    keep = []
    for each box i, best score first:
        if i was suppressed: skip it
        keep i
        suppress every box j with IoU(i, j) > iou_threshold

Shape shorthand: N boxes, K boxes kept, C categories (``batched_nms``), B rows per block.
Boxes are ``(x1, y1, x2, y2)``, float, absolute pixels.

``nms`` and ``batched_nms`` are drop-in replacements for ``torchvision.ops.nms`` and
``torchvision.ops.batched_nms``: the same indices in the same order (``tests/test_ops.py``). Three
details decide "the same", and each is copied from torchvision's CPU kernel on purpose:

1. Ties. Boxes are visited in the order of a *stable* descending sort of the scores, so of two
   boxes with equal scores the one with the lower index comes first (and is the one kept, when
   they overlap).
2. The threshold is compared in float64. The C++ kernel computes the IoU in the boxes' dtype and
   compares ``iou > iou_threshold`` with ``iou_threshold`` a C++ ``double``. Plain torch would
   instead round the Python float to the tensor's dtype. The two differ when the IoU *equals*
   float32(threshold) and float32 rounds the threshold up: float32(0.3) = 0.30000001192... > 0.3,
   so two float32 boxes with IoU exactly 3/10 ARE suppressed at ``iou_threshold = 0.3`` (and are
   not in float64). A worked example is in the tests.
3. Zero-area boxes. A zero-area box has IoU 0 with every box of positive area and nan (0 / 0)
   with every zero-area box, itself and its exact duplicates included. Neither 0 nor nan is
   ``> iou_threshold``, so zero-area boxes are always kept, and never suppress anything.

Where we differ from the kernel: the C++ loop computes IoUs one pair at a time, which is fast in
C++ and hopeless in Python. We compute them vectorised, a block of rows of the (N, N) IoU matrix at
a time (``IOUS_PER_BLOCK``), and keep only the greedy loop in Python: a few lines per box. The
result is the same; ``benchmarks/bench_ops.py`` prints the speed ratio.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .boxes import box_iou

# ``nms`` computes the (N, N) IoU matrix in blocks of whole rows, about this many IoUs per block.
# The block size changes memory and speed, never the result: for N = 2000, 32 rows (256 KB of
# float32) at a time instead of all 2000 rows (16 MB). Big fresh tensors are slow to allocate
# (every page is faulted in and zeroed): on our 2-core test machine the whole matrix at once made
# nms 2.5x slower for N = 2000 and 5x slower for N = 4000.
IOUS_PER_BLOCK = 2**16


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, class-agnostic.

    Args:
        boxes (Tensor[N, 4]): float32 or float64 boxes in ``(x1, y1, x2, y2)`` format, absolute
            pixels.
        scores (Tensor[N]): score of each box (higher is better).
        iou_threshold (float): a box is discarded when its IoU with a kept, higher-scoring box is
            strictly greater than this. 0.3 in R-CNN / Fast R-CNN detection, 0.7 for RPN proposals.

    Returns:
        Tensor[K]: int64 indices into ``boxes`` of the kept boxes, by decreasing score (equal
        scores: lower index first).

    Example: boxes (0, 0, 10, 10), (1, 1, 11, 11), (20, 20, 30, 30) with scores 0.9, 0.8, 0.7 and
    ``iou_threshold = 0.5``: boxes 0 and 1 overlap with IoU 81 / 119 = 0.68 > 0.5, so box 1 is
    suppressed; the result is ``tensor([0, 2])``.
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)

    # (N,) best first; stable, so equal scores keep their index order (point 1 of the docstring)
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]  # (N, 4), row r = the r-th best box
    N = sorted_boxes.shape[0]

    rows_per_block = max(1, IOUS_PER_BLOCK // N)  # B
    suppressed = torch.zeros(N, dtype=torch.bool, device=boxes.device)  # (N,), in score order
    keep = []  # positions r (in score order) of the kept boxes
    for r in range(N):
        if r % rows_per_block == 0:
            # A new block: the IoUs of boxes first .. first + B - 1 with every box from `first` on;
            # the boxes before `first` are already decided (kept or suppressed), so we skip them.
            # Compared in float64, as the C++ kernel does (point 2 of the module docstring).
            first = r
            block = sorted_boxes[first : first + rows_per_block]  # (B, 4)
            iou = box_iou(block, sorted_boxes[first:])  # (B, N - first)
            overlaps = iou.to(torch.float64) > iou_threshold  # (B, N - first) bool
        if suppressed[r]:
            continue
        keep.append(r)
        # Box r suppresses every later box it overlaps. (Its row also covers r itself and the
        # block's earlier boxes, already decided: harmless, the loop never looks back.)
        suppressed[first:] |= overlaps[r - first]  # (N - first,)
    keep = torch.tensor(keep, dtype=torch.int64, device=boxes.device)  # (K,) positions, score order
    return order[keep]  # (K,) indices into boxes


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression within each category: boxes of different categories never
    suppress each other (R-CNN sec. 2.2: "for each class independently").

    Args:
        boxes (Tensor[N, 4]): float32 or float64 boxes in ``(x1, y1, x2, y2)`` format, absolute
            pixels.
        scores (Tensor[N]): score of each box.
        idxs (Tensor[N]): int category of each box (a class label, or the image index, or the FPN
            level for per-level proposal NMS).
        iou_threshold (float): as in ``nms``.

    Returns:
        Tensor[K]: int64 indices into ``boxes`` of the kept boxes, by decreasing score.

    Two ways to do it, both below; like torchvision we pick by size (on CPU: the offset trick up
    to 1000 boxes, a loop over categories above), which is what makes our result equal to
    torchvision's in every case, ties included (see ``batched_nms_per_category``).
    """
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    # torchvision's switch point (benchmarks: pytorch/vision#1311 and #8925): 4000 numbers = 1000
    # boxes on CPU, 25000 boxes on GPU.
    max_numel = 4000 if boxes.device.type == "cpu" else 100_000
    if boxes.numel() > max_numel:
        return batched_nms_per_category(boxes, scores, idxs, iou_threshold)
    return batched_nms_offset_trick(boxes, scores, idxs, iou_threshold)


def batched_nms_offset_trick(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float
) -> Tensor:
    """Per-category NMS as ONE class-agnostic NMS, by moving each category to its own place.

    Shift every box of category c by ``c * (max_coordinate + 1)`` along both axes. Boxes of one
    category move together, so their IoUs do not change (up to float rounding); boxes of different
    categories end up in disjoint squares (for coordinates >= 0, as clipped boxes are), so their
    IoU is 0 and they cannot suppress each other.
    Example: all coordinates in [0, 100], categories 0, 1, 2 -> offsets 0, 101, 202: category 1
    lives in [101, 201], category 2 in [202, 302].

    The price is precision: with 80 classes and 1000-pixel images the coordinates reach 80,000,
    where float32 resolves only 1/128 of a pixel, so IoUs near the threshold can round the other
    way than in ``batched_nms_per_category``.
    """
    max_coordinate = boxes.max()  # scalar tensor
    offsets = idxs.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))  # (N,)
    boxes_for_nms = boxes + offsets[:, None]  # (N, 4), each category in its own square
    return nms(boxes_for_nms, scores, iou_threshold)  # (K,)


def batched_nms_per_category(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float
) -> Tensor:
    """Per-category NMS as a loop: one ``nms`` per category, then merge the survivors by score.

    Exact coordinates, and C small NMS problems instead of one big one (the (N, N) IoU matrix
    becomes C matrices of about (N/C, N/C)).

    The final sort is torchvision's ``sort(descending=True)``, which is NOT stable: survivors of
    different categories with equal scores come out in an order that is neither index order nor
    the tie order ``nms`` uses. We make the same call on the same tensor, so we get the same order.
    """
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)  # (N,)
    for category in torch.unique(idxs):
        members = torch.where(idxs == category)[0]  # (N_c,) indices into boxes
        kept = nms(boxes[members], scores[members], iou_threshold)  # (K_c,) indices into members
        keep_mask[members[kept]] = True
    keep = torch.where(keep_mask)[0]  # (K,) in index order
    return keep[scores[keep].sort(descending=True).indices]  # (K,) by decreasing score
