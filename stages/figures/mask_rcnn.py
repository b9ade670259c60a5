"""Stage 4's figures, Mask R-CNN (He et al., ICCV 2017) with FPN (Lin et al., CVPR 2017):
pooling without rounding, the pyramid's levels, and the masks.

    name       function        file (.png)                paper, section
    roi_align  fig_roi_align   08_roi_pool_vs_roi_align   Mask R-CNN 3, Fig. 3 (RoIAlign; max or mean)
    fpn        fig_fpn         09_fpn_levels              FPN 3, Eq. 1 (which level pools a RoI)
    masks      fig_masks       10_predicted_masks         Mask R-CNN 3 (a mask per detection)
    mask_path  fig_mask_path   11_mask_path               Mask R-CNN 3, Fig. 4 (14 x 14 -> 28 x 28
                                                          -> pasted into the box -> 0.5)

Each takes the ``Inputs`` (``stages.figures.common``) and returns a matplotlib ``Figure``;
``fig_masks`` and ``fig_mask_path`` need a trained run (``<runs>/mask_rcnn``), ``fig_fpn`` one trained
with ``--fpn`` (``<runs>/mask_rcnn_fpn``, or ``<runs>/mask_rcnn`` if that has the pyramid): it draws
the pyramid's maps and the RPN proposals that Mask R-CNN pools, so without a trained pyramid there
is nothing true to draw, and it is skipped. P2..P5: the pyramid's levels, level k at stride 2^k of
the network's input (the image enlarged ``input_scale`` times).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from stages.backbone import STRIDES
from stages.figures.common import (CAPTION, GREEN, RED, Inputs, Skip, box_size, map_of_image,
                                   spread, trained_model, zoom)
from stages.figures.draw import (PALETTE, SLIDE_WIDTH, draw_boxes, draw_captioned_boxes,
                                 draw_detections, draw_fpn_levels, draw_pooling_bins,
                                 draw_roi_align_points, to_numpy_image)
from stages.training.engine import CHECKPOINT


# ------------------------------------------------------------------------------------------------
# RoIPool against RoIAlign, and RoIAlign's two reductions
# ------------------------------------------------------------------------------------------------

# The lecture's worked example of one RoIAlign bin: its 4 bilinear samples are 0.14, 0.21, 0.51
# and 0.43 (row by row), max 0.51. Here a 4 x 4 map with those samples: a 4 x 4 px RoI at
# spatial_scale 1 is one bin whose 2 x 2 points sit where four cells meet, so each sample is the
# mean of a 2 x 2 block of cells (bilinear weights 1/4 each).
EXAMPLE_MAP = ((0.10, 0.20, 0.18, 0.30),  # blocks: top left 0.14, top right 0.21,
               (0.12, 0.14, 0.16, 0.20),
               (0.60, 0.48, 0.40, 0.50),  # bottom left 0.51, bottom right 0.43
               (0.52, 0.44, 0.36, 0.46))
EXAMPLE_BOX = (0.0, 0.0, 4.0, 4.0)  # (x1, y1, x2, y2) px on the map above, spatial_scale 1


def max_or_mean_example() -> dict:
    """RoIAlign of ``EXAMPLE_BOX`` on ``EXAMPLE_MAP`` to one bin, by ``stages.ops.roi_align``:
    ``{"map": (4, 4), "points": (4, 2) of (x, y), "samples": (4,), "max": float, "mean": float}``.

    The samples are read by the op itself: 2 x 2 bins with one point each (``sampling_ratio=1``)
    put the points where one bin with 2 x 2 points (``sampling_ratio=2``) puts them."""
    from stages.ops.roi_align import roi_align, roi_align_sample_points

    feature = torch.tensor(EXAMPLE_MAP)[None, None]  # (1, 1, 4, 4)
    box = [torch.tensor([EXAMPLE_BOX])]
    one_bin = dict(output_size=1, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    samples = roi_align(feature, box, 2, 1.0, sampling_ratio=1, aligned=True)  # (1, 1, 2, 2)
    points = roi_align_sample_points(EXAMPLE_BOX, 1, 1.0, sampling_ratio=2, aligned=True)
    return {"map": feature[0, 0], "points": points.reshape(-1, 2),  # (1, 1, 4, 2) -> (4, 2)
            "samples": samples.flatten(),  # row by row, as the points
            "max": roi_align(feature, box, reduce="max", **one_bin).item(),
            "mean": roi_align(feature, box, reduce="mean", **one_bin).item()}


def _draw_max_or_mean(ax, example: dict):
    """The worked example: the map with its values, the one bin, its 4 samples, max and mean."""
    values = example["map"].numpy()
    ax.imshow(values, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    for (i, j), v in np.ndenumerate(values):  # in the cell's corner away from its sample point
        away_x, away_y = (1 if j % 2 else -1), (1 if i % 2 else -1)
        ax.text(j + 0.18 * away_x, i + 0.22 * away_y, f"{v:.2f}", ha="center", va="center",
                fontsize=12, color="white" if v < 0.45 else "black")
    ax.add_patch(Rectangle((-0.5, -0.5), 4, 4, fill=False, edgecolor="white", linewidth=3))
    for (x, y), v in zip(example["points"].tolist(), example["samples"].tolist()):
        ax.scatter([x], [y], s=90, color=RED, edgecolors="white", linewidths=1.5, zorder=3)
        ax.text(x, y - 0.22, f"{v:.2f}", ha="center", va="bottom", fontsize=14, color="white",
                fontweight="bold", bbox=dict(facecolor=RED, edgecolor="none", pad=1.5), zorder=4)
    ax.set_xlim(-0.5, 3.5)
    ax.set_ylim(3.5, -0.5)
    ax.set_axis_off()
    samples = ", ".join(f"{v:.2f}" for v in example["samples"].tolist())
    ax.set_title("3. the lecture's example: one bin,\nits 4 bilinear samples, reduced")
    ax.text(0.5, -0.03, f"max({samples}) = {example['max']:.2f}\nreduce=\"max\", as in the "
            f"lecture\nmean = {example['mean']:.4f}: reduce=\"mean\",\ntorchvision's and "
            f"Detectron's; the paper\nfinds the two equal (Table 2c)", transform=ax.transAxes,
            ha="center", va="top", fontsize=13, linespacing=1.25)


def fig_roi_align(src: Inputs) -> Figure:
    """RoIPool against RoIAlign on the same RoI and map (Mask R-CNN sec. 3, Figure 3), and the
    two ways RoIAlign can reduce a bin's 4 samples, max and mean, on the lecture's example."""
    from stages.mask_rcnn.config import MaskRCNNConfig
    cfg = MaskRCNNConfig()
    n, s = cfg.pool_size, cfg.align_sampling_ratio
    stride, box = round(STRIDES["C3"] / cfg.input_scale), src.roi  # the map's stride in image pixels
    feature = map_of_image(src.image, stride)
    map_size = feature.shape[:2]
    fig = Figure(figsize=(SLIDE_WIDTH, 6.6), layout="compressed")
    pool, align, example = fig.subplots(1, 3, width_ratios=[1.25, 1, 0.85])
    draw_pooling_bins(pool, feature, box, 1 / stride, n, colour=RED, exact=False)
    pool.set_axis_off()
    pool.set_title(f"1. RoIPool (Fast R-CNN): {n} x {n} bins,\neach rounded to whole cells "
                   f"(pulled\napart to show each); max of each")
    align.imshow(feature, interpolation="nearest", alpha=0.55)
    draw_roi_align_points(align, box, 1 / stride, n, map_size, sampling_ratio=s, aligned=True,
                          colour=RED, checkerboard="white", point_size=12)
    zoom(align, box, 1 / stride, map_size, margin=0.8)
    align.set_axis_off()
    align.set_title(f"2. RoIAlign (Mask R-CNN): {n} x {n}\nequal bins, nothing rounded; "
                    f"{s} x {s}\nbilinear samples per bin (dots)")
    _draw_max_or_mean(example, max_or_mean_example())
    fig.suptitle(f"The same RoI ({box_size(box)}) on the stride-{stride} map, pooled two ways "
                 f"(Mask R-CNN sec. 3, Fig. 3)\nRoIAlign keeps the RoI where it is: masks need "
                 f"that pixel accuracy")
    return fig


# ------------------------------------------------------------------------------------------------
# The feature pyramid: which level pools a proposal
# ------------------------------------------------------------------------------------------------

FPN_RUNS = ("mask_rcnn_fpn", "mask_rcnn")  # under --runs, where a run with the pyramid is looked for
FPN_FLAGS = "--fpn --input-scale 1 --rpn-lambda 5"  # the pyramid on the image as it is (README)


def trained_fpn(src: Inputs):
    """``(model, cfg)`` of the first run of ``FPN_RUNS`` trained with ``--fpn``; ``Skip`` naming
    the command that trains one when there is none."""
    reasons = []
    for run in FPN_RUNS:
        if not (src.runs / run / CHECKPOINT).is_file():
            continue
        try:
            model, cfg = trained_model(src, run, ("mask_rcnn",))
        except Skip as why:  # damaged, or of another stage or data: say so, try the next
            reasons.append(str(why))
            continue
        if cfg.fpn:
            return model, cfg
        src.used.pop()  # the run just read has no pyramid: not what the figure draws
        reasons.append(f"{src.runs / run} was trained without --fpn")
    command = (f"{src.command('stages.mask_rcnn', Path('runs') / 'mask_rcnn')} {FPN_FLAGS} "
               f"--out {src.runs / FPN_RUNS[0]}")
    found = "; ".join(reasons) if reasons else f"none in {src.runs}/{{{','.join(FPN_RUNS)}}}"
    raise Skip(f"no trained run with the pyramid ({found}): run `{command}`")


def _level_range(k: int, k0: int, canonical: float, k_min: int = 2, k_max: int = 5) -> str:
    """The RoI sizes sqrt(w h) that FPN Eq. 1 sends to level k."""
    lo, hi = canonical * 2.0 ** (k - k0), canonical * 2.0 ** (k + 1 - k0)
    if k == k_min:
        return f"< {hi:g} px"
    if k == k_max:
        return f">= {lo:g} px"
    return f"{lo:g}-{hi:g} px"


def fig_fpn(src: Inputs) -> Figure:
    """A trained FPN's pyramid P2..P5 for one image, and which of its RPN's proposals each level
    pools (FPN Eq. 1, as the model's own ``MultiLevelPooler`` assigns them)."""
    from stages.mask_rcnn.fpn import level_of_stride

    model, cfg = trained_fpn(src)
    image = src.image
    with torch.no_grad():
        features, sizes = model.features([image])  # [P2, ..., P6], each (1, d, h, w)
        proposals, _, _ = model.proposer(features, sizes, [image])  # the RPN's: list of one (R, 4)
    maps = features[:4]  # P2..P5, the levels RoIs are pooled from (P6 feeds only the RPN)
    rois = proposals[0]
    pooler = model.head.pooler  # the MultiLevelPooler: FPN Eq. 1 in the image's pixels
    levels = pooler.levels(rois) + 2  # (R,): 0..3 -> P2..P5
    k_min = level_of_stride(pooler.strides[0])  # Eq. 1's k of P2: its stride in image pixels
    shown = 6  # RoIs drawn per level, from its smallest to its largest
    by_size = torch.argsort((rois[:, 2] - rois[:, 0]) * (rois[:, 3] - rois[:, 1]))
    picked = {k: spread(by_size[levels[by_size] == k], shown) for k in range(2, 6)}
    colours = {k: PALETTE[k - 2] for k in range(2, 6)}
    sizes_of = {k: _level_range(k - 2 + k_min, cfg.fpn_k0, cfg.fpn_canonical_size, k_min, k_min + 3)
                for k in range(2, 6)}
    fig = Figure(figsize=(SLIDE_WIDTH, 7.6), layout="compressed")
    grid = fig.add_gridspec(2, 4)
    ax = fig.add_subplot(grid[:, :2])
    draw_boxes(ax, image, torch.zeros(0, 4))
    for k in range(5, 1, -1):  # the large (coarse-level) boxes underneath
        draw_captioned_boxes(ax, None, rois[picked[k]], colours=colours[k], linewidth=2.5)
    ax.legend(handles=[Line2D([], [], color=colours[k], linewidth=3,
                              label=f"P{k}: {int((levels == k).sum())}, {sizes_of[k]}")
                       for k in range(2, 6)],
              loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False, fontsize=13)
    ax.set_title(f"the RPN's {len(rois)} proposals; up to {shown} per level\ndrawn, coloured by "
                 f"the level that pools them;\nbelow: how many, and their sqrt(wh)")
    pyramid = {f"P{k}": p for k, p in zip(range(2, 6), maps)}
    level_axes = [fig.add_subplot(grid[i // 2, 2 + i % 2]) for i in range(4)]
    draw_fpn_levels(level_axes, pyramid, scale=cfg.input_scale)  # in image pixels: boxes as they are
    for a, (name, p), k in zip(level_axes, pyramid.items(), range(2, 6)):
        draw_captioned_boxes(a, None, rois[picked[k]], colours=colours[k], linewidth=2.5)
        a.set_xlim(0, image.shape[-1])
        a.set_ylim(image.shape[-2], 0)
        count = int((levels == k).sum())
        a.set_title(f"{name}: {p.shape[-2]} x {p.shape[-1]}, stride {2 ** k / cfg.input_scale:g} px"
                    f"\n{count} proposal{'' if count == 1 else 's'}", color=colours[k], fontsize=14)
    fig.suptitle(f"FPN: small RoIs are pooled from the fine P2, large ones from the coarse P4-P5\n"
                 f"FPN Eq. 1: k = floor({cfg.fpn_k0} + log2(sqrt(wh) / {cfg.fpn_canonical_size:g})); "
                 f"maps: the trained FPN's, mean of {maps[0].shape[1]} channels")
    return fig


# ------------------------------------------------------------------------------------------------
# The masks
# ------------------------------------------------------------------------------------------------

def matched_colours(pred_boxes: torch.Tensor, gt_boxes: torch.Tensor, iou: float = 0.5) -> list[str]:
    """A colour per prediction [D, 4] (best first): ``PALETTE[g]``, ground-truth object g's colour,
    for the unmatched object g it overlaps most with box IoU >= ``iou`` (greedily, best
    prediction first, as COCO matches); otherwise a colour of its own, after the objects'."""
    from stages.ops import box_iou

    ious = box_iou(pred_boxes.float(), gt_boxes.float()) if len(gt_boxes) else None  # (D, G)
    taken, colours = set(), []
    extra = len(gt_boxes)  # the next colour no object has
    for d in range(len(pred_boxes)):
        g = -1
        if ious is not None:
            free = ious[d].clone()
            free[list(taken)] = -1  # each object matches one prediction at most
            if float(free.max()) >= iou:
                g = int(free.argmax())
        if g >= 0:
            taken.add(g)
        else:
            g, extra = extra, extra + 1
        colours.append(PALETTE[g % len(PALETTE)])
    return colours


def fig_masks(src: Inputs) -> Figure:
    """A trained Mask R-CNN's detections with their masks on the first validation images, each
    under its ground truth; one colour per object (instance), in both rows."""
    model, cfg = trained_model(src, "mask_rcnn", ("mask_rcnn", "mask_rcnn_torchvision"))
    n = min(4, len(src.val))
    threshold = 0.5
    fig = Figure(figsize=(SLIDE_WIDTH, 7.6), layout="compressed")
    axes = fig.subplots(2, n, squeeze=False)
    for i in range(n):
        image, target = src.val[i]
        with torch.no_grad():
            out = model([image])[0]
        scores = out["scores"]
        keep = torch.nonzero(scores >= threshold).flatten()
        note = f"{len(keep)} detections"
        if len(keep) == 0:  # a briefly trained model: show its best three, and say so
            keep = torch.arange(min(3, len(scores)))
            note = f"none >= {threshold:g}: best {len(keep)}"
        gt = target["boxes"]
        draw_detections(axes[0, i], image, gt, target["labels"], None, target.get("masks"),
                        src.class_names, linewidth=2, fontsize=CAPTION,
                        colours=[PALETTE[g % len(PALETTE)] for g in range(len(gt))])
        axes[0, i].set_title(f"image {i}: {len(gt)} objects", pad=18)
        draw_detections(axes[1, i], image, out["boxes"][keep], out["labels"][keep], scores[keep],
                        out["masks"][keep], src.class_names, linewidth=2, fontsize=CAPTION,
                        colours=matched_colours(out["boxes"][keep], gt))
        axes[1, i].set_title(note, pad=18)  # pad: above the captions
    for row, label in zip(axes[:, 0], ("ground truth", f"predicted, >= {threshold:g}")):
        row.text(-0.04, 0.5, label, transform=row.transAxes, rotation=90, ha="right",
                 va="center", fontsize=15)
    fig.suptitle(f"Mask R-CNN (sec. 3.1): a {cfg.mask_size} x {cfg.mask_size} mask per detection, "
                 f"pasted into its box\na colour per object; a prediction takes the colour of "
                 f"the object it finds (box IoU >= 0.5)")
    return fig


def fig_mask_path(src: Inputs) -> Figure:
    """The mask branch's path for the best detection of a trained Mask R-CNN on the image."""
    model, _ = trained_model(src, "mask_rcnn", ("mask_rcnn",))
    try:
        return mask_path_figure(model, src.image, src.class_names, src.target)
    except NoDetection:
        raise Skip("the trained Mask R-CNN detects nothing on this image: try --image N") from None


class NoDetection(ValueError):
    """The model found nothing on the image, so there is no mask to follow."""


def _around(ax, box, image_size: tuple[int, int], margin: float = 0.5):
    """Zoom on a box (x1, y1, x2, y2): a square ``margin`` of its longer side wider each way,
    kept inside the image."""
    x1, y1, x2, y2 = box
    H, W = image_size
    side = min(max(x2 - x1, y2 - y1) * (1 + 2 * margin), H, W)
    cx = min(max((x1 + x2) / 2, side / 2), W - side / 2)  # the centre, moved to stay inside
    cy = min(max((y1 + y2) / 2, side / 2), H - side / 2)
    ax.set_xlim(cx - side / 2, cx + side / 2)
    ax.set_ylim(cy + side / 2, cy - side / 2)


def _show_mask(ax, image, values, box, colour: str = "white"):
    """The image around the box, ``values`` (H, W) in [0, 1] over it (0 left clear), the box."""
    ax.imshow(to_numpy_image(image))
    ax.imshow(np.ma.masked_less(values, 0.02), cmap="magma", alpha=0.8, vmin=0, vmax=1)
    x1, y1, x2, y2 = box
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2, edgecolor=colour))
    _around(ax, box, tuple(image.shape[-2:]))
    ax.set_axis_off()


def mask_path_figure(model, image: torch.Tensor, class_names, target: dict | None = None) -> Figure:
    """The mask branch's path for the best detection of our ``MaskRCNN`` on ``image`` (sec. 3,
    Figure 4), in two rows. Top, the network: the box; its 14 x 14 RoIAlign features; the 28 x 28
    features after the 4 convs and the 2x deconvolution; the 28 x 28 mask of its class. Bottom, into
    the image: pasted into the box, thresholded at 0.5, and, given the image's ``target``, the
    ground truth object under the box and where the two agree. Notebook 04 draws it for its own
    model."""
    from stages.mask_rcnn.mask_head import mask_probabilities, paste_masks
    from stages.ops import box_iou

    cfg = model.cfg
    model.eval()
    head = model.mask_head
    with torch.no_grad():
        out = model([image])[0]
        if len(out["boxes"]) == 0:
            raise NoDetection("the model detects nothing on this image: no mask to follow")
        pick = 0  # the best detection; given the target, the best one with an object under it
        if target is not None and len(target["boxes"]):
            on_object = (box_iou(out["boxes"], target["boxes"].float()) > 0).any(1)  # (D,)
            if on_object.any():
                pick = int(on_object.nonzero()[0])
        box, label = out["boxes"][pick:pick + 1], out["labels"][pick:pick + 1]
        features, _ = model.features([image])
        pooled = head.pooler(features, [box])  # (1, C, 14, 14)
        upsampled = torch.relu(head.upsample(head.convs(pooled)))  # (1, c, 28, 28)
        logits = head.predictor(upsampled)  # (1, K, 28, 28): MaskHead.forward, step by step
        probs = mask_probabilities(logits, label, cfg.mask_loss)  # (1, 28, 28)
        pasted = paste_masks(probs, box, tuple(image.shape[-2:]))[0]  # (H, W)
    S, m = pooled.shape[-1], probs.shape[-1]
    name = class_names[int(label)]
    xyxy = box[0].tolist()
    fig = Figure(figsize=(SLIDE_WIDTH, 8.0), layout="compressed")
    axes = fig.subplots(2, 4)
    draw_detections(axes[0, 0], image, box, label, out["scores"][pick:pick + 1], class_names=class_names,
                    linewidth=2.5, fontsize=CAPTION, instance_colours=False)
    axes[0, 0].set_title("1. the best detection" + (":" if pick == 0 else " on an object:") + "\nits box",
                         pad=16)  # pad: above its caption
    axes[0, 1].imshow(pooled[0].mean(0).numpy(), cmap="viridis")
    axes[0, 1].set_title(f"2. RoIAlign: {pooled.shape[1]} x {S} x {S}\n(mean of the channels)")
    axes[0, 2].imshow(upsampled[0].mean(0).numpy(), cmap="viridis")
    axes[0, 2].set_title(f"3. {cfg.mask_convs} convs, 2x deconv:\n{upsampled.shape[1]} x {m} x {m}")
    axes[0, 3].imshow(probs[0].numpy(), cmap="magma", vmin=0, vmax=1)
    axes[0, 3].set_title(f"4. 1x1 conv: {logits.shape[1]} masks;\n{name}'s, {cfg.mask_loss}")
    _show_mask(axes[1, 0], image, pasted.numpy(), xyxy)  # bilinear, as paste_masks
    axes[1, 0].set_title("5. resized into the box")
    predicted = pasted >= 0.5
    _show_mask(axes[1, 1], image, predicted.float().numpy(), xyxy)
    axes[1, 1].set_title("6. thresholded at 0.5")
    gt_ax, both_ax = axes[1, 2], axes[1, 3]
    gt = None
    if target is not None and len(target["boxes"]):
        iou = box_iou(box, target["boxes"].float())[0]  # (G,)
        g = int(iou.argmax())
        if iou[g] > 0 and target.get("masks") is not None:
            gt = target["masks"][g].bool()  # (H, W)
    if gt is None:
        for ax in (gt_ax, both_ax):
            ax.imshow(to_numpy_image(image))
            ax.set_axis_off()
        why = "no ground truth given" if target is None else "no object under the box"
        gt_ax.set_title("7. ground truth")
        gt_ax.text(0.5, 0.5, why, transform=gt_ax.transAxes, ha="center", va="center",
                   bbox=dict(facecolor="white", alpha=0.85))
        both_ax.set_title("8. against it: -")
    else:
        _show_mask(gt_ax, image, gt.float().numpy(), xyxy)
        gt_ax.set_title(f"7. ground truth: {class_names[int(target['labels'][g])]}")
        agreement = np.zeros((*gt.shape, 4))  # (H, W, RGBA): both, predicted only, missed
        for where, colour in ((predicted & gt, GREEN), (predicted & ~gt, RED),
                              (~predicted & gt, PALETTE[0])):
            agreement[where.numpy()] = [*to_rgb(colour), 0.85]
        mask_iou = (predicted & gt).sum() / (predicted | gt).sum().clamp(min=1)
        both_ax.imshow(to_numpy_image(image))
        both_ax.imshow(agreement)
        _around(both_ax, xyxy, tuple(image.shape[-2:]))
        both_ax.set_axis_off()
        both_ax.set_title(f"8. mask IoU {float(mask_iou):.2f}")
        both_ax.legend(handles=[Patch(color=c, label=t) for c, t in
                                ((GREEN, "both"), (RED, "extra"), (PALETTE[0], "missed"))],
                       loc="lower right", fontsize=12, framealpha=0.85, handlelength=1)
    for ax in axes[0, 1:]:
        ax.set_axis_off()
    fig.suptitle(f"The mask branch (Mask R-CNN sec. 3, Fig. 4) on the best detection\ntop: "
                 f"the network, one {m} x {m} mask per class; bottom: into the image (zoomed)")
    return fig
