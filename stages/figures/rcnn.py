"""Stage 1's figures, R-CNN (Girshick et al., CVPR 2014): where to look, what the CNN is shown,
and which background regions its SVMs get wrong.

    name            function             file (.png)                              paper, section
    proposals       fig_proposals        01_sliding_windows_vs_selective_search   R-CNN 2.1
    warped_regions  fig_warped_regions   02_warped_regions                        R-CNN 2.1, App. A
    hard_negatives  fig_hard_negatives   03_hard_negatives                        R-CNN 2.3

Each takes the ``Inputs`` (``stages.figures.common``) and returns a matplotlib ``Figure``;
``stages.figures.gallery`` lists and writes them. Boxes are (x1, y1, x2, y2) in image pixels;
R proposals of one image, K object classes (background not counted), S x S the CNN's input.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from matplotlib.figure import Figure

from stages.backbone import PIXEL_MEAN, PIXEL_STD
from stages.figures.common import CAPTION, GREEN, ORANGE, RED, Inputs, Skip, spread
from stages.figures.draw import draw_boxes, draw_captioned_boxes, draw_detections, to_numpy_image
from stages.ops import box_iou
from stages.rcnn.sliding_windows import sliding_windows
from stages.training.cli import dataclass_from_dict
from stages.training.engine import CHECKPOINT


def denormalize(regions: torch.Tensor) -> torch.Tensor:
    """R-CNN's crops (zero-mean inputs, ``rcnn.regions.normalize``) back to colours in [0, 1]."""
    std = torch.tensor(PIXEL_STD)[:, None, None]  # (3, 1, 1)
    mean = torch.tensor(PIXEL_MEAN)[:, None, None]
    return (regions * std + mean).clamp(0, 1)


def _boxes_and_crops(image, gt_boxes, boxes, crops, captions, colours, cols: int = 4) -> Figure:
    """The image with numbered boxes (ground truth in white) on the left; each box's crop, as
    the CNN sees it, in a grid on the right, captioned in the box's colour."""
    n = len(boxes)
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(16, 7.6), layout="compressed")
    grid = fig.add_gridspec(rows, 3 + cols, wspace=0.15, hspace=0.35)
    ax = fig.add_subplot(grid[:, :3])
    draw_boxes(ax, image, gt_boxes, "white", linewidth=2.5)
    draw_captioned_boxes(ax, None, boxes, [str(i + 1) for i in range(n)], colours, fontsize=CAPTION)
    ax.set_title("the image; white: its objects")
    for i in range(n):
        a = fig.add_subplot(grid[i // cols, 3 + i % cols])
        a.imshow(to_numpy_image(crops[i]), interpolation="nearest")
        a.set_title(f"{i + 1}: {captions[i]}", color=colours[i], fontsize=13)
        a.set_axis_off()
    return fig


def fig_proposals(src: Inputs) -> Figure:
    """Sliding windows against selective search on one image (R-CNN sec. 2.1), with their counts
    and, per object, the best box each method offers."""
    from stages.rcnn.config import RCNNConfig
    cfg = RCNNConfig()  # the windows and the selective search that stage 1 runs
    image, target = src.image, src.target
    gt = target["boxes"]
    windows = sliding_windows(tuple(image.shape[-2:]), cfg.sliding_window())
    ss, seconds = src.selective_search
    shown = 100
    fig = Figure(figsize=(16, 6.4), layout="compressed")
    axes = fig.subplots(1, 3)
    draw_detections(axes[0], image, gt, target["labels"], class_names=src.class_names,
                    linewidth=2.5, fontsize=CAPTION)
    axes[0].set_title(f"the image: {len(gt)} objects")
    methods = ((axes[1], "sliding windows", windows,
                f"{len(cfg.sw_sizes)} sizes x {len(cfg.sw_ratios)} shapes"),
               (axes[2], "selective search", ss, f"{seconds * 1000:.0f} ms"))
    for ax, name, boxes, how in methods:
        pick = torch.randperm(len(boxes), generator=torch.Generator().manual_seed(0))[:shown]
        draw_boxes(ax, image, boxes[pick], ORANGE, linewidth=0.8, alpha=0.7)
        title = f"{name}: {len(boxes)} boxes\n{how}; {min(shown, len(boxes))} drawn"
        if len(gt) and len(boxes):
            best_iou, best = box_iou(gt, boxes).max(dim=1)  # (G,): each object's best box
            draw_boxes(ax, image, boxes[best], GREEN, linewidth=2.5)
            title += f"\ngreen: best per object, IoU {best_iou.mean():.2f}"
        ax.set_title(title)
    fig.suptitle("Where to look: every window, or the regions of the image? (R-CNN sec. 2.1)")
    return fig


def fig_warped_regions(src: Inputs) -> Figure:
    """Proposals of one image, dilated by the context and warped to the CNN's S x S input
    (R-CNN sec. 2.1, Appendix A), labelled as fine-tuning labels them: fg at IoU >= 0.5."""
    from stages.rcnn.config import RCNNConfig
    from stages.ops import match_to_ground_truth
    from stages.rcnn.regions import crop_regions, normalize
    cfg = RCNNConfig()
    S, p = cfg.warp_size, cfg.context_pad_pixels
    image, target = src.image, src.target
    boxes, _ = src.selective_search
    max_iou, _, label = match_to_ground_truth(boxes, target["boxes"], target["labels"])  # (R,) each
    by_iou = torch.argsort(max_iou, descending=True)
    fg = by_iou[max_iou[by_iou] >= cfg.fg_iou]
    bg = by_iou[max_iou[by_iou] < cfg.fg_iou]
    fg = spread(fg, 6)  # from the best fitting to the loosest still-positive ones
    pick = torch.cat([fg, spread(bg, 12 - len(fg))])  # near misses first, then pure background
    crops = denormalize(crop_regions(normalize(image), boxes[pick], S, p))  # (12, 3, S, S)
    captions, colours = [], []
    for r in pick.tolist():
        if max_iou[r] >= cfg.fg_iou:
            captions.append(f"fg {src.class_names[label[r]]} {max_iou[r]:.2f}")
            colours.append(GREEN)
        else:
            captions.append(f"bg {max_iou[r]:.2f}")
            colours.append(RED)
    fig = _boxes_and_crops(image, target["boxes"], boxes[pick], crops, captions, colours)
    fig.suptitle(f"R-CNN's input: each proposal + {p:.1f} px of context, warped to {S} x {S} "
                 f"(sec. 2.1, App. A)\nlabel = class of the best object if IoU >= {cfg.fg_iou:g} "
                 f"(fg), else background (bg); number = IoU")
    return fig


def fig_hard_negatives(src: Inputs) -> Figure:
    """The negatives the SVMs get wrong (R-CNN sec. 2.3): regions with IoU < 0.3 with every
    object of a class, scored by that class's trained SVM, the highest first. Without a trained
    R-CNN, the negatives nearest to an object, the kind hard-negative mining finds (said so)."""
    from stages.rcnn.cnn import extract_features
    from stages.rcnn.config import RCNNConfig
    from stages.rcnn.model import model_from_checkpoint
    from stages.rcnn.regions import crop_regions, normalize
    from stages.rcnn.svm import max_iou_per_class

    image, target = src.image, src.target
    boxes, _ = src.selective_search
    K = len(src.class_names) - 1
    try:
        state = src.checkpoint("rcnn", ("rcnn",))
        if not (state.get("extra") or {}).get("svm"):
            raise Skip(f"{src.runs / 'rcnn' / CHECKPOINT} holds no trained SVMs yet")
    except Skip as why:
        src.used.clear()
        state, missing = None, str(why)
    cfg = dataclass_from_dict(RCNNConfig, state["config"]) if state else RCNNConfig()
    S, p = cfg.warp_size, cfg.context_pad_pixels
    iou = max_iou_per_class(boxes, target["boxes"], target["labels"], K)  # (R, K)
    negative = iou < cfg.svm_neg_iou  # (R, K): region r is a negative of class k
    regions = crop_regions(normalize(image), boxes, S, p)  # (R, 3, S, S)
    n = 12  # the grid of _boxes_and_crops: 3 x 4
    if state is not None:
        model = model_from_checkpoint(state, dataclasses.replace(cfg, classifier="svm",
                                                                 bbox_reg=False), None)
        with torch.no_grad():
            fc7 = extract_features(model.cnn, regions, cfg.feature_batch)["fc7"]  # (R, D)
        margin = model.svms.scores(fc7)  # (R, K): w_k . (s x) + b_k
        worst, k = margin.masked_fill(~negative, -math.inf).max(dim=1)  # (R,): its worst class
        order = torch.argsort(worst, descending=True)
        pick = order[torch.isfinite(worst[order])][:n]
        hard = int((negative & (margin > cfg.hard_threshold)).sum())
        wrong = int((negative & (margin > 0)).sum())
        captions = [f"{src.class_names[k[r] + 1]} {worst[r]:+.2f}" for r in pick.tolist()]
        colours = [RED if worst[r] > 0 else ORANGE if worst[r] > cfg.hard_threshold else "#7f7f7f"
                   for r in pick.tolist()]
        title = (f"Hard negatives: the background regions the trained SVMs score highest "
                 f"(R-CNN sec. 2.3)\nof {int(negative.sum())} negatives (region, class; IoU < "
                 f"{cfg.svm_neg_iou:g}): {hard} score > {cfg.hard_threshold:g} (hard: orange), "
                 f"{wrong} score > 0 (wrong: red)")
    else:
        overlap = iou.max(dim=1).values  # (R,): IoU with the nearest object of any class
        everywhere = negative.all(dim=1)  # a negative for every class
        order = torch.argsort(overlap, descending=True)
        pick = order[everywhere[order]][:n]
        captions = [f"IoU {overlap[r]:.2f}" for r in pick.tolist()]
        colours = [ORANGE] * len(pick)
        title = (f"Likely hard negatives: the background regions nearest to an object "
                 f"(IoU < {cfg.svm_neg_iou:g})\nno usable R-CNN run in {src.runs / 'rcnn'}, so "
                 f"no SVM scores: these are where hard negatives come from")
        print(f"[figures] hard_negatives: {missing}; drawing the negatives nearest to an object")
    fig = _boxes_and_crops(image, target["boxes"], boxes[pick], denormalize(regions[pick]),
                           captions, colours)
    fig.suptitle(title)
    return fig
