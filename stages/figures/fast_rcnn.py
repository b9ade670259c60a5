"""Stage 2's figures, Fast R-CNN (Girshick, ICCV 2015) and SPP-net (He et al., ECCV 2014): how a
RoI of any size is pooled to a fixed grid of bins on the shared feature map.

    name      function       file (.png)           paper, section
    roi_pool  fig_roi_pool   04_roi_pooling_grid   Fast R-CNN 2.1 (RoI pooling, 7 x 7 bins)
    spp       fig_spp        05_spp_bins           SPP-net 2.2 (4 x 4 + 2 x 2 + 1 x 1 bins)

Each takes the ``Inputs`` (``stages.figures.common``) and returns a matplotlib ``Figure``. The map
is drawn in its own cells: a box (x1, y1, x2, y2) in image pixels goes onto it scaled by 1 / stride.
The bins are drawn from the geometry ``stages.ops.roi_pool`` pools with
(``stages.figures.draw.roi_pool_bins``), pulled apart so that each of the n x n can be seen: on a
RoI of 13 cells, 7 bins of whole cells overlap their neighbours by a cell, and drawn in place
their edges fall on nearly every cell edge.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from stages.backbone import STRIDES
from stages.figures.common import RED, Inputs, box_size, map_of_image, zoom
from stages.figures.draw import PALETTE, SLIDE_WIDTH, draw_pooling_bins, exact_bins, roi_pool_bins


def _bin_sizes(bins: torch.Tensor) -> str:
    """The bins' widths and heights in cells, for a title: "1-3" or "2"."""
    sizes = torch.cat([bins[..., 2] - bins[..., 0], bins[..., 3] - bins[..., 1]]).flatten()
    lo, hi = int(sizes.min()), int(sizes.max())
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def fig_roi_pool(src: Inputs) -> Figure:
    """RoI pooling's two roundings (Fast R-CNN sec. 2.1), one panel each, and its output: the RoI
    snapped to whole cells of the shared map (stride 8 on the 2x-enlarged image: 4 image pixels);
    its 7 x 7 bins, each snapped to whole cells again; one max per bin."""
    from stages.fast_rcnn.config import FastRCNNConfig
    from stages.ops.roi_pool import quantise_rois, roi_pool

    cfg = FastRCNNConfig()
    n = cfg.pool_size
    stride, box = round(STRIDES["C3"] / cfg.input_scale), src.roi  # the map's stride in image pixels
    feature = map_of_image(src.image, stride)  # (H/s, W/s, 3): the stand-in map
    map_size = feature.shape[:2]
    fig = Figure(figsize=(SLIDE_WIDTH, 6.4), layout="compressed")
    rounded, bins_ax, pooled_ax = fig.subplots(1, 3, width_ratios=[1, 1.45, 0.75])

    # 1. the RoI on the map: exact (box / stride) against the whole cells it is rounded to
    x1, y1, w, h = (int(v) for v in quantise_rois(torch.tensor([[0.0, *box.tolist()]]), 1 / stride))
    ex1, ey1, ex2, ey2 = (float(v) / stride for v in box)
    rounded.imshow(feature, interpolation="nearest")
    rounded.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), w, h, fill=False, edgecolor=RED, linewidth=3))
    for x0, y0, x1_, y1_ in exact_bins(box, 1 / stride, n).reshape(-1, 4).tolist():  # cell units
        rounded.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1_ - x0, y1_ - y0, fill=False,
                                    ls=(0, (2, 2)), edgecolor="white", linewidth=1))
    rounded.add_patch(Rectangle((ex1 - 0.5, ey1 - 0.5), ex2 - ex1, ey2 - ey1, fill=False,
                                ls="--", edgecolor="white", linewidth=2.5))
    zoom(rounded, box, 1 / stride, map_size)
    (left, right), (bottom, top) = rounded.get_xlim(), rounded.get_ylim()  # and past the map's
    rounded.set_xlim(min(left, x1 - 0.8), max(right, x1 + w - 0.2))  # edge, where the rounded
    rounded.set_ylim(max(bottom, y1 + h - 0.2), min(top, y1 - 0.8))  # RoI can reach
    rounded.set_facecolor("black")
    rounded.set_axis_off()
    rounded.set_title(f"1. the RoI / {stride} px, {ex2 - ex1:.1f} x {ey2 - ey1:.1f}\ncells, "
                      f"cut into {n} x {n} exact bins\n(white), rounded to {w} x {h} cells (red)")

    # 2. the n x n bins, each rounded to whole cells: what each one max-pools
    bins = roi_pool_bins(box, 1 / stride, n, map_size)  # (n, n, 4)
    draw_pooling_bins(bins_ax, feature, box, 1 / stride, n, colour=RED, exact=False)
    bins_ax.set_axis_off()
    bins_ax.set_title(f"2. the {n} x {n} bins RoI pooling takes: whole cells,\n{_bin_sizes(bins)} "
                      f"a side (pulled apart to show each); a cell\nan exact edge cuts goes to "
                      f"both its bins")

    # 3. one max per bin and channel: roi_pool itself, on the stand-in map's 3 channels
    rgb = torch.from_numpy(feature).permute(2, 0, 1)[None].float()  # (H, W, 3) -> (1, 3, H, W)
    out = roi_pool(rgb, [box[None].float()], n, 1 / stride)[0]  # (3, n, n)
    pooled_ax.imshow(out.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    pooled_ax.set_xticks([])
    pooled_ax.set_yticks([])
    pooled_ax.set_title(f"3. the max of each\nbin's cells: {n} x {n}\n(channel by channel)")
    fig.suptitle(f"RoI pooling (Fast R-CNN sec. 2.1): any RoI ({box_size(box)}) -> {n} x {n} "
                 f"bins, one max each\nmap: the image averaged over each {stride} x {stride} px "
                 f"cell, a stand-in for the stride-{stride} features")
    return fig


def fig_spp(src: Inputs) -> Figure:
    """SPP-net's pyramid (sec. 2.2): the 4 x 4, 2 x 2 and 1 x 1 bins of a small and of a large RoI,
    one level per panel: the same 21 bins whatever the RoI's size."""
    from stages.fast_rcnn.config import FastRCNNConfig
    cfg = FastRCNNConfig()
    levels = cfg.spp_levels
    stride = round(STRIDES["C3"] / cfg.input_scale)  # the map's stride in image pixels
    feature = map_of_image(src.image, stride)
    map_size = feature.shape[:2]
    boxes = src.target["boxes"]
    if len(boxes) >= 2:
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        rois = [boxes[area.argmin()], boxes[area.argmax()]]
    else:  # one object (or none): it, and the whole image
        H, W = src.image.shape[-2:]
        rois = [src.roi, torch.tensor([0.0, 0.0, float(W), float(H)])]
    bins = sum(n * n for n in levels)
    fig = Figure(figsize=(SLIDE_WIDTH, 7.8), layout="compressed")
    axes = fig.subplots(len(rois), len(levels), squeeze=False)
    for row, box in zip(axes, rois):
        for ax, n, colour in zip(row, levels, PALETTE):
            grid = roi_pool_bins(box, 1 / stride, n, map_size)
            draw_pooling_bins(ax, feature, box, 1 / stride, n, colour=colour, exact=n == 1)
            ax.set_axis_off()
            ax.set_title(f"{n} x {n} = {n * n} bin{'s' if n > 1 else ''}, "
                         f"{_bin_sizes(grid)} cells a side", color=colour)
        w, h = (box[2:] - box[:2]).tolist()
        row[0].text(-0.04, 0.5, f"RoI {w:.0f} x {h:.0f} px\n= {w / stride:.1f} x {h / stride:.1f} "
                    f"cells", transform=row[0].transAxes, rotation=90, ha="right", va="center")
    fig.suptitle(f"SPP (SPP-net sec. 2.2): {' + '.join(f'{n}x{n}' for n in levels)} = {bins} bins, "
                 f"one {bins} x C vector for a RoI of any size\neach bin max-pools the whole cells "
                 f"it is rounded to (bins pulled apart; dashed: the exact RoI)")
    return fig
