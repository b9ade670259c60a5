"""Sliding windows: R-CNN's exhaustive baseline for region proposals (sec. 2.1).

Before region proposals, a detector looked everywhere: every box of a few sizes and shapes, at a
fixed stride, over the whole image (the approach R-CNN's introduction moves away from).
``python -m stages.rcnn --proposals sliding_window`` runs the whole stage on it, and the proposal
report (``stages.rcnn.proposers``) shows why it loses to selective search: it needs thousands of
windows per image, and rarely fits an object tightly (low recall at IoU 0.7).

A window of size s and ratio r = h / w has w = s / sqrt(r) and h = s * sqrt(r), so that
w * h = s^2: size 32, ratio 2 -> 22.6 x 45.3 pixels. Windows step by ``stride`` times their own
side, are rounded to whole pixels and clipped to the image, and duplicates are dropped.

Boxes float [P, 4] in (x1, y1, x2, y2) absolute pixels, inside the image, as
``stages.selective_search.selective_search`` returns them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stages.ops import clip_boxes_to_image, unique_boxes


@dataclass(frozen=True)
class SlidingWindowConfig:
    sizes: tuple = (16, 24, 32, 48, 64)  # sqrt(area) of the windows, pixels (our objects: 12-56)
    ratios: tuple = (0.5, 1.0, 2.0)  # height / width
    stride: float = 0.25  # step between windows, as a fraction of the window's side


def sliding_windows(image_size: tuple[int, int], cfg: SlidingWindowConfig = SlidingWindowConfig()):
    """Every window of ``cfg.sizes`` x ``cfg.ratios`` at a stride of ``cfg.stride`` x its side.

    Returns float [P, 4] (x1, y1, x2, y2), clipped to ``image_size = (H, W)``, duplicates removed.
    """
    H, W = image_size
    boxes = []
    for size in cfg.sizes:
        for ratio in cfg.ratios:
            w, h = size / ratio**0.5, size * ratio**0.5  # w * h = size^2, h / w = ratio
            step_x, step_y = max(1.0, cfg.stride * w), max(1.0, cfg.stride * h)
            xs = torch.arange(0, max(W - w, 0) + 1e-6, step_x)
            ys = torch.arange(0, max(H - h, 0) + 1e-6, step_y)
            y1, x1 = torch.meshgrid(ys, xs, indexing="ij")
            x1, y1 = x1.reshape(-1), y1.reshape(-1)
            boxes.append(torch.stack([x1, y1, x1 + w, y1 + h], dim=1))
    boxes = clip_boxes_to_image(torch.cat(boxes).round(), (H, W))
    return unique_boxes(boxes)
