"""Box operations, written from scratch in plain torch so that they can be read next to the papers.

Box format everywhere: ``(x1, y1, x2, y2)``, float, absolute pixels. Shapes: N, M boxes, R
proposals, K classes.

    boxes.py      box_area(boxes)                       Tensor[N, 4] -> Tensor[N]
                  box_iou(boxes1, boxes2)               Tensor[N, 4], Tensor[M, 4] -> Tensor[N, M]
                  box_inter_union(boxes1, boxes2)       the numerator and denominator of box_iou
                  clip_boxes_to_image(boxes, size)      size = (height, width)
                  remove_small_boxes(boxes, min_size)   -> int64 indices of the boxes kept
                  unique_boxes(boxes)                   Tensor[N, 4] -> Tensor[K, 4], no duplicates
    matcher.py    match_to_ground_truth(boxes, gt_boxes, gt_labels)    each box's best gt by IoU
                                                        -> (max_iou [R], gt_index [R], gt_label [R])
    nms.py        nms(boxes, scores, iou_threshold)     greedy NMS (R-CNN sec. 2.2) -> int64 indices
                  batched_nms(boxes, scores, idxs, iou_threshold)   NMS within each category
                  batched_nms_offset_trick / batched_nms_per_category   its two strategies
    box_coder.py  BoxCoder(weights, bbox_xform_clip)    R-CNN Appendix C / Faster R-CNN Eq. 2:
                  .encode(gt_boxes, proposals)          -> deltas Tensor[R, 4]
                  .decode(deltas, proposals)            -> boxes, the shape of deltas ([R, 4]
                                                           or class-specific [R, K*4])
    rois.py       rois_with_batch_index(boxes)          list of N [R_i, 4] -> [R, 5] (n, x1..y2)
                  output_grid(output_size)              7 -> (PH, PW) = (7, 7)
    roi_pool.py   roi_pool(input, boxes, output_size, spatial_scale)   Fast R-CNN sec. 2.1
                                                        -> Tensor[R, C, PH, PW]
                  spp_pool(input, boxes, levels, spatial_scale)        SPP-net sec. 2.2
                                                        -> Tensor[R, C * sum(n^2)]
    roi_align.py  roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned,
                            reduce="mean")              Mask R-CNN sec. 3 -> Tensor[R, C, PH, PW]
                  roi_align_sample_points(box, output_size, ...)       its bilinear sample points
                                                        -> Tensor[PH, PW, S_h * S_w, 2] of (x, y)

Each function but ``unique_boxes``, ``match_to_ground_truth`` and ``rois.py``'s two argument
readers (they have no torchvision twin) is a drop-in replacement for the ``torchvision.ops``
function of the same name (same arguments, same results, ties and corner cases included;
``tests/test_ops.py``, ``test_roi_pool.py`` and ``test_roi_align.py`` prove it; ``roi_align`` sums
in another order, so its values agree to ~1e-6, not bit for bit), and ``BoxCoder.encode`` /
``decode`` match torchvision's ``BoxCoder.encode_single`` / ``decode_single``.

``kernels("ours")`` or ``kernels("torchvision")`` picks one implementation of the speed-critical
ops, so that a stage can run our readable code or torchvision's C++ kernels with the same call:

    ops = kernels("ours")
    keep = ops.batched_nms(boxes, scores, labels, 0.5)

``benchmarks/bench_ops.py`` prints how much slower ours are.
"""

from __future__ import annotations

from types import SimpleNamespace

import torchvision.ops

from .box_coder import BoxCoder
from .boxes import (box_area, box_inter_union, box_iou, clip_boxes_to_image, remove_small_boxes,
                    unique_boxes)
from .matcher import match_to_ground_truth
from .nms import batched_nms, nms
from .roi_align import roi_align, roi_align_sample_points
from .roi_pool import roi_pool, spp_pool, spp_output_dim

__all__ = [
    "BoxCoder",
    "IMPLEMENTATIONS",
    "KERNELS",
    "batched_nms",
    "box_area",
    "box_inter_union",
    "box_iou",
    "clip_boxes_to_image",
    "kernels",
    "match_to_ground_truth",
    "nms",
    "remove_small_boxes",
    "roi_align",
    "roi_align_sample_points",
    "roi_pool",
    "spp_output_dim",
    "spp_pool",
    "unique_boxes",
]

# The ops that ``kernels`` switches, one line each: name -> (ours, torchvision's).
# A later stage adds its op here, with one line.
KERNELS = {
    "nms": (nms, torchvision.ops.nms),
    "batched_nms": (batched_nms, torchvision.ops.batched_nms),
    "box_iou": (box_iou, torchvision.ops.box_iou),
    "roi_pool": (roi_pool, torchvision.ops.roi_pool),
    "roi_align": (roi_align, torchvision.ops.roi_align),  # ours also takes reduce="max"
}
IMPLEMENTATIONS = ("ours", "torchvision")  # the column order of KERNELS


def kernels(name: str) -> SimpleNamespace:
    """The ops of ``KERNELS`` from one implementation, as attributes: ``kernels("ours").nms``.

    Args:
        name: ``"ours"`` (this package, readable) or ``"torchvision"`` (C++ kernels, fast).

    Returns:
        SimpleNamespace with one attribute per op in ``KERNELS`` (``nms``, ``batched_nms``,
        ``box_iou``, ...), each a function with torchvision's signature.
    """
    if name not in IMPLEMENTATIONS:
        choices = " or ".join(repr(i) for i in IMPLEMENTATIONS)
        raise ValueError(f"unknown kernels {name!r}: expected {choices}")
    column = IMPLEMENTATIONS.index(name)  # 0 = ours, 1 = torchvision
    return SimpleNamespace(**{op: pair[column] for op, pair in KERNELS.items()})
