"""Pictures of detections: boxes, class names, scores and masks drawn on an image (matplotlib).

Every stage, notebook and lecture figure draws through these few functions, so a class has the
same colour everywhere, and an object with a mask a colour of its own (as torchvision's
``draw_segmentation_masks`` and detectron2's ``Visualizer``). Functions take a matplotlib ``Axes``
and draw on it; ``figure_grid`` and ``save_figure`` (in ``stages.files``) make and write
whole figures without pyplot, so they work on a machine with no display. Beside detections, the
pictures of each stage's inner steps: RoI pooling's bins (``roi_pool_bins``, the cells each bin
max-pools, as ``stages.ops.roi_pool`` computes them; ``exact_bins``, before rounding), drawn in
place or pulled apart, RoIAlign's sample points, SPP's bins (stage 2, 4); anchors, anchor labels,
the RPN's objectness and proposal recall curves (stage 3); the FPN's levels and the per-class
masks of one RoI (stage 4).

Inputs follow the shared item format: image float [3, H, W] in [0, 1] (or uint8 (H, W, 3)),
boxes [N, 4] in (x1, y1, x2, y2) absolute pixels, labels [N] in 1..K, masks [N, H, W] or
[N, 1, H, W] (binary, or probabilities thresholded at 0.5).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from stages import files

# the tab10 palette; label k gets PALETTE[(k - 1) % 10]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


# A 16:9 slide is 13.33 x 7.5 inches: a lecture figure this wide keeps its point sizes on the
# slide (shown 1920 px wide, 12 pt is 24 px). Figures meant for slides are at most this wide.
SLIDE_WIDTH, SLIDE_HEIGHT = 13.33, 7.5


def class_colour(label: int) -> str:
    return PALETTE[(int(label) - 1) % len(PALETTE)]


def to_numpy_image(image) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from a [3, H, W] tensor or an (H, W, 3) array (uint8 or float)."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        if image.ndim == 3 and image.shape[0] in (1, 3):
            image = image.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        image = image.numpy()
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    return image.clip(0, 1)


def _as_numpy(x):
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def draw_detections(ax, image, boxes=None, labels=None, scores=None, masks=None,
                    class_names=None, score_threshold: float = 0.0, title: str | None = None,
                    mask_alpha: float = 0.45, linewidth: float = 1.5, fontsize: float = 7,
                    instance_colours: bool | None = None, colours=None):
    """Draw an image with its boxes, ``name score`` captions and translucent masks on ``ax``.

    Detections scoring below ``score_threshold`` are not drawn. Ground truth is drawn the same way
    with ``scores=None``. Colours: ``instance_colours=True``, one colour per detection (box,
    caption and mask), so that two touching objects of one class do not merge into one blob
    (``PALETTE[i % 10]`` for the i-th detection drawn, which is the i-th best when they come sorted
    by score; torchvision's ``draw_segmentation_masks`` and detectron2's ``Visualizer`` colour
    instances so too); ``False``: by class (``class_colour``), so a class looks the same in every
    picture. The default, None: per instance when there are masks, else by class. ``colours``:
    one colour per detection, given (a prediction in the colour of the object it found).
    """
    if instance_colours is None:
        instance_colours = masks is not None and len(masks) > 0
    img = to_numpy_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    boxes = _as_numpy(boxes)
    n = 0 if boxes is None else len(boxes)
    labels = np.ones(n, int) if labels is None else _as_numpy(labels)
    scores = _as_numpy(scores)
    keep = np.ones(n, bool) if scores is None else scores >= score_threshold
    drawn = np.flatnonzero(keep) if n else np.arange(0 if masks is None else len(masks))

    def colour_of(i: int) -> str:
        if colours is not None:
            return colours[i]
        if instance_colours:
            rank = int(np.searchsorted(drawn, i))  # i's place among the detections drawn
            return PALETTE[rank % len(PALETTE)]
        return class_colour(labels[i] if n else 1)

    masks = _as_numpy(masks)
    if masks is not None and len(masks):
        if masks.ndim == 4:  # (N, 1, H, W) -> (N, H, W)
            masks = masks[:, 0]
        overlay = np.zeros((*masks.shape[1:], 4), np.float32)  # (H, W, RGBA)
        for i in drawn[drawn < len(masks)]:
            overlay[masks[i] >= 0.5] = [*_hex_to_rgb(colour_of(i)), mask_alpha]
        ax.imshow(overlay)

    for i in np.flatnonzero(keep):
        x1, y1, x2, y2 = boxes[i]
        colour = colour_of(i)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=linewidth))
        name = class_names[labels[i]] if class_names is not None else str(int(labels[i]))
        caption = name if scores is None else f"{name} {scores[i]:.2f}"
        ax.text(x1, y1, caption, fontsize=fontsize, color="white", va="bottom",
                bbox=dict(facecolor=colour, edgecolor="none", pad=1, alpha=0.85))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    return ax


def draw_target(ax, image, target: dict, class_names=None, title: str | None = None):
    """Draw a dataset item's ground truth (boxes, labels, masks)."""
    return draw_detections(ax, image, target["boxes"], target["labels"], None,
                           target.get("masks"), class_names, title=title)


def figure_grid(n: int, cols: int = 4, cell: float = 2.4):
    """A pyplot-free ``Figure`` with ``n`` axes in a grid; returns ``(fig, axes)``."""
    cols = min(cols, max(n, 1))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cell * cols, cell * rows))
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def preview_grid(dataset, path, n: int = 16, cols: int = 4):
    """Save the first ``n`` items of a dataset, with their ground truth, as one PNG grid."""
    n = min(n, len(dataset))
    fig, axes = figure_grid(n, cols)
    for i, ax in enumerate(axes):
        image, target = dataset[i]
        draw_target(ax, image, target, dataset.class_names,
                    title=f"image {target['image_id']}: {len(target['boxes'])} objects")
    fig.tight_layout()
    return files.save_figure(fig, path)


def _hex_to_rgb(colour: str) -> tuple[float, float, float]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (0, 2, 4))


def roi_pool_bins(box, spatial_scale: float, output_size: int, map_size: tuple[int, int]) -> torch.Tensor:
    """The bins RoI pooling max-pools, as ``stages.ops.roi_pool`` computes them: int64 [n, n, 4] of
    (x0, y0, x1, y1), the first cell and the last cell + 1 of bin (i, j) (i the row) on an
    (H, W) map, n = ``output_size``.

    Two roundings (Fast R-CNN sec. 2.1): the RoI's ends to whole cells (``quantise_rois``), then
    each bin to whole cells, from floor(i h / n) to ceil((i + 1) h / n) cells into the rounded RoI
    (``bin_edges``). Together the bins cover the rounded RoI; where an exact bin edge falls inside a
    cell, that cell goes to both neighbours (a 13-cell RoI in 7 bins: [0, 2), [1, 4), [3, 6), ...).
    """
    from stages.ops.roi_pool import bin_edges, quantise_rois

    roi = torch.tensor([[0.0, *[float(v) for v in box]]])  # (1, 5): image 0, then the box
    x1, y1, w, h = quantise_rois(roi, spatial_scale)  # (1,) each, whole cells
    H, W = map_size
    y_lo, y_hi = bin_edges(y1, h, output_size, H)  # (1, n) each: rows of each bin row
    x_lo, x_hi = bin_edges(x1, w, output_size, W)  # (1, n): columns of each bin column
    n = output_size
    return torch.stack([x_lo[0][None, :].expand(n, n), y_lo[0][:, None].expand(n, n),
                        x_hi[0][None, :].expand(n, n), y_hi[0][:, None].expand(n, n)], dim=-1)


def exact_bins(box, spatial_scale: float, output_size: int) -> torch.Tensor:
    """The RoI cut into ``output_size`` x ``output_size`` equal bins, nothing rounded: float
    [n, n, 4] of (x0, y0, x1, y1) in cell units, cell c spanning [c, c + 1). These are RoIAlign's
    bins (``aligned=True``); RoI pooling rounds each of them to whole cells (``roi_pool_bins``)."""
    x1, y1, x2, y2 = (float(v) * spatial_scale for v in box)
    n = output_size
    xs = torch.linspace(x1, x2, n + 1, dtype=torch.float64)  # the n + 1 bin edges along x
    ys = torch.linspace(y1, y2, n + 1, dtype=torch.float64)
    return torch.stack([xs[:-1][None, :].expand(n, n), ys[:-1][:, None].expand(n, n),
                        xs[1:][None, :].expand(n, n), ys[1:][:, None].expand(n, n)], dim=-1)


BIN = "bin"  # the gid of the one patch drawn per pooling bin (tests count them)


def _bin_patch(x0, y0, x1, y1, colour: str, fill: bool, linewidth: float = 1.5) -> Rectangle:
    """One bin, in imshow coordinates (cell (i, j) spans [j - 0.5, j + 0.5]): a translucent fill
    with a solid edge (``fill``), or the edge alone."""
    patch = Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, edgecolor=colour, linewidth=linewidth,
                      facecolor=colour if fill else "none", alpha=None)
    if fill:
        patch.set_facecolor((*to_rgb(colour), 0.35))  # the fill translucent, the edge not
    patch.set_gid(BIN)
    return patch


def draw_roi_pool_grid(ax, box, spatial_scale: float, output_size: int, map_size: tuple[int, int],
                       colour: str = "#d62728", checkerboard: str | None = "white"):
    """Picture RoI pooling's quantisation on a feature map drawn in cell units (``ax.imshow(map)``).

    Dashed white: the RoI projected exactly (box * spatial_scale). In ``colour`` and
    ``checkerboard``, alternately: its ``output_size`` x ``output_size`` bins of whole cells
    (``roi_pool_bins``), one translucent patch each, so that each bin can be told from its
    neighbours. Where two bins share a cell their fills add up: that cell is max-pooled by both.
    ``checkerboard=None``: every bin in ``colour``, edges only. For a large grid on a small RoI
    (7 x 7 bins over 13 cells) the shared cells outnumber the others: ``draw_pooling_bins``
    pulls the bins apart instead.
    """
    bins = roi_pool_bins(box, spatial_scale, output_size, map_size)  # (n, n, 4)
    bx1, by1, bx2, by2 = [float(v) * spatial_scale for v in box]
    for i in range(output_size):
        for j in range(output_size):
            tint = colour if checkerboard is None or (i + j) % 2 == 0 else checkerboard
            ax.add_patch(_bin_patch(*bins[i, j].tolist(), tint, fill=checkerboard is not None))
    # cell (i, j) spans [j - 0.5, j + 0.5] in imshow's coordinates
    ax.add_patch(Rectangle((bx1 - 0.5, by1 - 0.5), bx2 - bx1, by2 - by1, fill=False, ls="--",
                           edgecolor="white", linewidth=2, label="RoI x spatial_scale (exact)"))
    H, W = map_size
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    return ax


def draw_pooling_bins(ax, feature_map, box, spatial_scale: float, output_size: int,
                      colour: str = "#d62728", gap: float = 1.5, exact: bool = True):
    """RoI pooling's ``output_size`` x ``output_size`` bins pulled apart, so that each can be seen.

    ``feature_map``: (H, W) or (H, W, 3), drawn in cell units. Bin (i, j) (``roi_pool_bins``) is
    drawn where it is on the map, moved right by j * ``gap`` and down by i * ``gap`` cells: a tile
    of the whole cells it max-pools, edged in ``colour`` (one patch per bin). A cell two bins share
    shows in both tiles (neighbours overlap by at most one cell, so a gap over one cell parts
    them). ``exact``: dashed white on each tile, where the bin is before rounding (``exact_bins``,
    moved with it); the difference is RoI pooling's quantisation error.
    """
    feature_map = np.asarray(feature_map)
    H, W = feature_map.shape[:2]
    bins = roi_pool_bins(box, spatial_scale, output_size, (H, W)).tolist()  # (n, n, 4)
    true = exact_bins(box, spatial_scale, output_size).tolist()
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)  # what the tiles span, for the limits
    for i in range(output_size):
        for j in range(output_size):
            x0, y0, x1, y1 = bins[i][j]
            dx, dy = j * gap, i * gap  # the bin's shift: pulled apart from its neighbours
            if x1 > x0 and y1 > y0:  # (a bin wholly off the map is empty: no cells to show)
                ax.imshow(feature_map[y0:y1, x0:x1], interpolation="nearest",
                          extent=(x0 - 0.5 + dx, x1 - 0.5 + dx, y1 - 0.5 + dy, y0 - 0.5 + dy),
                          cmap="gray" if feature_map.ndim == 2 else None)
            ax.add_patch(_bin_patch(x0 + dx, y0 + dy, x1 + dx, y1 + dy, colour, fill=False,
                                    linewidth=2.5))
            ex0, ey0, ex1, ey1 = true[i][j]
            if exact:
                ax.add_patch(Rectangle((ex0 - 0.5 + dx, ey0 - 0.5 + dy), ex1 - ex0, ey1 - ey0,
                                       fill=False, ls="--", edgecolor="white", linewidth=2.5))
            if not exact:  # the limits: the tiles, and the exact bins when drawn
                ex0, ey0, ex1, ey1 = x0, y0, x1, y1
            lo = np.minimum(lo, [min(x0, ex0) + dx, min(y0, ey0) + dy])
            hi = np.maximum(hi, [max(x1, ex1) + dx, max(y1, ey1) + dy])
    ax.set_xlim(lo[0] - 1, hi[0])
    ax.set_ylim(hi[1], lo[1] - 1)
    ax.set_aspect("equal")
    ax.set_facecolor("black")
    return ax


def draw_roi_align_points(ax, box, spatial_scale: float, output_size: int, map_size: tuple[int, int],
                          sampling_ratio: int = 2, aligned: bool = True, colour: str = "#d62728",
                          checkerboard: str | None = "white", point_size: float = 10):
    """Picture RoIAlign (Mask R-CNN Figure 3) on a feature map drawn in cell units (``ax.imshow(map)``).

    Grey: the cells of the map (cell (i, j)'s value sits at its centre, (x, y) = (j, i)). White: the
    RoI projected exactly as ``stages.ops.roi_align`` projects it, nothing rounded (``aligned=False``
    puts it half a cell right of and below ``draw_roi_pool_grid``'s dashed box, and makes it at
    least 1 x 1 cell). Its ``output_size`` x ``output_size`` bins, one patch each, filled in
    ``colour`` and ``checkerboard`` alternately (None: edges only, in ``colour``), and in each, in
    ``colour``, the ``sampling_ratio`` x ``sampling_ratio`` points where the map is interpolated
    bilinearly.
    """
    from stages.ops.roi_align import project_rois, roi_align_sample_points

    H, W = map_size
    for i in range(H + 1):  # cell edges, half a cell from the centres
        ax.axhline(i - 0.5, color="0.6", linewidth=0.5)
    for j in range(W + 1):
        ax.axvline(j - 0.5, color="0.6", linewidth=0.5)
    roi = torch.tensor([[0.0, *[float(v) for v in box]]])
    x1, y1, w, h = (float(t) for t in project_rois(roi, spatial_scale, aligned))
    bin_w, bin_h = w / output_size, h / output_size
    for i in range(output_size):
        for j in range(output_size):
            tint = colour if checkerboard is None or (i + j) % 2 == 0 else checkerboard
            x0, y0 = x1 + j * bin_w + 0.5, y1 + i * bin_h + 0.5  # _bin_patch takes cell units
            ax.add_patch(_bin_patch(x0, y0, x0 + bin_w, y0 + bin_h, tint,
                                    fill=checkerboard is not None, linewidth=1))
    ax.add_patch(Rectangle((x1, y1), w, h, fill=False, edgecolor="white", linewidth=2,
                           label="RoI x spatial_scale (exact)"))
    points = roi_align_sample_points(box, output_size, spatial_scale, sampling_ratio, aligned)
    points = points.reshape(-1, 2)  # (PH, PW, S_h*S_w, 2) -> (PH*PW*S_h*S_w, 2) of (x, y)
    ax.scatter(points[:, 0], points[:, 1], s=point_size, color=colour, edgecolors="white",
               linewidths=0.5, zorder=3, label="sample points")
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    return ax


def draw_spp_bins(ax, box, spatial_scale: float, levels: tuple, map_size: tuple[int, int]):
    """SPP-net's pyramid on one RoI: the bins of each level in its own colour, edges only, on a
    map in cells (one level per picture reads better: ``draw_pooling_bins``)."""
    for level, colour in zip(levels, PALETTE):
        draw_roi_pool_grid(ax, box, spatial_scale, level, map_size, colour=colour, checkerboard=None)
    return ax


# ------------------------------------------------------------------------------------------------
# Faster R-CNN: anchors, their labels, objectness, and proposal recall (notebook 03)
# ------------------------------------------------------------------------------------------------

def _add_boxes(ax, boxes, colours, linewidth: float = 1.0, alpha: float = 1.0,
               linestyle: str = "-") -> np.ndarray:
    """Add boxes [N, 4] as rectangles (one colour, or one per box); return them as (N, 4) numpy."""
    boxes = _as_numpy(boxes).reshape(-1, 4)
    colours = [colours] * len(boxes) if isinstance(colours, str) else list(colours)
    for (x1, y1, x2, y2), colour in zip(boxes, colours):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=colour,
                               linewidth=linewidth, alpha=alpha, linestyle=linestyle))
    return boxes


def _show_image_and_boxes(ax, img: np.ndarray, boxes: np.ndarray, title: str | None, fontsize=9):
    """Limits that show the whole image and every box, even past its border (anchors at the
    border reach out of the image); y down, as in the image."""
    H, W = img.shape[:2]
    lo = np.minimum(boxes[:, :2].min(0), 0) if len(boxes) else np.zeros(2)  # (x, y)
    hi = np.maximum(boxes[:, 2:].max(0), (W, H)) if len(boxes) else np.array([W, H])
    ax.set_xlim(lo[0] - 1, hi[0] + 1)
    ax.set_ylim(hi[1] + 1, lo[1] - 1)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=fontsize)


def draw_boxes(ax, image, boxes, colours="#ff7f0e", linewidth: float = 1.0, alpha: float = 1.0,
               title: str | None = None):
    """Boxes [N, 4] without captions on an image (proposals, anchors): one colour, or one per box.
    The axes grow to show boxes that reach past the image."""
    img = to_numpy_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    boxes = _add_boxes(ax, boxes, colours, linewidth, alpha)
    _show_image_and_boxes(ax, img, boxes, title)
    return ax


def draw_anchors(ax, image, anchors, num_shapes: int, centres=None, title: str | None = None,
                 linewidth: float = 1.2):
    """Anchors [L * A, 4] in ``grid_anchors``' order (location-major, then the A = ``num_shapes``
    shapes) on an image; shape a gets colour ``PALETTE[a]`` at every location. ``centres`` [M, 2]
    (x, y), if given, are drawn as dots: e.g. every location of the map, the stride grid."""
    n = len(_as_numpy(anchors).reshape(-1, 4))
    colours = [PALETTE[a % num_shapes % len(PALETTE)] for a in range(n)]
    draw_boxes(ax, image, anchors, colours, linewidth, title=title)
    if centres is not None:
        centres = _as_numpy(centres).reshape(-1, 2)
        ax.scatter(centres[:, 0], centres[:, 1], s=4, color="white", edgecolors="black",
                   linewidths=0.3, zorder=3)
    return ax


def _evenly(indices: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of ``indices``, evenly spread (anchors are location-major: over the image)."""
    return indices[np.linspace(0, len(indices) - 1, min(n, len(indices))).astype(int)]


def draw_anchor_labels(ax, image, anchors, labels, gt_boxes, n_negatives: int = 20,
                       n_ignored: int = 20, title: str | None = None):
    """The RPN's training labels for one image (Faster R-CNN sec. 3.1.2) over its ground truth.

    labels [M] (1 positive, 0 negative, -1 ignored, as ``rpn.assign_anchors`` returns them):
    every positive in green; of the (hundreds of) ignored and (thousands of) negative anchors, an
    evenly spread ``n_ignored`` dashed orange and ``n_negatives`` thin red; the ground truth thick
    white. The counts go in the legend.
    """
    img = to_numpy_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    anchors, labels = _as_numpy(anchors).reshape(-1, 4), _as_numpy(labels)
    pos, neg, ign = (np.flatnonzero(labels == v) for v in (1, 0, -1))
    shown_neg, shown_ign = _evenly(neg, n_negatives), _evenly(ign, n_ignored)
    drawn = [_add_boxes(ax, anchors[shown_neg], "#d62728", 0.7, alpha=0.8),
             _add_boxes(ax, anchors[shown_ign], "#ff7f0e", 0.9, alpha=0.9, linestyle="--"),
             _add_boxes(ax, gt_boxes, "white", 2.5),
             _add_boxes(ax, anchors[pos], "#2ca02c", 1.5)]
    for colour, style, text in (("#2ca02c", "-", f"positive ({len(pos)})"),
                                ("#ff7f0e", "--", f"ignored ({len(ign)}; {len(shown_ign)} shown)"),
                                ("#d62728", "-", f"negative ({len(neg)}; {len(shown_neg)} shown)"),
                                ("white", "-", "ground truth")):
        ax.plot([], [], color=colour, linestyle=style, label=text)
    ax.legend(fontsize=7, loc="upper right", facecolor="0.8", framealpha=0.9)
    _show_image_and_boxes(ax, img, np.concatenate(drawn), title)
    return ax


def draw_objectness(ax, image, objectness, stride: int, alpha: float = 0.6, cmap: str = "magma",
                    title: str | None = None):
    """The RPN's objectness over the image: probabilities [A, H, W] (max over the A anchors of a
    location) or [H, W], as a translucent heatmap. Location (y, x) of the map is the centre of its
    anchors, pixel (x * stride, y * stride) (``anchors.grid_anchors``), so its cell spans half a
    stride either side of that. Returns the heatmap's artist (for a colour bar)."""
    img = to_numpy_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    heat = _as_numpy(objectness)
    if heat.ndim == 3:
        heat = heat.max(0)  # (A, H, W) -> (H, W): the best anchor of each location
    H, W = heat.shape
    half = stride / 2
    artist = ax.imshow(heat, cmap=cmap, alpha=alpha, vmin=0, vmax=1, interpolation="nearest",
                       extent=(-half, W * stride - half, H * stride - half, -half))
    ax.set_xlim(-half, img.shape[1])
    ax.set_ylim(img.shape[0], -half)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return artist


def plot_recall_curves(ax, reports: dict, iou: float = 0.5):
    """Recall of the ground truth at IoU ``iou`` against the first n proposals per image (log x),
    one line per method of ``reports`` ({name: report}, as ``rpn_vs_selective_search`` or
    ``rcnn.proposers.proposal_report`` make them), labelled with its ms per image."""
    for i, (name, r) in enumerate(reports.items()):
        ns = sorted(r["recall"][iou])
        ms = f"{r['ms_per_image']:.1f} ms/img"
        if "ms_with_backbone" in r:
            ms += f", {r['ms_with_backbone']:.1f} with backbone"
        ax.plot(ns, [r["recall"][iou][n] for n in ns], marker="o", ms=3, color=f"C{i}",
                label=f"{name} (~{r['mean_proposals']:.0f}/img; {ms})")
    ticks = sorted({n for r in reports.values() for n in r["recall"][iou]})
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.set_xlabel("proposals per image (first n)")
    ax.set_ylabel(f"recall at IoU {iou}")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ax


# ------------------------------------------------------------------------------------------------
# Lecture figures (stages.figures.gallery): boxes with free captions
# ------------------------------------------------------------------------------------------------

def draw_captioned_boxes(ax, image, boxes, captions=None, colours="#ff7f0e",
                         linewidth: float = 2.0, fontsize: float = 12, title: str | None = None):
    """Boxes [N, 4] with a free caption each (``"3: fg circle 0.81"``, ``"square +0.42"``; None:
    no captions), one colour or one per box, caption above the box's top-left corner.
    ``image=None`` draws on what the axes already show: another picture's boxes, or a feature
    map in cell units (boxes divided by the stride)."""
    if image is not None:
        img = to_numpy_image(image)
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax.set_axis_off()
    boxes = _add_boxes(ax, boxes, colours, linewidth)
    colours = [colours] * len(boxes) if isinstance(colours, str) else list(colours)
    for (x1, y1, _, _), caption, colour in zip(boxes, captions or [], colours):
        ax.text(x1, y1, caption, fontsize=fontsize, color="white", va="bottom", clip_on=True,
                bbox=dict(facecolor=colour, edgecolor="none", pad=1, alpha=0.85))
    if title:
        ax.set_title(title)
    return ax


# ------------------------------------------------------------------------------------------------
# Mask R-CNN: the FPN pyramid and the per-class masks (notebook 04)
# ------------------------------------------------------------------------------------------------

def draw_fpn_levels(axes, pyramid: dict, cmap: str = "viridis", fontsize: float = 9,
                    scale: float = 1.0) -> list:
    """One heatmap per pyramid level on ``axes`` (one each): the mean over the channels of each map.

    ``pyramid``: ``{"P2": (C, H, W) or (1, C, H, W), ...}`` as ``FPN`` returns it for one image.
    Level P_k has stride 2^k (FPN sec. 3): each map is drawn in image pixels (a cell spans 2^k
    pixels), so that all levels line up with the image while their cells grow. ``scale``: the
    input scale the pyramid was computed at (2: the image enlarged 2x, a cell of P_k then spans
    2^k / 2 pixels of the image as given). Each map has its own colour scale. Returns the
    heatmaps' artists.
    """
    artists = []
    for ax, (name, feature) in zip(axes, pyramid.items()):
        feature = feature.detach().cpu()
        if feature.ndim == 4:  # (1, C, H, W) -> (C, H, W)
            feature = feature[0]
        heat = feature.float().mean(0)  # (C, H, W) -> (H, W)
        H, W = heat.shape
        stride = 2 ** int(name.lstrip("PC")) / scale  # in pixels of the image as given
        artists.append(ax.imshow(heat.numpy(), cmap=cmap, interpolation="nearest",
                                 extent=(0, W * stride, H * stride, 0)))
        ax.set_title(f"{name}: {H} x {W}, stride {stride:g}", fontsize=fontsize)
        ax.set_axis_off()
    return artists


def draw_mask_channels(axes, masks, chosen: int | None = None, class_names=None,
                       fontsize: float = 9) -> list:
    """The K mask probabilities [K, m, m] the mask branch predicts for one RoI, one per axis.

    Channel k - 1 is class k (Mask R-CNN sec. 3: K binary masks, one per class). ``chosen``: the
    label whose mask the model uses (the box branch's class), framed in that class's colour; the
    others are computed but never used, so the masks do not compete.
    """
    masks = _as_numpy(masks)
    for k, (ax, mask) in enumerate(zip(axes, masks), start=1):
        ax.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        name = class_names[k] if class_names is not None else f"class {k}"
        picked = chosen is not None and k == int(chosen)
        for spine in ax.spines.values():
            spine.set_visible(picked)
            spine.set_edgecolor(class_colour(k))
            spine.set_linewidth(4)
        ax.set_title(f"{name}{' (chosen)' if picked else ''}", fontsize=fontsize,
                     color=class_colour(k) if picked else "black",
                     fontweight="bold" if picked else "normal")
    return axes


def draw_filters(ax, weight: torch.Tensor, cols: int = 8, title: str | None = None):
    """A backbone's first convolution, one tile per filter: weight (F, 3, k, k) -> a grid of
    k x k colour patches, each filter stretched to [0, 1] on its own (the contrast of a filter is
    what shows what it detects: edges, colour blobs). Trained filters look structured; random
    ones look like noise, which is the point of R-CNN sec. 2.3's pre-training."""
    w = weight.detach().cpu().float()
    F_, _, k, _ = w.shape
    lo = w.amin(dim=(1, 2, 3), keepdim=True)
    hi = w.amax(dim=(1, 2, 3), keepdim=True)
    w = (w - lo) / (hi - lo).clamp(min=1e-8)  # (F, 3, k, k) in [0, 1]
    rows = math.ceil(F_ / cols)
    grid = np.ones((rows * (k + 1) - 1, cols * (k + 1) - 1, 3))
    for i in range(F_):
        r, c = divmod(i, cols)
        grid[r * (k + 1): r * (k + 1) + k, c * (k + 1): c * (k + 1) + k] = w[i].permute(1, 2, 0).numpy()
    ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


# ------------------------------------------------------------------------------------------------
# The vision tasks side by side: semantic against instance segmentation (notebook 00)
# ------------------------------------------------------------------------------------------------

def draw_segmentation(ax, image, masks, labels, class_names=None, instances: bool = False,
                      alpha: float = 0.6, title: str | None = None, fontsize: float = 7):
    """Masks [N, H, W] with labels [N] (1..K) drawn as a segmentation of the image.

    ``instances=False``: *semantic* segmentation, one class per pixel, class k in
    ``class_colour(k)`` and background in black: objects of one class that touch merge and nothing
    tells them apart (where masks overlap, the higher label wins; our synthetic masks do not).
    That is the picture's point, so here, and only here, masks are coloured by class.
    ``instances=True``: *instance* segmentation, what Mask R-CNN predicts: one mask per object,
    each in its own colour (``PALETTE[i % 10]``, as ``draw_detections``) and captioned
    ``name #i``, even when two objects share a class.
    """
    from matplotlib.patches import Patch

    img = to_numpy_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    masks = _as_numpy(masks)
    labels = _as_numpy(labels).astype(int)
    if masks.ndim == 4:  # (N, 1, H, W) -> (N, H, W)
        masks = masks[:, 0]
    masks = masks >= 0.5
    name = (lambda k: class_names[k]) if class_names is not None else str
    overlay = np.zeros((*img.shape[:2], 4))  # (H, W, RGBA), transparent where nothing is drawn
    if instances:
        for i, (mask, label) in enumerate(zip(masks, labels)):
            overlay[mask] = [*_hex_to_rgb(PALETTE[i % len(PALETTE)]), alpha]
        ax.imshow(overlay)
        for i, (mask, label) in enumerate(zip(masks, labels)):
            ys, xs = np.nonzero(mask)
            if len(xs):
                ax.text(xs.mean(), ys.mean(), f"{name(label)} #{i + 1}", fontsize=fontsize,
                        color="white", ha="center", va="center",
                        bbox=dict(facecolor=PALETTE[i % len(PALETTE)], edgecolor="none", pad=1))
    else:
        class_map = np.zeros(img.shape[:2], int)  # (H, W): 0 = background, else the class 1..K
        if len(masks):
            class_map = (masks * labels[:, None, None]).max(0)  # (N, H, W) -> (H, W)
        present = sorted(set(class_map.flat) - {0})
        overlay[class_map == 0] = [0, 0, 0, alpha]  # background is a class of its own, in black
        for k in present:
            overlay[class_map == k] = [*_hex_to_rgb(class_colour(k)), alpha]
        ax.imshow(overlay)
        handles = [Patch(color="black", alpha=alpha, label="background")]
        handles += [Patch(color=class_colour(k), label=name(k)) for k in present]
        ax.legend(handles=handles, fontsize=fontsize, loc="lower right", framealpha=0.8)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=fontsize + 2)
    return ax
