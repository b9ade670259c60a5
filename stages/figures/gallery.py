"""``python -m stages.figures``: the lecture figures, one PNG file each, for slides.

    python -m stages.figures --out figures/                       every figure that can be made
    python -m stages.figures --out figures/ --only anchors rpn    two of them
    python -m stages.figures --list                               the figures and what each needs
    python -m stages.figures --data coco:ANN.json:IMAGES          drawn on your own data

Each figure shows one idea of one paper, and is made by one function below, in lecture order:

    name            file (.png)                             idea (paper, sec.)          needs
    proposals       01_sliding_windows_vs_selective_search  where to look (R-CNN 2.1)   -
    warped_regions  02_warped_regions                       crop + warp (R-CNN App. A)  -
    hard_negatives  03_hard_negatives                       hard negatives (R-CNN 2.3)  (rcnn)
    roi_pool        04_roi_pooling_grid                     RoI pooling (Fast 2.1)      -
    spp             05_spp_bins                             pyramid bins (SPP-net 2.3)  -
    anchors         06_anchors                              anchors (Faster 3.1.1)      -
    rpn             07_rpn_objectness_and_proposals         RPN + NMS (Faster 3.1, 3.3) faster_rcnn
    roi_align       08_roi_pool_vs_roi_align                RoIAlign (Mask Fig. 3)      -
    fpn             09_fpn_levels                           pyramid levels (FPN Eq. 1)  (mask_rcnn)
    masks           10_predicted_masks                      masks (Mask R-CNN 3)        mask_rcnn
    comparison      11_comparison                           all four generations        compare

What a figure needs. The figures of geometry (proposals, warps, pooling bins, anchors) draw one
validation image of ``--data`` (``--image`` picks which) and always render. The figures of what a
network *learned* read a trained run under ``--runs`` (default ``runs/``, each stage's default
output folder): ``<runs>/faster_rcnn/checkpoint.pt``, ``<runs>/mask_rcnn/checkpoint.pt``,
``<runs>/comparison.json`` (``python -m stages.compare`` writes all of them there, so after the
README's main command every figure renders); without it the figure is skipped with a line that
names the command to run. Each "wrote" line names the run (checkpoint, steps, seconds) it drew. Two figures use a run when there is one and say in their title when there is not:
hard negatives (the trained SVMs' scores from ``<runs>/rcnn``; without them, the negatives nearest
to an object, which is where hard negatives come from) and FPN levels (a trained pyramid from
``<runs>/mask_rcnn``; without it an untrained one, whose maps still show each level's resolution).

Checkpoints are read the way the stages read them (``stages.training.checkpoint.load_checkpoint``: refused
when written by another stage or for other classes) and rebuilt with the stage's own model
builder from the config they saved. Proposals come from the selective-search cache that stages 1
and 2 share (``<data-root>/proposals``). Files are written atomically (``stages.training.io``) at 150 dpi,
with fonts sized for a projector; at the end the command lists what it wrote and what it skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
import traceback
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from stages.training import io
from stages.backbone import PIXEL_MEAN, PIXEL_STD, STRIDES, batch_images, enlarge
from stages.training.checkpoint import CheckpointError, load_checkpoint, restore
from stages.training.cli import command_parser, dataclass_from_dict
from stages.data.sources import DatasetError, load_dataset
from stages.figures.draw import (PALETTE, class_colour, draw_anchors, draw_boxes, draw_captioned_boxes,
                         draw_detections, draw_fpn_levels, draw_objectness, draw_roi_align_points,
                         draw_roi_pool_grid, to_numpy_image)
from stages.training.engine import CHECKPOINT
from stages.ops import box_iou
from stages.selective_search import CACHE_DIR, ProposalCache, sliding_windows
from stages.data.transforms import val_transforms

DPI = 150
# matplotlib's defaults (10 pt) are unreadable from the back of a lecture hall
FONTS = {"font.size": 14, "axes.titlesize": 15, "axes.labelsize": 14, "legend.fontsize": 12,
         "figure.titlesize": 19, "xtick.labelsize": 12, "ytick.labelsize": 12}
CAPTION = 12  # the captions drawn on boxes
GREEN, RED, ORANGE = "#2ca02c", "#d62728", "#ff7f0e"


class Skip(Exception):
    """A figure that cannot be made here; the message says why, and which command would fix it."""


# ------------------------------------------------------------------------------------------------
# What the figures draw from: one image, its proposals, the trained runs
# ------------------------------------------------------------------------------------------------

class Inputs:
    """One validation image of ``--data`` (and the first few, for the masks), its selective-search
    proposals, and the checkpoints under ``--runs``. Each is loaded on first use and kept, so
    selective search runs once for all the figures."""

    def __init__(self, data: str = "synthetic", data_root: str | Path = "data",
                 runs: str | Path = "runs", image_index: int = 0):
        self.data, self.data_root, self.runs = data, Path(data_root), Path(runs)
        self.image_index = image_index
        self.used: list[str] = []  # the runs the figure being made read ("which run it came from")

    @cached_property
    def val(self):
        try:
            _, val = load_dataset(self.data, self.data_root, val_transforms(), val_transforms())
        except DatasetError as e:
            raise SystemExit(f"error: {e}") from None
        if not 0 <= self.image_index < len(val):
            raise SystemExit(f"error: --image {self.image_index}: the validation set of "
                             f"{self.data} has {len(val)} images (0..{len(val) - 1})")
        return val

    @cached_property
    def item(self) -> tuple[torch.Tensor, dict]:
        return self.val[self.image_index]

    @property
    def image(self) -> torch.Tensor:
        return self.item[0]  # float [3, H, W] in [0, 1]

    @property
    def target(self) -> dict:
        return self.item[1]

    @property
    def class_names(self) -> list[str]:
        return self.val.class_names

    @cached_property
    def selective_search(self) -> tuple[torch.Tensor, float]:
        """``(boxes [P, 4], seconds)``: the proposals stages 1 and 2 use, from their cache."""
        from stages.rcnn.config import RCNNConfig
        cache = ProposalCache(self.data_root / CACHE_DIR, RCNNConfig().selective_search())
        return cache.get(self.image)

    @cached_property
    def roi(self) -> torch.Tensor:
        """The RoI of the pooling figures: the image's largest object [4] (the most bins to see),
        or a centred 48-px box on an image without objects."""
        boxes = self.target["boxes"]
        if len(boxes) == 0:
            H, W = self.image.shape[-2:]
            return torch.tensor([W / 2 - 24, H / 2 - 24, W / 2 + 24, H / 2 + 24])
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes[area.argmax()]

    def command(self, module: str, out: Path) -> str:
        """The command that writes ``out``, with the flags that differ from its defaults."""
        parts = [f"python -m {module}"]
        if self.data != "synthetic":
            parts.append(f"--data {self.data}")
        if self.data_root != Path("data"):
            parts.append(f"--data-root {self.data_root}")
        if out != Path("runs") / out.name:
            parts.append(f"--out {out}")
        return " ".join(parts)

    def checkpoint(self, run: str, stages: tuple[str, ...]) -> dict:
        """``<runs>/<run>/checkpoint.pt``, loaded and checked against the data's classes; ``Skip``
        (with the command to run) when it is missing, damaged, or of another stage."""
        path = self.runs / run / CHECKPOINT
        if not path.is_file():
            command = self.command(f"stages.{run}", path.parent)
            raise Skip(f"no trained run at {path}: run `{command}`")
        try:
            state = load_checkpoint(path, class_names=self.class_names)
        except CheckpointError as e:
            raise Skip(str(e)) from None
        if state["stage"] not in stages:
            raise Skip(f"{path} was written by stage '{state['stage']}', not {' or '.join(stages)}")
        steps = f"{state['step']} steps, " if state.get("step") else ""  # R-CNN counts no steps
        self.used.append(f"{path} ({steps}{state.get('train_time_s', 0.0):.0f} s of training)")
        return state


def denormalize(regions: torch.Tensor) -> torch.Tensor:
    """R-CNN's crops (zero-mean inputs, ``rcnn.regions.normalize``) back to colours in [0, 1]."""
    std = torch.tensor(PIXEL_STD)[:, None, None]  # (3, 1, 1)
    mean = torch.tensor(PIXEL_MEAN)[:, None, None]
    return (regions * std + mean).clamp(0, 1)


def spread(indices: torch.Tensor, n: int) -> torch.Tensor:
    """At most ``n`` of ``indices``, evenly spread over them (first and last included)."""
    if len(indices) <= n:
        return indices
    return indices[torch.linspace(0, len(indices) - 1, n).round().long()]


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


def _map_of_image(image: torch.Tensor, stride: int) -> np.ndarray:
    """A stand-in feature map for the pooling pictures: the image averaged over stride x stride
    cells, (H/stride, W/stride, 3). Pooling's geometry depends only on the map's size; this map
    lets the eye find the object in it."""
    return to_numpy_image(F.avg_pool2d(image[None], stride)[0])  # (1, 3, H, W) -> (H/s, W/s, 3)


def _zoom(ax, box, scale: float, map_size: tuple[int, int], margin: float = 1.5):
    """Show the cells around a RoI: map coordinates put cell (i, j) at (x, y) = (j, i)."""
    H, W = map_size
    x1, y1, x2, y2 = (float(v) * scale - 0.5 for v in box)
    ax.set_xlim(max(x1 - margin, -0.5), min(x2 + margin, W - 0.5))
    ax.set_ylim(min(y2 + margin, H - 0.5), max(y1 - margin, -0.5))


def _cell_lines(ax, map_size: tuple[int, int]):
    H, W = map_size
    for i in range(H + 1):
        ax.axhline(i - 0.5, color="0.6", linewidth=0.5)
    for j in range(W + 1):
        ax.axvline(j - 0.5, color="0.6", linewidth=0.5)


def _thicker(ax, factor: float = 2.0):
    """Lines for a projector: the pooling pictures' boxes (drawn at the notebooks' widths by
    ``stages.figures.draw``) ``factor`` times wider."""
    for patch in ax.patches:
        patch.set_linewidth(patch.get_linewidth() * factor)


def _size(box) -> str:
    x1, y1, x2, y2 = (float(v) for v in box)
    return f"{x2 - x1:.0f} x {y2 - y1:.0f} px"


# ------------------------------------------------------------------------------------------------
# Stage 1, R-CNN
# ------------------------------------------------------------------------------------------------

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
    from stages.rcnn.regions import crop_regions, match_to_ground_truth, normalize
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


# ------------------------------------------------------------------------------------------------
# Stage 2, Fast R-CNN and SPP-net
# ------------------------------------------------------------------------------------------------

def fig_roi_pool(src: Inputs) -> Figure:
    """RoI pooling's two roundings (Fast R-CNN sec. 2.1): the RoI snapped to whole cells of the
    shared map (stride 8 on the 2x-enlarged image: 4 image pixels), then split into 7 x 7 bins, each rounded to whole cells again."""
    from stages.fast_rcnn.config import FastRCNNConfig
    cfg = FastRCNNConfig()
    stride, box = round(STRIDES["C3"] / cfg.input_scale), src.roi  # the map's stride in image pixels
    feature = _map_of_image(src.image, stride)
    map_size = feature.shape[:2]
    fig = Figure(figsize=(15, 7.4), layout="compressed")
    left, right = fig.subplots(1, 2)
    draw_boxes(left, src.image, box[None], "white", linewidth=2.5)
    H, W = src.image.shape[-2:]
    for v in range(0, W + 1, stride):  # cell edges, in the boxes' coordinates (x2 = last + 1)
        left.axvline(v, color="0.8", linewidth=0.5, alpha=0.7)
    for v in range(0, H + 1, stride):
        left.axhline(v, color="0.8", linewidth=0.5, alpha=0.7)
    left.set_title(f"the RoI in the image ({_size(box)});\nlines: the {stride} x {stride} px "
                   f"cells of the {map_size[0]} x {map_size[1]} feature map")
    right.imshow(feature, interpolation="nearest")
    draw_roi_pool_grid(right, box, 1 / stride, cfg.pool_size, map_size)
    _thicker(right)
    _zoom(right, box, 1 / stride, map_size)
    right.set_title(f"on the map: exact RoI (dashed white) vs the\n{cfg.pool_size} x "
                    f"{cfg.pool_size} bins of whole cells it is rounded to (red)")
    right.set_axis_off()
    fig.suptitle("RoI pooling: one max per bin, any RoI -> 7 x 7 (Fast R-CNN sec. 2.1)\n"
                 "map drawn as the image averaged over each cell; rounded bins can overlap, "
                 "and miss or add parts of the RoI")
    return fig


def fig_spp(src: Inputs) -> Figure:
    """SPP-net's pyramid (sec. 2.3): the 4 x 4, 2 x 2 and 1 x 1 bins of a small and of a large RoI,
    one level per panel: the same 21 bins whatever the RoI's size."""
    from stages.fast_rcnn.config import FastRCNNConfig
    cfg = FastRCNNConfig()
    levels = cfg.spp_levels
    stride = round(STRIDES["C3"] / cfg.input_scale)  # the map's stride in image pixels
    feature = _map_of_image(src.image, stride)
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
            _thicker(ax)
            _zoom(ax, box, 1 / stride, map_size)
            ax.set_axis_off()
            ax.set_title(f"{n} x {n} = {n * n} bin{'s' if n > 1 else ''}", color=colour)
        w, h = (box[2:] - box[:2]).tolist()
        row[0].text(-0.04, 0.5, f"RoI {w:.0f} x {h:.0f} px\n= {w / stride:.1f} x {h / stride:.1f} "
                    f"cells", transform=row[0].transAxes, rotation=90, ha="right", va="center")
    fig.suptitle(f"SPP: {' + '.join(f'{n}x{n}' for n in levels)} bins make any RoI one "
                 f"{bins} x C vector (SPP-net sec. 2.3)\ndashed white: the exact RoI; each bin "
                 f"max-pools the whole cells it is rounded to (on a small RoI, bins share cells)")
    return fig


# ------------------------------------------------------------------------------------------------
# Stage 3, Faster R-CNN
# ------------------------------------------------------------------------------------------------

def fig_anchors(src: Inputs) -> Figure:
    """The k = 9 anchors at one location, and every location of the shared map's grid (stride 4 in image pixels)
    (Faster R-CNN sec. 3.1.1)."""
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
    from stages.faster_rcnn.config import FasterRCNNConfig
    from stages.faster_rcnn.model import build_faster_rcnn
    from stages.faster_rcnn.rpn import flatten_rpn_outputs, propose

    state = src.checkpoint("faster_rcnn", ("faster_rcnn",))
    cfg = dataclass_from_dict(FasterRCNNConfig, state["config"])
    model = build_faster_rcnn(cfg, len(src.class_names) - 1)
    restore(state, model, restore_rng=False)
    model.eval()
    image, target = src.image, src.target
    with torch.no_grad():
        feature, sizes = model.features([image])  # (1, C, sH/8, sW/8)
        logits, deltas = model.rpn.head(feature)  # (1, A, h, w), (1, 4A, h, w)
        objectness, flat_deltas = flatten_rpn_outputs(logits, deltas)  # (1, h*w*A), (1, h*w*A, 4)
        anchors = model.rpn.anchors([tuple(feature.shape[-2:])])  # (h*w*A, 4)
        step = dict(image_sizes=sizes, box_coder=model.rpn.box_coder,
                    pre_nms_top_n=cfg.rpn_pre_nms_test, min_size=cfg.rpn_min_size,
                    nms_kernel=cfg.nms_kernel)
        # NMS at IoU 1.0 removes nothing (no IoU exceeds 1): the proposal layer without its NMS
        before, _ = propose(objectness, flat_deltas, anchors, post_nms_top_n=cfg.rpn_pre_nms_test,
                            nms_thresh=1.0, **step)
        after, _ = propose(objectness, flat_deltas, anchors, post_nms_top_n=cfg.rpn_post_nms_test,
                           nms_thresh=cfg.rpn_nms, **step)
    shown = 20
    fig = Figure(figsize=(20, 6.2), layout="compressed")
    axes = fig.subplots(1, 4)
    draw_detections(axes[0], image, target["boxes"], target["labels"], class_names=src.class_names,
                    linewidth=2.5, fontsize=CAPTION)
    axes[0].set_title(f"the image: {len(target['boxes'])} objects")
    heat = draw_objectness(axes[1], image, torch.sigmoid(logits[0]), model.rpn.strides[0])
    axes[1].set_title(f"objectness at {logits.shape[2]} x {logits.shape[3]} locations\n"
                      f"(best of its {logits.shape[1]} anchors)")
    fig.colorbar(heat, ax=axes[1], shrink=0.7, label="P(object)")
    panels = ((axes[2], before[0], f"before NMS: top {len(before[0])}"),
              (axes[3], after[0], f"after NMS at IoU {cfg.rpn_nms:g}: {len(after[0])}"))
    for ax, boxes, what in panels:
        draw_boxes(ax, image, boxes[:shown].flip(0), ORANGE, linewidth=1.8)  # the best on top
        ax.set_title(f"{what}\nthe best {min(shown, len(boxes))} drawn")
    fig.suptitle("The Region Proposal Network: an objectness score for every anchor, then NMS "
                 "(Faster R-CNN sec. 3.1, 3.3)\nbefore NMS the best boxes are near-copies of one "
                 "or two objects; after it the same number covers more of them")
    return fig


# ------------------------------------------------------------------------------------------------
# Stage 4, Mask R-CNN and FPN
# ------------------------------------------------------------------------------------------------

def fig_roi_align(src: Inputs) -> Figure:
    """RoIPool against RoIAlign on the same RoI and map (Mask R-CNN sec. 3, Figure 3)."""
    from stages.mask_rcnn.config import MaskRCNNConfig
    cfg = MaskRCNNConfig()
    stride, box = round(STRIDES["C3"] / cfg.input_scale), src.roi  # the map's stride in image pixels
    feature = _map_of_image(src.image, stride)
    map_size = feature.shape[:2]
    fig = Figure(figsize=(15, 7.8), layout="compressed")
    left, right = fig.subplots(1, 2)
    for ax in (left, right):
        ax.imshow(feature, interpolation="nearest", alpha=0.55)
    _cell_lines(left, map_size)
    draw_roi_pool_grid(left, box, 1 / stride, cfg.pool_size, map_size)
    _thicker(left)
    left.set_title(f"RoIPool (Fast R-CNN): RoI and {cfg.pool_size} x {cfg.pool_size} bins\n"
                   f"rounded to whole cells; max over each bin's cells")
    draw_roi_align_points(right, box, 1 / stride, cfg.pool_size, map_size,
                          sampling_ratio=cfg.align_sampling_ratio, aligned=True)
    _thicker(right, 1.5)
    s = cfg.align_sampling_ratio
    right.set_title(f"RoIAlign (Mask R-CNN): nothing rounded; {s} x {s} bilinear\n"
                    f"samples per bin (dots), averaged")
    for ax in (left, right):
        _zoom(ax, box, 1 / stride, map_size)
        ax.set_axis_off()
    fig.suptitle(f"The same RoI ({_size(box)}) on the stride-{stride} map, two ways to pool it "
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

    K = len(src.class_names) - 1
    try:
        state = src.checkpoint("mask_rcnn", ("mask_rcnn",))
        cfg = dataclass_from_dict(MaskRCNNConfig, state["config"])
        if not cfg.fpn:
            raise Skip(f"{src.runs / 'mask_rcnn'} was trained without --fpn")
        model = build_mask_rcnn(cfg, K)
        restore(state, model, restore_rng=False)
        weights = f"trained weights ({src.runs / 'mask_rcnn'})"
    except Skip as why:
        src.used.clear()  # the run it read (one without a pyramid) is not what it draws
        print(f"[figures] fpn: {why}; drawing an untrained pyramid")
        cfg = MaskRCNNConfig(fpn=True, input_scale=1.0)  # the pyramid on the image as it is
        torch.manual_seed(0)
        model = build_mask_rcnn(cfg, K)
        weights = "untrained weights (python -m stages.mask_rcnn trains them)"
    model.eval()
    image = src.image
    with torch.no_grad():
        batch, _ = batch_images([image])
        maps, _ = model.pyramid(enlarge(batch, cfg.input_scale))  # P2..P5, each (1, d, H/s, W/s)
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
    from stages.mask_rcnn.__main__ import build_model
    from stages.mask_rcnn.config import MaskRCNNConfig

    state = src.checkpoint("mask_rcnn", ("mask_rcnn", "mask_rcnn_torchvision"))
    cfg = dataclasses.replace(dataclass_from_dict(MaskRCNNConfig, state["config"]), weights="none")
    model = build_model(cfg, len(src.class_names) - 1, state["config"].get("long_side"))
    restore(state, model, restore_rng=False)
    model.eval()
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
                 f"into its box (sec. 3)\ntop: masks thresholded at 0.5 (the paper's); "
                 f"bottom: the best detection's mask probabilities")
    return fig


# ------------------------------------------------------------------------------------------------
# All four: the comparison
# ------------------------------------------------------------------------------------------------

def fig_comparison(src: Inputs) -> Figure | Path:
    """``python -m stages.compare``'s plot, re-rendered from its comparison.json (at 150 dpi, where
    compare writes 120); its comparison.png as it is when the JSON cannot be read."""
    from stages import compare

    folder = src.runs  # compare's default --out: the stages' runs and comparison.json together
    json_path, png_path = folder / "comparison.json", folder / "comparison.png"
    if json_path.is_file():
        try:
            rows, settings = compare.load_comparison(json_path)
            src.used.append(f"{json_path} ({len(rows)} rows)")
            return compare.plot_comparison(rows, compare.describe(settings))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            if not png_path.is_file():
                raise Skip(f"{json_path} cannot be read ({type(e).__name__}: {e}); run "
                           f"`{src.command('stages.compare', folder)}` again") from None
            print(f"[figures] comparison: {json_path} cannot be read ({e}); copying {png_path}")
    if png_path.is_file():
        src.used.append(str(png_path))
        return png_path
    raise Skip(f"no comparison in {folder}: run `{src.command('stages.compare', folder)}` "
               f"(trains and evaluates all four stages)")


# ------------------------------------------------------------------------------------------------
# The list of figures, and the command
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FigureSpec:
    name: str  # for --only
    filename: str
    make: Callable[[Inputs], Figure | Path]  # a figure to save, or an existing PNG to copy
    teaches: str
    needs: str | None = None  # a run it cannot do without (else skipped)
    uses: str | None = None  # a run it reads if present (else it says so in its title)
    fonts: dict = dataclasses.field(default_factory=lambda: dict(FONTS))  # matplotlib rcParams


FIGURES = (
    FigureSpec("proposals", "01_sliding_windows_vs_selective_search.png", fig_proposals,
               "R-CNN 2.1: sliding windows vs selective search, with counts"),
    FigureSpec("warped_regions", "02_warped_regions.png", fig_warped_regions,
               "R-CNN 2.1, App. A: proposals + context warped to the CNN input, fg/bg by IoU"),
    FigureSpec("hard_negatives", "03_hard_negatives.png", fig_hard_negatives,
               "R-CNN 2.3: the negatives the SVMs score highest", uses="rcnn"),
    FigureSpec("roi_pool", "04_roi_pooling_grid.png", fig_roi_pool,
               "Fast R-CNN 2.1: RoI pooling's 7 x 7 bins, rounded to cells"),
    FigureSpec("spp", "05_spp_bins.png", fig_spp,
               "SPP-net 2.3: 4x4 + 2x2 + 1x1 bins on a small and a large RoI"),
    FigureSpec("anchors", "06_anchors.png", fig_anchors,
               "Faster R-CNN 3.1.1: 3 x 3 anchors at a location, centres at the stride"),
    FigureSpec("rpn", "07_rpn_objectness_and_proposals.png", fig_rpn,
               "Faster R-CNN 3.1, 3.3: objectness map, proposals before/after NMS",
               needs="faster_rcnn"),
    FigureSpec("roi_align", "08_roi_pool_vs_roi_align.png", fig_roi_align,
               "Mask R-CNN 3, Fig. 3: RoIPool bins vs RoIAlign sample points"),
    FigureSpec("fpn", "09_fpn_levels.png", fig_fpn,
               "FPN 3, Eq. 1: pyramid maps P2-P5 and the RoIs each level pools", uses="mask_rcnn"),
    FigureSpec("masks", "10_predicted_masks.png", fig_masks,
               "Mask R-CNN 3: predicted masks and mask probabilities", needs="mask_rcnn"),
    # compare's plot places its legends and labels for matplotlib's default fonts: kept
    FigureSpec("comparison", "11_comparison.png", fig_comparison,
               "all four stages: AP against test time, where the time goes", needs="compare",
               fonts={}),
)
BY_NAME = {spec.name: spec for spec in FIGURES}


def format_list() -> str:
    lines = [f"{'name':<15} {'file':<43} {'run':<13} what it shows"]
    for s in FIGURES:
        run = s.needs or (f"({s.uses})" if s.uses else "-")
        lines.append(f"{s.name:<15} {s.filename:<43} {run:<13} {s.teaches}")
    lines.append("run: the run under --runs the figure needs; (run): used if present, else said so "
                 "in the figure")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m stages.figures", __doc__)
    parser.add_argument("--out", default="figures", help="folder for the PNG files (default: figures)")
    parser.add_argument("--runs", default="runs",
                        help="folder of the trained runs, <runs>/<stage>/checkpoint.pt and "
                             "<runs>/comparison.json (default: runs, where compare writes them)")
    parser.add_argument("--data", default="synthetic",
                        help="synthetic | coco:ANN.json[:IMAGE_DIR] | pennfudan:DIR: the images "
                             "drawn (default: synthetic)")
    parser.add_argument("--data-root", default="data",
                        help="generated data and proposal caches (default: data)")
    parser.add_argument("--image", type=int, default=0,
                        help="which validation image to draw (default: 0)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(BY_NAME),
                        help=f"render only these figures: {', '.join(BY_NAME)} (see --list)")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--dpi", type=int, default=DPI,
                        help=f"resolution of the PNG files (default: {DPI})")
    return parser


@dataclass
class Report:
    written: list[Path] = dataclasses.field(default_factory=list)
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> why
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> error
    sources: dict[str, list] = dataclasses.field(default_factory=dict)  # file -> runs it read


def render(spec: FigureSpec, src: Inputs, out: Path, dpi: int = DPI) -> Path:
    """Make one figure and write it to ``out / spec.filename`` (atomically); ``Skip`` passes up."""
    path = out / spec.filename
    with matplotlib.rc_context(spec.fonts):  # sizes are read when text is made and when drawn
        made = spec.make(src)
        if isinstance(made, Path):
            io.write_bytes(path, made.read_bytes())
        else:
            io.save_figure(made, path, dpi=dpi)
    return path


def main(argv: list[str] | None = None) -> Report:
    args = build_parser().parse_args(argv)
    if args.list:
        print(format_list())
        return Report()
    chosen = [spec for spec in FIGURES if not args.only or spec.name in args.only]  # lecture order
    src = Inputs(args.data, args.data_root, args.runs, args.image)
    if any(spec.name != "comparison" for spec in chosen):
        _ = src.val  # load the data now: a bad --data fails here, once, with one line
    out = Path(args.out)
    report = Report()
    for spec in chosen:
        t0 = time.perf_counter()
        src.used = []
        try:
            path = render(spec, src, out, args.dpi)
        except Skip as why:
            report.skipped[spec.name] = str(why)
            print(f"[figures] skipped {spec.name}: {why}")
            continue
        except Exception as e:  # one broken figure must not cost the others
            report.failed[spec.name] = f"{type(e).__name__}: {e}"
            print(f"[figures] FAILED {spec.name}:")
            traceback.print_exc()
            continue
        report.written.append(path)
        report.sources[path.name] = list(src.used)
        origin = "; ".join(src.used) if src.used else f"no trained run: drawn from validation image {args.image} of {args.data}"
        print(f"[figures] wrote {path} ({time.perf_counter() - t0:.1f} s) from {origin}")

    print(f"\n[figures] {len(report.written)} written to {out}/"
          + "".join(f"\n  {p.name}" for p in report.written))
    if report.skipped:
        print(f"[figures] {len(report.skipped)} skipped:"
              + "".join(f"\n  {name}: {why}" for name, why in report.skipped.items()))
    if report.failed:
        print(f"[figures] {len(report.failed)} failed:"
              + "".join(f"\n  {name}: {err}" for name, err in report.failed.items()))
    return report


if __name__ == "__main__":
    if main().failed:
        raise SystemExit(1)
