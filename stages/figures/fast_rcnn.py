"""Stage 2's figures, Fast R-CNN (Girshick, ICCV 2015) and SPP-net (He et al., ECCV 2014): how a
RoI of any size is pooled to a fixed grid of bins on the shared feature map.

    name      function       file (.png)           paper, section
    roi_pool  fig_roi_pool   04_roi_pooling_grid   Fast R-CNN 2.1 (RoI pooling, 7 x 7 bins)
    spp       fig_spp        05_spp_bins           SPP-net 2.2 (4 x 4 + 2 x 2 + 1 x 1 bins)

Each takes the ``Inputs`` (``stages.figures.common``) and returns a matplotlib ``Figure``. The map
is drawn in its own cells: a box (x1, y1, x2, y2) in image pixels goes onto it scaled by 1 / stride.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure

from stages.backbone import STRIDES
from stages.figures.common import Inputs, box_size, map_of_image, thicker, zoom
from stages.figures.draw import PALETTE, draw_boxes, draw_roi_pool_grid


def fig_roi_pool(src: Inputs) -> Figure:
    """RoI pooling's two roundings (Fast R-CNN sec. 2.1): the RoI snapped to whole cells of the
    shared map (stride 8 on the 2x-enlarged image: 4 image pixels), then split into 7 x 7 bins,
    each rounded to whole cells again."""
    from stages.fast_rcnn.config import FastRCNNConfig
    cfg = FastRCNNConfig()
    stride, box = round(STRIDES["C3"] / cfg.input_scale), src.roi  # the map's stride in image pixels
    feature = map_of_image(src.image, stride)
    map_size = feature.shape[:2]
    fig = Figure(figsize=(15, 7.4), layout="compressed")
    left, right = fig.subplots(1, 2)
    draw_boxes(left, src.image, box[None], "white", linewidth=2.5)
    H, W = src.image.shape[-2:]
    for v in range(0, W + 1, stride):  # cell edges, in the boxes' coordinates (x2 = last + 1)
        left.axvline(v, color="0.8", linewidth=0.5, alpha=0.7)
    for v in range(0, H + 1, stride):
        left.axhline(v, color="0.8", linewidth=0.5, alpha=0.7)
    left.set_title(f"the RoI in the image ({box_size(box)});\nlines: the {stride} x {stride} px "
                   f"cells of the {map_size[0]} x {map_size[1]} feature map")
    right.imshow(feature, interpolation="nearest")
    draw_roi_pool_grid(right, box, 1 / stride, cfg.pool_size, map_size)
    thicker(right)
    zoom(right, box, 1 / stride, map_size)
    right.set_title(f"on the map: exact RoI (dashed white) vs the\n{cfg.pool_size} x "
                    f"{cfg.pool_size} bins of whole cells it is rounded to (red)")
    right.set_axis_off()
    fig.suptitle("RoI pooling: one max per bin, any RoI -> 7 x 7 (Fast R-CNN sec. 2.1)\n"
                 "map drawn as the image averaged over each cell; rounded bins can overlap, "
                 "and miss or add parts of the RoI")
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
    fig = Figure(figsize=(4.6 * len(levels), 10), layout="compressed")
    axes = fig.subplots(len(rois), len(levels), squeeze=False)
    for row, box in zip(axes, rois):
        for ax, n, colour in zip(row, levels, PALETTE):
            ax.imshow(feature, interpolation="nearest", alpha=0.8)
            draw_roi_pool_grid(ax, box, 1 / stride, n, map_size, colour=colour)
            thicker(ax)
            zoom(ax, box, 1 / stride, map_size)
            ax.set_axis_off()
            ax.set_title(f"{n} x {n} = {n * n} bin{'s' if n > 1 else ''}", color=colour)
        w, h = (box[2:] - box[:2]).tolist()
        row[0].text(-0.04, 0.5, f"RoI {w:.0f} x {h:.0f} px\n= {w / stride:.1f} x {h / stride:.1f} "
                    f"cells", transform=row[0].transAxes, rotation=90, ha="right", va="center")
    fig.suptitle(f"SPP: {' + '.join(f'{n}x{n}' for n in levels)} bins make any RoI one "
                 f"{bins} x C vector (SPP-net sec. 2.2)\ndashed white: the exact RoI; each bin "
                 f"max-pools the whole cells it is rounded to (on a small RoI, bins share cells)")
    return fig
