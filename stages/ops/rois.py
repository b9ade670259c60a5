"""The RoI arguments that ``roi_pool`` and ``roi_align`` share, read the way torchvision reads them.

Both ops take the regions of a whole mini-batch in one of two forms and turn them into one:

    boxes   Tensor[R, 5] of (batch_index, x1, y1, x2, y2), or
            list of N Tensor[R_i, 4] of (x1, y1, x2, y2), one per image, R = sum of R_i
    ->      Tensor[R, 5]: each RoI knows which image's feature map to cut from

and an ``output_size`` that is an int (7 -> a 7 x 7 grid) or a pair (PH, PW).

Shape shorthand: N images, R RoIs, (PH, PW) the output grid. Boxes in image pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rois_with_batch_index(boxes: Tensor | list[Tensor]) -> Tensor:
    """``list[Tensor[R_i, 4]]`` -> Tensor[R, 5] (batch_index, x1, y1, x2, y2); Tensor[R, 5] as is.

    Example: ``[Tensor[2, 4], Tensor[1, 4]]`` -> rows with batch_index 0, 0, 1.
    """
    if isinstance(boxes, Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes as a Tensor must be [R, 5] (batch_index, x1, y1, x2, y2), "
                             f"got {list(boxes.shape)}")
        return boxes
    index = torch.cat([torch.full((len(b), 1), i, dtype=b.dtype, device=b.device)
                       for i, b in enumerate(boxes)]) if boxes else torch.zeros(0, 1)  # (R, 1)
    coords = torch.cat(list(boxes)) if boxes else torch.zeros(0, 4)  # (R, 4)
    return torch.cat([index, coords], dim=1)  # (R, 5)


def output_grid(output_size: int | tuple[int, int]) -> tuple[int, int]:
    """``output_size`` as ``(PH, PW)``: 7 -> (7, 7); (14, 7) stays (14, 7)."""
    return (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
