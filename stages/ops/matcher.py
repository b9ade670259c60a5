"""Matching: each box's best ground truth, by IoU.

Every stage labels its candidate boxes the same way, and only the thresholds differ:

    R-CNN          a proposal is positive for fine-tuning at IoU >= 0.5, a negative for the
                   SVMs below 0.3, a box-regression pair above 0.6 (sec. 2.3, Appendix C)
    Fast R-CNN     a RoI is foreground at IoU >= 0.5, background in [0.1, 0.5) (sec. 2.3)
    Faster R-CNN,  the same RoI sampling, on the RPN's proposals
    Mask R-CNN

So the match itself lives here, once, and each stage applies its own thresholds to ``max_iou``:

    max_iou_r  = max_g IoU(box_r, gt_g)
    gt_index_r = argmax_g IoU(box_r, gt_g)      (the first such g on ties, as ``Tensor.max``)
    gt_label_r = gt_labels[gt_index_r]

Shape shorthand: R boxes to label, G ground-truth boxes of the same image. Boxes
``(x1, y1, x2, y2)``, absolute pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .boxes import box_iou


def match_to_ground_truth(boxes: Tensor, gt_boxes: Tensor, gt_labels: Tensor):
    """Each box's best ground truth: ``(max_iou [R], gt_index [R], gt_label [R])``.

    Args:
        boxes (Tensor[R, 4]): the boxes to label (proposals, RoIs), (x1, y1, x2, y2).
        gt_boxes (Tensor[G, 4]): the image's ground-truth boxes.
        gt_labels (Tensor[G]): their classes, 1..K.

    Returns:
        max_iou (Tensor[R]): the best IoU of each box with any gt box.
        gt_index (Tensor[R], int64): which gt box that is.
        gt_label (Tensor[R]): that gt box's class.

    Example: boxes (0, 0, 10, 10) and (20, 20, 30, 30), one gt box (0, 0, 10, 5) of class 3:
    IoU 50 / 100 = 0.5 and 0, so ``max_iou = [0.5, 0.0]``, ``gt_index = [0, 0]``,
    ``gt_label = [3, 3]`` (the second box's label is that of its best gt, however poor the match:
    the caller's threshold on ``max_iou`` makes it background).

    Without ground truth (an image with no objects) every IoU is 0, every index and label 0.
    """
    R = len(boxes)
    if len(gt_boxes) == 0 or R == 0:
        zeros = torch.zeros(R, dtype=torch.long, device=boxes.device)
        return torch.zeros(R, device=boxes.device), zeros, zeros
    iou = box_iou(boxes, gt_boxes)  # (R, G)
    max_iou, gt_index = iou.max(dim=1)  # (R,), (R,)
    return max_iou, gt_index, gt_labels[gt_index]
