"""Stage 4's figures, Mask R-CNN (He et al., ICCV 2017) with FPN (Lin et al., CVPR 2017):
pooling without rounding, the pyramid's levels, and the masks.

    name       function        file (.png)                paper, section
    roi_align  fig_roi_align   08_roi_pool_vs_roi_align   Mask R-CNN 3, Fig. 3 (RoIAlign)
    fpn        fig_fpn         09_fpn_levels              FPN 3, Eq. 1 (which level pools a RoI)
    masks      fig_masks       10_predicted_masks         Mask R-CNN 3 (a mask per detection)
    mask_path  fig_mask_path   11_mask_path               Mask R-CNN 3, Fig. 4 (14 x 14 -> 28 x 28
                                                          -> pasted into the box -> 0.5)

Each takes the ``Inputs`` (``stages.figures.common``) and returns a matplotlib ``Figure``;
``fig_masks`` and ``fig_mask_path`` need a trained run (``<runs>/mask_rcnn``), ``fig_fpn`` uses one trained with
``--fpn`` if there is one (else an untrained pyramid, said so). P2..P5: the pyramid's levels,
level k at stride 2^k.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from stages.backbone import STRIDES
from stages.figures.common import (Inputs, Skip, box_size, map_of_image, spread, thicker,
                                   trained_model, zoom)
from stages.figures.draw import (PALETTE, class_colour, draw_boxes, draw_captioned_boxes,
                                 draw_detections, draw_fpn_levels, draw_roi_align_points,
                                 draw_roi_pool_grid, to_numpy_image)


def _cell_lines(ax, map_size: tuple[int, int]):
    """The borders of every cell of an (H, W) map, cell (i, j) centred at (x, y) = (j, i)."""
    H, W = map_size
    for i in range(H + 1):
        ax.axhline(i - 0.5, color="0.6", linewidth=0.5)
    for j in range(W + 1):
        ax.axvline(j - 0.5, color="0.6", linewidth=0.5)


def fig_roi_align(src: Inputs) -> Figure:
    """RoIPool against RoIAlign on the same RoI and map (Mask R-CNN sec. 3, Figure 3)."""
    from stages.mask_rcnn.config import MaskRCNNConfig
    cfg = MaskRCNNConfig()
    stride, box = round(STRIDES["C3"] / cfg.input_scale), src.roi  # the map's stride in image pixels
    feature = map_of_image(src.image, stride)
    map_size = feature.shape[:2]
    fig = Figure(figsize=(15, 7.8), layout="compressed")
    left, right = fig.subplots(1, 2)
    for ax in (left, right):
        ax.imshow(feature, interpolation="nearest", alpha=0.55)
    _cell_lines(left, map_size)
    draw_roi_pool_grid(left, box, 1 / stride, cfg.pool_size, map_size)
    thicker(left)
    left.set_title(f"RoIPool (Fast R-CNN): RoI and {cfg.pool_size} x {cfg.pool_size} bins\n"
                   f"rounded to whole cells; max over each bin's cells")
    draw_roi_align_points(right, box, 1 / stride, cfg.pool_size, map_size,
                          sampling_ratio=cfg.align_sampling_ratio, aligned=True)
    thicker(right, 1.5)
    s = cfg.align_sampling_ratio
    right.set_title(f"RoIAlign (Mask R-CNN): nothing rounded; {s} x {s} bilinear\n"
                    f"samples per bin (dots), averaged")
    for ax in (left, right):
        zoom(ax, box, 1 / stride, map_size)
        ax.set_axis_off()
    fig.suptitle(f"The same RoI ({box_size(box)}) on the stride-{stride} map, two ways to pool it "
                 f"(Mask R-CNN sec. 3, Fig. 3)\nwhite: the exact RoI; RoIAlign keeps "
                 f"pixel-accurate alignment, which masks need")
    return fig


def _level_range(k: int, k0: int, canonical: float, k_min: int = 2, k_max: int = 5) -> str:
    """The RoI sizes sqrt(w h) that FPN Eq. 1 sends to level k."""
    lo, hi = canonical * 2.0 ** (k - k0), canonical * 2.0 ** (k + 1 - k0)
    if k == k_min:
        return f"< {hi:g} px"
    if k == k_max:
        return f">= {lo:g} px"
    return f"{lo:g}-{hi:g} px"


def fig_fpn(src: Inputs) -> Figure:
    """The FPN pyramid P2..P5 of one image, and which RoIs each level pools (FPN Eq. 1)."""
    from stages.mask_rcnn.config import MaskRCNNConfig
    from stages.mask_rcnn.fpn import assign_levels
    from stages.mask_rcnn.model import build_mask_rcnn

    try:
        model, cfg = trained_model(src, "mask_rcnn", ("mask_rcnn",))
        if not cfg.fpn:
            raise Skip(f"{src.runs / 'mask_rcnn'} was trained without --fpn")
        weights = f"trained weights ({src.runs / 'mask_rcnn'})"
    except Skip as why:
        src.used.clear()  # the run it read (one without a pyramid) is not what it draws
        print(f"[figures] fpn: {why}; drawing an untrained pyramid")
        cfg = MaskRCNNConfig(fpn=True, input_scale=1.0)  # the pyramid on the image as it is
        torch.manual_seed(0)
        model = build_mask_rcnn(cfg, len(src.class_names) - 1).eval()
        weights = "untrained weights (python -m stages.mask_rcnn trains them)"
    image = src.image
    with torch.no_grad():
        p2_to_p6, _ = model.features([image])  # [P2, ..., P6], each (1, d, H/s, W/s)
    maps = p2_to_p6[:4]  # P2..P5, the levels RoIs are pooled from (P6 feeds only the RPN)
    rois, _ = src.selective_search
    levels = assign_levels(rois, 2, 5, cfg.fpn_k0, cfg.fpn_canonical_size)  # (R,) in 2..5
    shown = 6  # RoIs drawn per level, from its smallest to its largest
    by_size = torch.argsort((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
    picked = {k: spread(by_size[levels[by_size] == k], shown) for k in range(2, 6)}
    colours = {k: PALETTE[k - 2] for k in range(2, 6)}
    fig = Figure(figsize=(16, 8.8), layout="compressed")
    grid = fig.add_gridspec(2, 4)
    ax = fig.add_subplot(grid[:, :2])
    draw_boxes(ax, image, torch.zeros(0, 4))
    for k in range(5, 1, -1):  # the large (coarse-level) boxes underneath
        draw_captioned_boxes(ax, None, rois[picked[k]], colours=colours[k], linewidth=2.5)
    ax.legend(handles=[Line2D([], [], color=colours[k], linewidth=3,
                              label=f"P{k}: {int((levels == k).sum())} RoIs, "
                                    f"{_level_range(k, cfg.fpn_k0, cfg.fpn_canonical_size)}")
                       for k in range(2, 6)],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    ax.set_title(f"{len(rois)} selective-search RoIs; up to {shown} per level drawn,\n"
                 f"coloured by the level that pools them")
    pyramid = {f"P{k}": p for k, p in zip(range(2, 6), maps)}
    level_axes = [fig.add_subplot(grid[i // 2, 2 + i % 2]) for i in range(4)]
    draw_fpn_levels(level_axes, pyramid)  # each map in image pixels: the boxes go on as they are
    for a, (name, p), k in zip(level_axes, pyramid.items(), range(2, 6)):
        draw_captioned_boxes(a, None, rois[picked[k]], colours=colours[k], linewidth=2.5)
        a.set_xlim(0, image.shape[-1])
        a.set_ylim(image.shape[-2], 0)
        a.set_title(f"{name}: {p.shape[-2]} x {p.shape[-1]} (stride {2 ** k}), "
                    f"{int((levels == k).sum())} RoIs", color=colours[k])
    fig.suptitle(f"FPN: small RoIs read the fine P2, large ones the coarse P4-P5 (FPN Eq. 1: "
                 f"k = floor({cfg.fpn_k0} + log2(sqrt(wh) / {cfg.fpn_canonical_size:g})))\n"
                 f"maps: mean of the {maps[0].shape[1]} channels; {weights}")
    return fig


def fig_masks(src: Inputs) -> Figure:
    """A trained Mask R-CNN's detections with their masks on the first validation images, and the
    soft mask (probabilities before the 0.5 threshold) of each image's best detection."""
    model, cfg = trained_model(src, "mask_rcnn", ("mask_rcnn", "mask_rcnn_torchvision"))
    n = min(4, len(src.val))
    threshold = 0.5
    fig = Figure(figsize=(4.2 * n, 9.4), layout="compressed")
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        image, _ = src.val[i]
        with torch.no_grad():
            out = model([image])[0]
        scores = out["scores"]
        keep = torch.nonzero(scores >= threshold).flatten()
        note = f"{len(keep)} detections >= {threshold:g}"
        if len(keep) == 0:  # a briefly trained model: show its best three, and say so
            keep = torch.arange(min(3, len(scores)))
            note = f"none >= {threshold:g}: best {len(keep)}"
        draw_detections(axes[0, i], image, out["boxes"][keep], out["labels"][keep], scores[keep],
                        out["masks"][keep], src.class_names, linewidth=2, fontsize=11)
        axes[0, i].set_title(f"image {i}: {note}", fontsize=13, pad=16)  # above the captions
        ax = axes[1, i]
        ax.imshow(to_numpy_image(image))
        ax.set_axis_off()
        if len(scores):
            best = int(scores.argmax())
            prob = np.ma.masked_less(out["masks"][best, 0].numpy(), 0.02)  # outside: the image
            heat = ax.imshow(prob, cmap="magma", alpha=0.75, vmin=0, vmax=1)
            x1, y1, x2, y2 = out["boxes"][best].tolist()
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2,
                                   edgecolor=class_colour(out["labels"][best])))
            ax.set_title(f"P(mask) of the best: {src.class_names[out['labels'][best]]} "
                         f"{scores[best]:.2f}", fontsize=13)
        else:
            heat = None
            ax.set_title("no detections", fontsize=13)
    if heat is not None:
        fig.colorbar(heat, ax=axes[1].tolist(), shrink=0.7, label="mask probability")
    fig.suptitle(f"Mask R-CNN: a {cfg.mask_size} x {cfg.mask_size} mask per detection, pasted "
                 f"into its box (sec. 3.1)\ntop: masks thresholded at 0.5 (the paper's); "
                 f"bottom: the best detection's mask probabilities")
    return fig


def fig_mask_path(src: Inputs) -> Figure:
    """The mask branch's path for the best detection of a trained Mask R-CNN on the image."""
    model, _ = trained_model(src, "mask_rcnn", ("mask_rcnn",))
    try:
        return mask_path_figure(model, src.image, src.class_names)
    except NoDetection:
        raise Skip("the trained Mask R-CNN detects nothing on this image: try --image N") from None


class NoDetection(ValueError):
    """The model found nothing on the image, so there is no mask to follow."""


def mask_path_figure(model, image: torch.Tensor, class_names) -> Figure:
    """The mask branch's path for the best detection of our ``MaskRCNN`` on ``image`` (sec. 3):
    the 14 x 14 RoIAlign features of its box, the 28 x 28 mask of its class, pasted into the box,
    thresholded at 0.5. Notebook 04 draws it for its own model."""
    from stages.mask_rcnn.mask_head import mask_probabilities, paste_masks

    cfg = model.cfg
    model.eval()
    with torch.no_grad():
        out = model([image])[0]
        if len(out["boxes"]) == 0:
            raise NoDetection("the model detects nothing on this image: no mask to follow")
        box, label = out["boxes"][:1], out["labels"][:1]  # the best detection
        features, _ = model.features([image])
        pooled = model.mask_head.pooler(features, [box])  # (1, C, 14, 14)
        logits = model.mask_head(features, [box])  # (1, K, 28, 28)
        probs = mask_probabilities(logits, label, cfg.mask_loss)  # (1, 28, 28)
        pasted = paste_masks(probs, box, tuple(image.shape[-2:]))[0]  # (H, W)
    S, m = pooled.shape[-1], probs.shape[-1]
    fig = Figure(figsize=(22, 5.6), layout="compressed")
    axes = fig.subplots(1, 5)
    draw_detections(axes[0], image, box, label, out["scores"][:1], class_names=class_names,
                    linewidth=2.5, fontsize=12)
    axes[0].set_title("the best detection: its box")
    axes[1].imshow(pooled[0].mean(0).numpy(), cmap="viridis")
    axes[1].set_title(f"RoIAlign: {S} x {S} features of the box\n(mean of {pooled.shape[1]} channels)")
    axes[2].imshow(probs[0].numpy(), cmap="magma", vmin=0, vmax=1)
    axes[2].set_title(f"the FCN's {m} x {m} mask of class\n{class_names[int(label)]} ({cfg.mask_loss}), "
                      f"1 of {logits.shape[1]}")
    x1, y1, x2, y2 = box[0].tolist()
    for ax, values, title in ((axes[3], pasted.numpy(), "pasted into the box: resized, bilinear"),
                              (axes[4], (pasted >= 0.5).float().numpy(), "thresholded at 0.5")):
        ax.imshow(to_numpy_image(image))
        ax.imshow(np.ma.masked_less(values, 0.02), cmap="magma", alpha=0.8, vmin=0, vmax=1)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2, edgecolor="white"))
        ax.set_title(title)
    for ax in axes[1:]:
        ax.set_axis_off()
    fig.suptitle("The mask branch (Mask R-CNN sec. 3, Figure 4): RoIAlign -> 4 convs -> 2x deconv -> "
                 f"one {m} x {m} mask per class; the detected class's mask is pasted into the box "
                 "and binarised at 0.5")
    return fig
