"""Anchors: the reference boxes the RPN scores and refines (Faster R-CNN sec. 3.1.1).

At every location of the feature map the RPN considers k = 9 *anchors*: 3 scales x 3 aspect ratios,
all centred on that location. The paper's scales are box areas 128^2, 256^2 and 512^2 for images
whose shorter side is 600 pixels (stride 16, ~1400 px^2 per location). Our images are 128 px with
objects of 12 to 56 px, on a stride-8 map, so our scales are 16, 32 and 64 px (the paper's ratio of
anchor size to image size, 0.2 to 0.85, would give 27 to 109 px, larger than any of our objects).

    anchor_shapes(sizes, ratios)      -> [A, 4]        A = len(sizes) * len(ratios), centred on 0
    grid_anchors(map_size, stride, base) -> [H * W * A, 4]   every shape at every location

Order: location-major (row y, then column x), then the A shapes at that location, the order of the
RPN head's outputs once reshaped (``rpn.flatten_rpn_outputs``). An aspect ratio r is height / width,
and a shape keeps the area size^2: w = size / sqrt(r), h = size * sqrt(r).

Equal to ``torchvision.models.detection.anchor_utils.AnchorGenerator`` (which also rounds each
shape's corners to whole pixels); ``tests/test_faster_rcnn.py`` proves it.
"""

from __future__ import annotations

import torch


def anchor_shapes(sizes=(16, 32, 64), ratios=(0.5, 1.0, 2.0)) -> torch.Tensor:
    """The A = len(sizes) * len(ratios) anchors at one location, centred on (0, 0): [A, 4].

    Ordered ratio-major, as torchvision's: (r0, s0), (r0, s1), ..., (r1, s0), ...
    """
    sizes = torch.as_tensor(sizes, dtype=torch.float32)  # (S,)
    ratios = torch.as_tensor(ratios, dtype=torch.float32)  # (Q,)
    h_ratio = torch.sqrt(ratios)  # h = size * sqrt(r), w = size / sqrt(r): area size^2, h / w = r
    w_ratio = 1.0 / h_ratio
    ws = (w_ratio[:, None] * sizes[None, :]).reshape(-1)  # (Q * S,)
    hs = (h_ratio[:, None] * sizes[None, :]).reshape(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()  # (A, 4), whole-pixel corners


def grid_anchors(map_size: tuple[int, int], stride: int, base: torch.Tensor) -> torch.Tensor:
    """Every anchor shape ``base`` [A, 4] at every location of an H x W map: [H * W * A, 4].

    Location (y, x) of the map sits at pixel (x * stride, y * stride) of the image (the corner of
    its cell, as in torchvision and Detectron), so the anchor centres lie on a grid of step
    ``stride`` pixels.
    """
    H, W = map_size
    xs = torch.arange(W, dtype=torch.float32, device=base.device) * stride  # (W,)
    ys = torch.arange(H, dtype=torch.float32, device=base.device) * stride  # (H,)
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # (H, W) each
    shifts = torch.stack([x, y, x, y], dim=-1).reshape(-1, 1, 4)  # (H * W, 1, 4)
    return (shifts + base.reshape(1, -1, 4)).reshape(-1, 4)  # (H * W * A, 4)
