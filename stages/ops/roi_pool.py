"""RoI max pooling (Fast R-CNN, sec. 2.1) and spatial pyramid pooling (SPP-net, sec. 2.2).

Fast R-CNN cuts a fixed-size feature out of the shared feature map for every region of interest:

    1. project the RoI (x1, y1, x2, y2), in image pixels, onto the feature map by
       ``spatial_scale`` = 1 / stride, and **round** each end to a whole cell
       (e.g. stride 8, spatial_scale = 0.125: x1 = 37 px -> round(4.625) = cell 5);
    2. split the h x w cells it covers into an H x W grid of sub-windows of about h/H x w/W cells
       (start of bin i: floor(i h / H), end: ceil((i + 1) h / H), so bins may overlap or be empty);
    3. take the max over each sub-window, channel by channel -> (C, H, W) per RoI; an empty bin is 0.

The two roundings (step 1 and the floor/ceil of step 2) are the *quantisation* that Mask R-CNN's
RoIAlign removes (stage 4). SPP-net's spatial pyramid is the same pooling at several grid sizes,
concatenated: Fast R-CNN's RoI pooling "is a special case of SPP with one pyramid level".

Shape shorthand: N images, C channels, H_f x W_f feature map, R RoIs, (PH, PW) output grid.
``boxes`` is either a Tensor[R, 5] of (batch_index, x1, y1, x2, y2) or a list of N Tensor[R_i, 4],
exactly as ``torchvision.ops.roi_pool`` takes it; ``roi_pool`` here is a drop-in for it (same
signature, same values, same gradients: the gradient of each output goes to its bin's argmax).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .rois import output_grid, rois_with_batch_index


def _round_half_away(x: Tensor) -> Tensor:
    """C's ``round`` (halves away from zero), which the reference kernels use; torch.round rounds
    halves to even, which would move some RoIs by one cell."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def bin_edges(start: Tensor, length: Tensor, n_bins: int, limit: int,
              dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """Step 2: first and last-plus-one cell [R, n_bins] of each bin along one axis.

    ``start`` [R] is the RoI's first cell, ``length`` [R] its size in cells (>= 1). Bin i spans
    [floor(i * length / n_bins), ceil((i + 1) * length / n_bins)) cells from ``start``, clamped to
    the map [0, limit]. The bin size is a float of the input's dtype, as in the reference kernel:
    its rounding can (rarely) make a bin end one cell later than exact arithmetic would.
    """
    bin_size = length.to(dtype) / n_bins  # h / H: a fraction of a cell, or several cells
    i = torch.arange(n_bins, device=start.device, dtype=dtype)
    lo = torch.floor(i[None] * bin_size[:, None]).long() + start[:, None]  # (R, n_bins)
    hi = torch.ceil((i[None] + 1) * bin_size[:, None]).long() + start[:, None]
    return lo.clamp(0, limit), hi.clamp(0, limit)


def quantise_rois(rois: Tensor, spatial_scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Step 1: each RoI's first cell and size in cells, ``(x1, y1, w, h)`` as int64 [R] each."""
    x1, y1, x2, y2 = (_round_half_away(rois[:, k] * spatial_scale).long() for k in range(1, 5))
    w = (x2 - x1 + 1).clamp(min=1)  # the end cell is included, and a RoI covers >= 1 cell
    h = (y2 - y1 + 1).clamp(min=1)
    return x1, y1, w, h


def roi_pool(input: Tensor, boxes: Tensor | list[Tensor], output_size, spatial_scale: float = 1.0) -> Tensor:
    """RoI max pooling, as ``torchvision.ops.roi_pool``.

    Args:
        input (Tensor[N, C, H_f, W_f]): the feature maps.
        boxes (Tensor[R, 5] or list[Tensor[R_i, 4]]): RoIs (x1, y1, x2, y2) in image pixels.
        output_size (int or (PH, PW)): the grid, e.g. 7 (7 x 7 in Fast R-CNN with VGG16).
        spatial_scale (float): feature cells per image pixel, 1 / stride; 0.125 for a stride-8 map
            (a 128-pixel image and a 16-cell map).

    Returns:
        Tensor[R, C, PH, PW].
    """
    PH, PW = output_grid(output_size)
    rois = rois_with_batch_index(boxes).to(input.dtype)
    N, C, H, W = input.shape
    x1, y1, roi_w, roi_h = quantise_rois(rois, spatial_scale)  # 1. project and round to cells
    h_lo, h_hi = bin_edges(y1, roi_h, PH, H, input.dtype)  # 2. the grid: (R, PH) rows
    w_lo, w_hi = bin_edges(x1, roi_w, PW, W, input.dtype)  #            and (R, PW) columns
    neg_inf = float("-inf")
    outputs = []
    for r in range(len(rois)):
        # the window of the map that the RoI's bins cover (clamped to the map; may be empty)
        top, bottom = int(h_lo[r].min()), int(h_hi[r].max())
        left, right = int(w_lo[r].min()), int(w_hi[r].max())
        if top >= bottom or left >= right:  # wholly off the map: every bin is empty
            outputs.append(input.new_zeros((C, PH, PW)))
            continue
        crop = input[int(rois[r, 0]), :, top:bottom, left:right]  # (C, h, w)
        rows = torch.arange(top, bottom, device=input.device)
        cols = torch.arange(left, right, device=input.device)
        in_row = (rows[None] >= h_lo[r, :, None]) & (rows[None] < h_hi[r, :, None])  # (PH, h)
        in_col = (cols[None] >= w_lo[r, :, None]) & (cols[None] < w_hi[r, :, None])  # (PW, w)
        # 3. max over each bin, separably: over the rows of each bin row, then over its columns
        by_rows = crop[:, None].masked_fill(~in_row[None, :, :, None], neg_inf)  # (C, PH, h, w)
        by_rows = by_rows.max(dim=2).values  # (C, PH, w)
        by_cols = by_rows[:, :, None].masked_fill(~in_col[None, None], neg_inf)  # (C, PH, PW, w)
        pooled = by_cols.max(dim=3).values  # (C, PH, PW)
        empty = (h_hi[r] <= h_lo[r])[:, None] | (w_hi[r] <= w_lo[r])[None, :]  # (PH, PW)
        outputs.append(pooled.masked_fill(empty[None], 0.0))  # an empty bin is 0
    if not outputs:
        return input.new_zeros((0, C, PH, PW))
    return torch.stack(outputs)  # (R, C, PH, PW)


def spp_pool(input: Tensor, boxes: Tensor | list[Tensor], levels: tuple = (4, 2, 1),
             spatial_scale: float = 1.0, pool=roi_pool) -> Tensor:
    """Spatial pyramid pooling of each RoI (SPP-net, He et al. 2014, sec. 2.2 and 4).

    For every level n in ``levels`` the RoI is max-pooled on an n x n grid; the grids are
    flattened and concatenated into one fixed-length vector, whatever the RoI's size:

        (R, C, 4, 4) ++ (R, C, 2, 2) ++ (R, C, 1, 1) -> (R, C * (16 + 4 + 1)) = (R, 21 C)

    The 1 x 1 level is a max over the whole (quantised) RoI. SPP-net's detection pyramid is
    {6, 3, 2, 1}; {4, 2, 1} is its classification pyramid, enough for our 16 x 16 maps.
    """
    return torch.cat([pool(input, boxes, n, spatial_scale).flatten(1) for n in levels], dim=1)


def spp_output_dim(channels: int, levels: tuple = (4, 2, 1)) -> int:
    """Length of ``spp_pool``'s vector: C * sum(n^2)."""
    return channels * sum(n * n for n in levels)
