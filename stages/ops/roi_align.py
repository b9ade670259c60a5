"""RoIAlign (Mask R-CNN, He et al. 2017, sec. 3 "RoIAlign" and Figure 3).

RoI pooling (``roi_pool.py``, Fast R-CNN) rounds twice: the RoI to whole cells ("[x/16], where
16 is a feature map stride and [.] is rounding") and its bins to whole cells. The rounding moves a
RoI by up to half a cell, 8 pixels at stride 16. "While this may not impact classification, which
is robust to small translations, it has a large negative effect on predicting pixel-accurate
masks" (sec. 3). RoIAlign rounds nothing:

    1. project the RoI onto the feature map, x * spatial_scale, and keep the fractions
       (stride 8, spatial_scale = 0.125: x1 = 37 px -> 4.625, not cell 5);
    2. split it into PH x PW bins of exactly (h / PH) x (w / PW) cells;
    3. in each bin, sample the map at S_h x S_w regular points (the bin cut into S_h x S_w equal
       parts, a point at the centre of each; "four regularly sampled locations", S_h = S_w = 2, in
       the paper), each value bilinearly interpolated from the four nearest cells;
    4. aggregate each bin's points "using max or average" (``reduce``). Table 2c of the paper
       finds the two about equal; torchvision (and so Mask R-CNN as usually run) averages.

Coordinates. On the feature map the value of cell (i, j) sits at its centre, the point
(x, y) = (j, i), so that bilinear interpolation at integer points returns the cells themselves. A box
edge x in image pixels (pixel k covers [k, k + 1)) lands at x * spatial_scale - 0.5 in these
coordinates: ``aligned=True`` subtracts that half cell (Detectron2's fix). ``aligned=False``, the
default in torchvision and the paper's original code, does not, which shifts every RoI by half a
cell, and makes each RoI at least 1 x 1 cell.

At the border we follow torchvision's kernel (``roi_align_kernel.cpp``) exactly, since we must
reproduce it: a point with y < -1 or y > H (or x < -1, x > W) reads 0, and still counts in its
bin's average; a point in [-1, 0] reads row 0, one in [H - 1, H] row H - 1. With
``sampling_ratio <= 0`` the number of points adapts to the RoI: S_h = ceil(h / PH), about one per
cell, and S_w = ceil(w / PW).

How we compute it. Bilinear interpolation is separable: along one axis, the value at y of a column
f of H cells is a(y) . f, with a weight vector a(y) that is 1 - l at floor(y), l at floor(y) + 1
(l = y - floor(y)) and 0 elsewhere. On the map F (H x W), the value at (x, y) is

    F(x, y) = a(y)^T F b(x)                                                         (*)

which, expanded over the two non-zeros of a and b, is Figure 3's sum over the four nearest cells.
The average over a bin's S_h x S_w points factors the same way:

    mean_{s,t} a(y_s)^T F b(x_t) = (mean_s a(y_s))^T F (mean_t b(x_t))

so a whole RoI is (PH x H) @ F @ (W x PW): two small matrix products, batched over RoIs with
``einsum``. Autograd then gives the gradient with respect to the map (each cell receives the
output's gradient times its weight), equal to torchvision's backward kernel. The max needs every
point's value: (*) for all points at once, then a max over them.

Shape shorthand: N images, C channels, H x W feature map, R RoIs, (PH, PW) output grid,
S_h x S_w sample points per bin. ``boxes`` is a Tensor[R, 5] of (batch_index, x1, y1, x2, y2) or a
list of N Tensor[R_i, 4], as ``torchvision.ops.roi_align`` takes it; ``roi_align`` here is a
drop-in for it (same signature, same values and gradients to ~1e-6, ``tests/test_roi_align.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .rois import output_grid, rois_with_batch_index


def project_rois(rois: Tensor, spatial_scale: float, aligned: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Step 1: each RoI's corner and size on the feature map, ``(x1, y1, w, h)`` float [R] each, not rounded.

    ``rois`` is Tensor[R, 5] (batch_index, x1, y1, x2, y2) in image pixels.
    """
    offset = 0.5 if aligned else 0.0  # pixel edge x -> x * spatial_scale - 0.5 in cell-centre coordinates
    x1, y1, x2, y2 = (rois[:, k] * spatial_scale - offset for k in range(1, 5))
    w, h = x2 - x1, y2 - y1
    if not aligned:  # "force malformed RoIs to be 1x1", as the original Detectron kernel did
        w, h = w.clamp(min=1.0), h.clamp(min=1.0)
    return x1, y1, w, h


def sample_coordinates(start: Tensor, length: Tensor, n_bins: int,
                       sampling_ratio: int) -> tuple[Tensor, Tensor]:
    """Steps 2 and 3 along one axis: the points of each bin, [R, n_bins, S], and how many a RoI uses, [R].

    Bin i of a RoI starting at ``start`` with size ``length`` (in cells, [R] each) starts at
    start + i * length / n_bins; its points sit at the centres of S equal parts of it:

        y = start + i * bin + (s + 0.5) * bin / S,    bin = length / n_bins,  s = 0 .. S - 1

    S is ``sampling_ratio`` or, when that is <= 0, ceil(bin) for each RoI (0 for an empty RoI).
    RoIs then differ in S: the points are computed for the largest, and a RoI with fewer ignores
    the points s >= its own count (``sample_weights`` gives them weight 0).
    """
    bin_size = length / n_bins  # (R,), in cells, not rounded
    if sampling_ratio > 0:
        count = torch.full_like(length, sampling_ratio)  # (R,)
    else:
        count = torch.ceil(bin_size).clamp(min=0)  # (R,), adaptive: about one point per cell
    S = int(count.max()) if len(count) else 0
    i = torch.arange(n_bins, device=start.device, dtype=start.dtype)[None, :, None]  # (1, n_bins, 1)
    s = torch.arange(S, device=start.device, dtype=start.dtype)[None, None, :]  # (1, 1, S)
    start, bin_size, per_point = (t[:, None, None] for t in (start, bin_size, count.clamp(min=1)))
    # the kernel's order of operations, so that a point on the border is in or out as there
    coords = start + i * bin_size + (s + 0.5) * bin_size / per_point  # (R, n_bins, S)
    return coords, count.long()


def sample_weights(coords: Tensor, count: Tensor, size: int) -> Tensor:
    """Bilinear interpolation along one axis, as weights on the cells: [R, n_bins, S] -> [R, n_bins, S, size].

    The weight vector of a point y is a(y) of (*) in the module docstring, with torchvision's
    border rules: 0 everywhere for y < -1 or y > size; y clamped to [0, size - 1] otherwise. The
    points s >= ``count`` [R] of a RoI (adaptive sampling) get weight 0 too.
    """
    inside = (coords >= -1) & (coords <= size)  # (R, n_bins, S), False: the point reads 0
    y = coords.clamp(min=0)
    low = y.floor().long()  # the cell above (or left of) the point
    at_edge = low >= size - 1  # on or past the last cell: read the last cell alone
    low = low.clamp(max=size - 1)
    high = torch.where(at_edge, low, low + 1)  # the cell below
    y = torch.where(at_edge, low.to(y.dtype), y)
    l = y - low  # (R, n_bins, S), the fraction of the way from low to high
    # (R, n_bins, S, size): 1 - l at low, l at high (both 1 - 0 = 1 at the edge, where low == high)
    a = (1 - l)[..., None] * F.one_hot(low, size) + l[..., None] * F.one_hot(high, size)
    in_use = torch.arange(coords.shape[-1], device=coords.device)[None, :] < count[:, None]  # (R, S)
    return a * (inside[..., None] & in_use[:, None, :, None])


def roi_align_sample_points(box, output_size, spatial_scale: float = 1.0, sampling_ratio: int = -1,
                            aligned: bool = False) -> Tensor:
    """The bilinear sample points of one RoI, to draw them: Tensor[PH, PW, S_h * S_w, 2] of (x, y).

    Args:
        box (Tensor[4] or sequence of 4 floats): (x1, y1, x2, y2) in image pixels.
        output_size, spatial_scale, sampling_ratio, aligned: as for ``roi_align``.

    Returns:
        (x, y) in feature-map coordinates, where cell (i, j)'s value is at (j, i) (the coordinates of
        ``ax.imshow(feature_map)``); the points of bin (ph, pw) row by row.
    """
    PH, PW = output_grid(output_size)
    roi = torch.tensor([[0.0, *[float(v) for v in box]]])  # (1, 5)
    x1, y1, w, h = project_rois(roi, spatial_scale, aligned)
    ys, _ = sample_coordinates(y1, h, PH, sampling_ratio)  # (1, PH, S_h); one RoI: all points in use
    xs, _ = sample_coordinates(x1, w, PW, sampling_ratio)  # (1, PW, S_w)
    S_h, S_w = ys.shape[-1], xs.shape[-1]
    x = xs[0][None, :, None, :].expand(PH, PW, S_h, S_w)
    y = ys[0][:, None, :, None].expand(PH, PW, S_h, S_w)
    points = torch.stack([x, y], dim=-1)  # (PH, PW, S_h, S_w, 2)
    return points.reshape(PH, PW, S_h * S_w, 2)  # -> (PH, PW, S_h*S_w, 2)


def roi_align(input: Tensor, boxes: Tensor | list[Tensor], output_size, spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False, reduce: str = "mean") -> Tensor:
    """RoIAlign, as ``torchvision.ops.roi_align`` (which is ``reduce="mean"``).

    Args:
        input (Tensor[N, C, H, W]): the feature maps.
        boxes (Tensor[R, 5] or list[Tensor[R_i, 4]]): RoIs (x1, y1, x2, y2) in image pixels.
        output_size (int or (PH, PW)): the grid, e.g. 7 for the box head, 14 for the mask head.
        spatial_scale (float): feature cells per image pixel, 1 / stride; 0.125 for a stride-8 map
            (a 128-pixel image and a 16-cell map).
        sampling_ratio (int): S, the points per bin along each axis (2: the paper's four points);
            <= 0: adaptive, ceil(bin size in cells).
        aligned (bool): shift the RoI by -0.5 cell so that pixel edges meet cell edges (see the
            module docstring); False is torchvision's default and the paper's original code.
        reduce (str): ``"mean"`` (torchvision) or ``"max"`` over each bin's points. The max holds
            every point's value, R x C x PH x PW x S_h x S_w numbers: with adaptive sampling on
            large RoIs, prefer a fixed ``sampling_ratio``.

    Returns:
        Tensor[R, C, PH, PW]. No gradient flows to ``boxes``, as in torchvision (and as in Faster
        R-CNN's "approximate joint training", sec. 3.2, which ignores it).
    """
    if reduce not in ("mean", "max"):
        raise ValueError(f"reduce must be 'mean' or 'max', got {reduce!r}")
    PH, PW = output_grid(output_size)
    N, C, H, W = input.shape
    rois = rois_with_batch_index(boxes).detach().to(input.dtype)  # (R, 5)
    R = len(rois)
    x1, y1, roi_w, roi_h = project_rois(rois, spatial_scale, aligned)  # 1. (R,) each, not rounded
    ys, count_h = sample_coordinates(y1, roi_h, PH, sampling_ratio)  # 2, 3. (R, PH, S_h), (R,)
    xs, count_w = sample_coordinates(x1, roi_w, PW, sampling_ratio)  # (R, PW, S_w), (R,)
    a = sample_weights(ys, count_h, H)  # (R, PH, S_h, H): a(y) of each sample row
    b = sample_weights(xs, count_w, W)  # (R, PW, S_w, W): b(x) of each sample column
    if reduce == "mean":  # 4. the mean over a bin's points: (mean_s a(y_s))^T F (mean_t b(x_t))
        a = a.sum(2) / count_h.clamp(min=1)[:, None, None]  # (R, PH, S_h, H) -> (R, PH, H)
        b = b.sum(2) / count_w.clamp(min=1)[:, None, None]  # (R, PW, S_w, W) -> (R, PW, W)
    else:  # 4. the max over a bin's points; the points a RoI leaves unused must not win it
        used_h = torch.arange(ys.shape[-1], device=input.device) < count_h[:, None]  # (R, S_h)
        used_w = torch.arange(xs.shape[-1], device=input.device) < count_w[:, None]  # (R, S_w)
        used = used_h[:, :, None] & used_w[:, None, :]  # (R, S_h, S_w)

    batch = rois[:, 0].long()  # (R,)
    output = input.new_zeros((R, C, PH, PW))
    for n in range(N):  # the RoIs of one image at a time, against that image's map (C, H, W)
        k = batch == n
        if reduce == "mean":
            output[k] = torch.einsum("rph,chw,rqw->rcpq", a[k], input[n], b[k])  # (R_n, C, PH, PW)
        elif a.shape[2] * b.shape[2] > 0:  # (no points at all, S_h or S_w = 0: every output stays 0)
            values = torch.einsum("rpsh,chw,rqtw->rcpqst", a[k], input[n], b[k])  # (R_n, C, PH, PW, S_h, S_w)
            values = values.masked_fill(~used[k][:, None, None, None], float("-inf"))
            top = values.amax(dim=(-2, -1))  # (R_n, C, PH, PW)
            no_points = (count_h[k] * count_w[k] == 0)[:, None, None, None]  # gives 0, as in the mean
            output[k] = torch.where(no_points, 0.0, top)
    return output  # (R, C, PH, PW)
