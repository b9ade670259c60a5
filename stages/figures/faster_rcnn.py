"""Stage 3's figures, Faster R-CNN (Ren et al., NeurIPS 2015): the anchors, and what a trained
Region Proposal Network makes of them.

    name     function      file (.png)                        paper, section
    anchors  fig_anchors   06_anchors                         Faster R-CNN 3.1.1 (k = 9 anchors)
    rpn      fig_rpn       07_rpn_objectness_and_proposals    Faster R-CNN 3.1, 3.3 (RPN, NMS)

Each takes the ``Inputs`` (``stages.figures.common``) and returns a matplotlib ``Figure``;
``fig_rpn`` needs a trained run (``<runs>/faster_rcnn``). A anchors per location, h x w the
feature map.
"""

from __future__ import annotations

import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from stages.backbone import STRIDES
from stages.figures.common import CAPTION, ORANGE, Inputs, trained_model
from stages.figures.draw import PALETTE, draw_anchors, draw_boxes, draw_detections, draw_objectness


def fig_anchors(src: Inputs) -> Figure:
    """The k = 9 anchors at one location, and every location of the shared map's grid (stride 4
    in image pixels) (Faster R-CNN sec. 3.1.1)."""
    from stages.faster_rcnn.anchors import anchor_shapes, grid_anchors
    from stages.faster_rcnn.config import FasterRCNNConfig
    cfg = FasterRCNNConfig()
    image, stride = src.image, round(STRIDES["C3"] / cfg.input_scale)  # in image pixels
    base = anchor_shapes(cfg.anchor_sizes, cfg.anchor_ratios)  # (A, 4), centred on (0, 0)
    A = len(base)
    H, W = image.shape[-2] // stride, image.shape[-1] // stride  # the feature map
    anchors = grid_anchors((H, W), stride, base).view(H, W, A, 4)  # (H*W*A, 4) -> (H, W, A, 4)
    centres = (anchors[:, :, 0, :2] + anchors[:, :, 0, 2:]) / 2  # (H, W, 2), same for every shape
    y, x = H // 2, W // 2
    fig = Figure(figsize=(15, 7.8), layout="compressed")
    left, right = fig.subplots(1, 2)
    draw_anchors(left, image, anchors[y, x], A, linewidth=2.0)
    left.scatter(*centres[y, x].tolist(), s=60, color="white", edgecolors="black", zorder=3)
    left.set_title(f"the {A} anchors of location ({y}, {x}):\n{len(cfg.anchor_sizes)} sizes x "
                   f"{len(cfg.anchor_ratios)} aspect ratios, one centre")
    shapes = [(r, s) for r in cfg.anchor_ratios for s in cfg.anchor_sizes]  # anchor_shapes' order
    left.legend(handles=[Line2D([], [], color=PALETTE[a], linewidth=2.5,
                                label=f"{s} px, h/w {r:g}") for a, (r, s) in enumerate(shapes)],
                loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=12, frameon=False)
    draw_boxes(right, image, torch.zeros(0, 4))
    right.scatter(centres[..., 0].flatten(), centres[..., 1].flatten(), s=22, color="white",
                  edgecolors="black", linewidths=0.6, zorder=3)
    right.set_title(f"every location: {H} x {W} = {H * W} centres, {stride} px apart\n"
                    f"x {A} anchors = {H * W * A} anchors per image")
    fig.suptitle("Anchors: reference boxes at every position of the feature map "
                 "(Faster R-CNN sec. 3.1.1)")
    return fig


def fig_rpn(src: Inputs) -> Figure:
    """What a trained RPN sees (Faster R-CNN sec. 3.1, 3.3): its objectness at every location,
    and its best proposals before and after non-maximum suppression."""
    from stages.faster_rcnn.rpn import propose

    model, cfg = trained_model(src, "faster_rcnn", ("faster_rcnn",))
    rpn = model.proposer  # the RegionProposalNetwork
    image, target = src.image, src.target
    with torch.no_grad():
        feature, sizes = model.features([image])  # (1, C, h, w)
        objectness, flat_deltas, anchors, _ = rpn.score(feature)  # (1, h*w*A), (1, h*w*A, 4), (h*w*A, 4)
        h, w = feature.shape[-2:]
        logits = objectness.view(1, h, w, -1).permute(0, 3, 1, 2)  # (1, A, h, w): for the map
        step = dict(image_sizes=sizes, box_coder=rpn.box_coder,
                    pre_nms_top_n=cfg.rpn_pre_nms_test, min_size=cfg.rpn_min_size,
                    nms_kernel=cfg.nms_kernel)
        # NMS at IoU 1.0 removes nothing (no IoU exceeds 1): the proposal layer without its NMS
        before, _ = propose(objectness, flat_deltas, anchors, post_nms_top_n=cfg.rpn_pre_nms_test,
                            nms_thresh=1.0, **step)
        after, _ = propose(objectness, flat_deltas, anchors, post_nms_top_n=cfg.rpn_post_nms_test,
                           nms_thresh=cfg.rpn_nms_thresh, **step)
    shown = 20
    fig = Figure(figsize=(20, 6.2), layout="compressed")
    axes = fig.subplots(1, 4)
    draw_detections(axes[0], image, target["boxes"], target["labels"], class_names=src.class_names,
                    linewidth=2.5, fontsize=CAPTION)
    axes[0].set_title(f"the image: {len(target['boxes'])} objects")
    heat = draw_objectness(axes[1], image, torch.sigmoid(logits[0]), rpn.stride)
    axes[1].set_title(f"objectness at {logits.shape[2]} x {logits.shape[3]} locations\n"
                      f"(best of its {logits.shape[1]} anchors)")
    fig.colorbar(heat, ax=axes[1], shrink=0.7, label="P(object)")
    panels = ((axes[2], before[0], f"before NMS: top {len(before[0])}"),
              (axes[3], after[0], f"after NMS at IoU {cfg.rpn_nms_thresh:g}: {len(after[0])}"))
    for ax, boxes, what in panels:
        draw_boxes(ax, image, boxes[:shown].flip(0), ORANGE, linewidth=1.8)  # the best on top
        ax.set_title(f"{what}\nthe best {min(shown, len(boxes))} drawn")
    fig.suptitle("The Region Proposal Network: an objectness score for every anchor, then NMS "
                 "(Faster R-CNN sec. 3.1, 3.3)\nbefore NMS the best boxes are near-copies of one "
                 "or two objects; after it the same number covers more of them")
    return fig
