"""Box geometry: area, intersection over union (IoU), clipping, dropping tiny boxes and duplicates.

Every detector in this project measures boxes with these four functions: R-CNN labels a proposal
by its IoU with the ground truth (sec. 2.3: positive at IoU >= 0.5 for fine-tuning, negative below
0.3 for the SVMs), Faster R-CNN labels anchors by IoU (sec. 3.1.2: > 0.7 positive, < 0.3 negative)
and clips proposals to the image at test time (sec. 3.3), and NMS (``nms.py``) suppresses by IoU.

Box format, the one format of the whole project: ``(x1, y1, x2, y2)``, float, absolute pixels,
``x1 <= x2`` and ``y1 <= y2``; (x1, y1) is the top-left corner. Width is ``x2 - x1`` (no "+ 1":
the R-CNN-era code used integer pixel boxes with inclusive ends and ``w = x2 - x1 + 1``; we use
continuous coordinates, as torchvision and Detectron2 do).

Shape shorthand: N, M numbers of boxes; ``...`` any leading batch dimensions.

    IoU(A, B) = |A n B| / |A u B| = inter / (area(A) + area(B) - inter)

All but ``unique_boxes`` (ours) are drop-in replacements for the ``torchvision.ops`` functions of
the same names: same arguments, same dtypes, same values bit for bit (``tests/test_ops.py`` checks
it). Two corner cases are inherited on purpose, so that swapping kernels never changes a result:
  * A box with zero area has IoU ``0 / 0 = nan`` with itself (and with any other zero-area box that
    does not overlap it: ``inter = 0``, ``union = 0``). With a box of positive area its IoU is 0.
    ``nan > threshold`` is False, so NMS never suppresses with a nan IoU.
  * Nothing checks ``x1 <= x2``: a "flipped" box such as (3, 3, 2, 2) has area (-1) * (-1) = +1.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _upcast(t: Tensor) -> Tensor:
    """Widen small dtypes before multiplying, as torchvision does: float16/bfloat16 -> float32 and
    int8/int16/uint8 -> int32, so that ``w * h`` does not overflow (an int16 box 200 px wide and
    200 px high has area 40000 > 32767)."""
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box.

    Args:
        boxes (Tensor[..., 4]): boxes in ``(x1, y1, x2, y2)`` format, absolute pixels.

    Returns:
        Tensor[...]: ``(x2 - x1) * (y2 - y1)``; float16 is returned as float32, small ints as int32.

    Example: the box (0, 0, 2, 3) has area 2 * 3 = 6.
    """
    boxes = _upcast(boxes)
    width = boxes[..., 2] - boxes[..., 0]  # (...,)
    height = boxes[..., 3] - boxes[..., 1]  # (...,)
    return width * height


def box_inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas, the numerator and denominator of IoU.

    Args:
        boxes1 (Tensor[..., N, 4]), boxes2 (Tensor[..., M, 4]): boxes in ``(x1, y1, x2, y2)``
            format; leading dimensions ``...`` (if any) are batch dimensions and broadcast.

    Returns:
        (inter, union), each Tensor[..., N, M].
    """
    area1 = box_area(boxes1)  # (..., N)
    area2 = box_area(boxes2)  # (..., M)

    # Pair every box of boxes1 (a column, (N, 1)) with every box of boxes2 (a row, (1, M)).
    ax1, ay1, ax2, ay2 = boxes1[..., :, None, :].unbind(dim=-1)  # 4 x (..., N, 1)
    bx1, by1, bx2, by2 = boxes2[..., None, :, :].unbind(dim=-1)  # 4 x (..., 1, M)
    # The intersection is the box from the larger top-left corner to the smaller bottom-right one.
    inter_x1 = torch.max(ax1, bx1)  # (..., N, M)
    inter_y1 = torch.max(ay1, by1)  # (..., N, M)
    inter_x2 = torch.min(ax2, bx2)  # (..., N, M)
    inter_y2 = torch.min(ay2, by2)  # (..., N, M)
    # Boxes that do not overlap give a negative side: clamp it to 0, an empty intersection.
    inter_w = _upcast(inter_x2 - inter_x1).clamp(min=0)  # (..., N, M)
    inter_h = _upcast(inter_y2 - inter_y1).clamp(min=0)  # (..., N, M)
    inter = inter_w * inter_h  # (..., N, M)

    union = area1[..., :, None] + area2[..., None, :] - inter  # (..., N, M): |A|+|B|-|A n B|
    return inter, union


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union (Jaccard index) of each box in ``boxes1`` with each in ``boxes2``.

    Args:
        boxes1 (Tensor[N, 4]): boxes in ``(x1, y1, x2, y2)`` format, absolute pixels.
        boxes2 (Tensor[M, 4]): boxes in the same format. Both may carry the same leading batch
            dimensions, ``[..., N, 4]`` and ``[..., M, 4]``, as in torchvision.

    Returns:
        Tensor[N, M] (or [..., N, M]): ``iou[i, j] = IoU(boxes1[i], boxes2[j])``, in [0, 1], or nan
        where the union is 0, i.e. for two zero-area boxes (0 / 0). Float boxes keep their dtype
        (float16 -> float32); integer boxes give float32.

    Worked example: A = (0, 0, 2, 2) and B = (1, 1, 3, 3) overlap in the unit square (1, 1, 2, 2),
    so inter = 1, union = 4 + 4 - 1 = 7 and IoU = 1/7 = 0.1429.
    """
    inter, union = box_inter_union(boxes1, boxes2)  # (..., N, M), (..., N, M)
    return inter / union  # (..., N, M); "/" is true division, so int areas give a float IoU


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip boxes so that they lie inside an image of ``size = (height, width)``.

    Args:
        boxes (Tensor[..., 4]): boxes in ``(x1, y1, x2, y2)`` format, absolute pixels.
        size (tuple[int, int]): ``(height, width)`` of the image, in this order (as
            ``image.shape[-2:]`` gives it).

    Returns:
        Tensor[..., 4]: x coordinates clamped to [0, width], y coordinates to [0, height].

    Example: in a 100 x 200 image (height 100, width 200) the box (-5, 10, 250, 120) becomes
    (0, 10, 200, 100). A box wholly outside the image becomes a zero-area box on the border,
    which ``remove_small_boxes`` then drops (Faster R-CNN sec. 3.3 clips proposals this way).
    """
    height, width = size
    x1, y1, x2, y2 = boxes.unbind(dim=-1)  # 4 x (...,)
    x1 = x1.clamp(min=0, max=width)
    y1 = y1.clamp(min=0, max=height)
    x2 = x2.clamp(min=0, max=width)
    y2 = y2.clamp(min=0, max=height)
    return torch.stack((x1, y1, x2, y2), dim=-1)  # (..., 4)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both at least ``min_size``.

    Args:
        boxes (Tensor[N, 4]): boxes in ``(x1, y1, x2, y2)`` format, absolute pixels.
        min_size (float): smallest side kept, in pixels.

    Returns:
        Tensor[K]: int64 indices into ``boxes`` of the boxes kept, in increasing order.

    Example: with ``min_size = 1``, (0, 0, 1, 5) is kept (width exactly 1) and (0, 0, 0.5, 5) is
    dropped. The RPN uses this on proposals (torchvision: ``min_size = 1e-3``) to drop boxes that
    clipping has squashed to nothing.
    """
    width = boxes[..., 2] - boxes[..., 0]  # (N,)
    height = boxes[..., 3] - boxes[..., 1]  # (N,)
    keep = (width >= min_size) & (height >= min_size)  # (N,) bool
    return torch.where(keep)[0]  # (K,) int64


def unique_boxes(boxes: Tensor) -> Tensor:
    """The boxes without exact duplicates, the first occurrence of each kept, in the input order.

    Args:
        boxes (Tensor[N, 4]): boxes in ``(x1, y1, x2, y2)`` format.

    Returns:
        Tensor[K, 4]: the distinct rows of ``boxes``. Ours, no torchvision twin: the proposal
        methods (sliding windows, selective search) use it to return each box once.

    Example: (0, 0, 2, 2), (1, 1, 3, 3), (0, 0, 2, 2) -> (0, 0, 2, 2), (1, 1, 3, 3).
    """
    if len(boxes) == 0:
        return boxes
    _, inverse = torch.unique(boxes, dim=0, return_inverse=True)  # (N,) which distinct row
    first = torch.full((int(inverse.max()) + 1,), len(boxes), dtype=torch.long)  # (K,)
    first = first.scatter_reduce(0, inverse, torch.arange(len(boxes)), reduce="amin")  # (K,)
    return boxes[first.sort().values]  # (K, 4) in the input order
