"""Pictures of detections: boxes, class names, scores and masks drawn on an image (matplotlib).

Every stage, notebook and lecture figure draws through these few functions, so a class has the
same colour everywhere. Functions take a matplotlib ``Axes`` and draw on it; ``figure_grid`` and
``save_figure`` (in ``stages.io``) make and write whole figures without pyplot, so they work on a
machine with no display.

Inputs follow the shared item format: image float [3, H, W] in [0, 1] (or uint8 (H, W, 3)),
boxes [N, 4] in (x1, y1, x2, y2) absolute pixels, labels [N] in 1..K, masks [N, H, W] or
[N, 1, H, W] (binary, or probabilities thresholded at 0.5).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from stages import io

# the tab10 palette; label k gets PALETTE[(k - 1) % 10]
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
           "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


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
                    mask_alpha: float = 0.45, linewidth: float = 1.5, fontsize: float = 7):
    """Draw an image with its boxes, ``name score`` captions and translucent masks on ``ax``.

    Detections scoring below ``score_threshold`` are not drawn. Ground truth is drawn the same way
    with ``scores=None``.
    """
    img = to_numpy_image(image)
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
    boxes = _as_numpy(boxes)
    n = 0 if boxes is None else len(boxes)
    labels = np.ones(n, int) if labels is None else _as_numpy(labels)
    scores = _as_numpy(scores)
    keep = np.ones(n, bool) if scores is None else scores >= score_threshold

    masks = _as_numpy(masks)
    if masks is not None and len(masks):
        if masks.ndim == 4:  # (N, 1, H, W) -> (N, H, W)
            masks = masks[:, 0]
        overlay = np.zeros((*masks.shape[1:], 4))
        for i in np.flatnonzero(keep[: len(masks)]) if n else range(len(masks)):
            colour = np.array(_hex_to_rgb(class_colour(labels[i] if n else 1)))
            overlay[masks[i] >= 0.5] = [*colour, mask_alpha]
        ax.imshow(overlay)

    for i in np.flatnonzero(keep):
        x1, y1, x2, y2 = boxes[i]
        colour = class_colour(labels[i])
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
    return io.save_figure(fig, path)


def _hex_to_rgb(colour: str) -> tuple[float, float, float]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i:i + 2], 16) / 255 for i in (0, 2, 4))


def draw_roi_pool_grid(ax, box, spatial_scale: float, output_size: int, map_size: tuple[int, int],
                       colour: str = "#d62728"):
    """Picture RoI pooling's quantisation on a feature map drawn in cell units (``ax.imshow(map)``).

    Dashed: the RoI projected exactly (box * spatial_scale). Solid: the cells it is rounded to,
    split into ``output_size`` x ``output_size`` bins as ``stages.ops.roi_pool`` splits them
    (bins can overlap, and cover cells outside the exact RoI: that is the quantisation error).
    """
    from stages.ops.roi_pool import bin_edges, quantise_rois

    roi = torch.tensor([[0.0, *[float(v) for v in box]]])
    x1, y1, w, h = quantise_rois(roi, spatial_scale)
    H, W = map_size
    h_lo, h_hi = bin_edges(y1, h, output_size, H)
    w_lo, w_hi = bin_edges(x1, w, output_size, W)
    bx1, by1, bx2, by2 = [float(v) * spatial_scale for v in box]
    # cell (i, j) spans [j - 0.5, j + 0.5] in imshow's coordinates
    ax.add_patch(Rectangle((bx1 - 0.5, by1 - 0.5), bx2 - bx1, by2 - by1, fill=False, ls="--",
                           edgecolor="white", linewidth=2, label="RoI x spatial_scale (exact)"))
    for i in range(output_size):
        for j in range(output_size):
            y0, y1_ = int(h_lo[0, i]), int(h_hi[0, i])
            x0, x1_ = int(w_lo[0, j]), int(w_hi[0, j])
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1_ - x0, y1_ - y0, fill=False,
                                   edgecolor=colour, linewidth=1, alpha=0.9))
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    return ax


def draw_roi_align_points(ax, box, spatial_scale: float, output_size: int, map_size: tuple[int, int],
                          sampling_ratio: int = 2, aligned: bool = True, colour: str = "#d62728"):
    """Picture RoIAlign (Mask R-CNN Figure 3) on a feature map drawn in cell units (``ax.imshow(map)``).

    Grey: the cells of the map (cell (i, j)'s value sits at its centre, (x, y) = (j, i)). White: the
    RoI projected exactly as ``stages.ops.roi_align`` projects it, nothing rounded (``aligned=False``
    puts it half a cell right of and below ``draw_roi_pool_grid``'s dashed box, and makes it at
    least 1 x 1 cell). In ``colour``: its ``output_size`` x ``output_size`` bins, and in each the
    ``sampling_ratio`` x ``sampling_ratio`` points where the map is interpolated bilinearly.
    """
    from stages.ops.roi_align import project_rois, roi_align_sample_points

    H, W = map_size
    for i in range(H + 1):  # cell edges, half a cell from the centres
        ax.axhline(i - 0.5, color="0.6", linewidth=0.5)
    for j in range(W + 1):
        ax.axvline(j - 0.5, color="0.6", linewidth=0.5)
    roi = torch.tensor([[0.0, *[float(v) for v in box]]])
    x1, y1, w, h = (float(t) for t in project_rois(roi, spatial_scale, aligned))
    ax.add_patch(Rectangle((x1, y1), w, h, fill=False, edgecolor="white", linewidth=2,
                           label="RoI x spatial_scale (exact)"))
    bin_w, bin_h = w / output_size, h / output_size
    for i in range(output_size):
        for j in range(output_size):
            ax.add_patch(Rectangle((x1 + j * bin_w, y1 + i * bin_h), bin_w, bin_h, fill=False,
                                   edgecolor=colour, linewidth=1, alpha=0.9))
    points = roi_align_sample_points(box, output_size, spatial_scale, sampling_ratio, aligned)
    points = points.reshape(-1, 2)  # (PH, PW, S_h*S_w, 2) -> (PH*PW*S_h*S_w, 2) of (x, y)
    ax.scatter(points[:, 0], points[:, 1], s=10, color=colour, zorder=3, label="sample points")
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)
    return ax


def draw_spp_bins(ax, box, spatial_scale: float, levels: tuple, map_size: tuple[int, int]):
    """SPP-net's pyramid on one RoI: the bins of each level in its own colour, on a map in cells."""
    for level, colour in zip(levels, PALETTE):
        draw_roi_pool_grid(ax, box, spatial_scale, level, map_size, colour=colour)
    return ax


def plot_losses(ax, history: list[dict], keys: list[str] | None = None, smooth: int = 20):
    """Training curves from ``losses.json`` records: one line per loss, a running mean over ``smooth`` steps."""
    keys = keys or sorted(k for k in history[0] if k.startswith("loss") and k != "loss")
    steps = np.array([r["step"] for r in history])
    for key in keys:
        values = np.array([r[key] for r in history], dtype=float)
        if smooth > 1 and len(values) > smooth:
            values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
            ax.plot(steps[smooth - 1:], values, label=key)
        else:
            ax.plot(steps, values, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return ax
