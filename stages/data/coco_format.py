"""COCO's two formats that both the dataset writer and the evaluator need.

    boxes  COCO stores (x, y, w, h); our one box format is (x1, y1, x2, y2) in absolute pixels
    masks  COCO stores a mask as a compressed run-length encoding (RLE) from pycocotools

Shape shorthand: N objects, H x W the image.
"""

from __future__ import annotations

import numpy as np
import torch
from pycocotools import mask as mask_utils


def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] (x1, y1, x2, y2) -> [N, 4] (x, y, w, h), COCO's box format."""
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)


def mask_to_rle(masks: torch.Tensor) -> list[dict]:
    """Binary masks [N, H, W] -> N compressed RLE dicts, JSON-ready (``counts`` as str)."""
    N, H, W = masks.shape
    if N == 0:
        return []
    # pycocotools wants a Fortran-ordered uint8 array [H, W, N]
    array = np.asfortranarray(masks.permute(1, 2, 0).to(torch.uint8).numpy())  # (N,H,W)->(H,W,N)
    rles = mask_utils.encode(array)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")  # bytes -> str, so json.dumps accepts it
    return rles
