"""Stage 1's figures, R-CNN (Girshick et al., CVPR 2014): where to look and what it costs, how
selective search finds its regions, what the CNN is shown, and which background regions its
SVMs get wrong.

    name              function               file (.png)                              paper, section
    proposals         fig_proposals          01_sliding_windows_vs_selective_search   R-CNN 2.1, 2.2
    warped_regions    fig_warped_regions     02_warped_regions                        R-CNN App. A
    hard_negatives    fig_hard_negatives     03_hard_negatives                        R-CNN 2.3
    selective_search  fig_selective_search   21_selective_search_steps                Uijlings 3.1

Each takes the ``Inputs`` (``stages.figures.common``) and returns a matplotlib ``Figure``;
``stages.figures.gallery`` lists and writes them. Boxes are (x1, y1, x2, y2) in image pixels;
R proposals of one image, K object classes (background not counted), S x S the CNN's input.

Two measurements are made while the figures are drawn, not typed in: ``cnn_ms_per_region``, what
one region costs R-CNN (warp + CNN, timed on this machine), which fig 01 charges every sliding
window and every selective-search box; and ``selective_search_steps``, the package's own
segmentation and merge order, which the selective-search figure pictures.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.figure import Figure

from stages.backbone import PIXEL_MEAN, PIXEL_STD
from stages.figures.common import CAPTION, GREEN, ORANGE, RED, Inputs, Skip, spread
from stages.figures.draw import draw_boxes, draw_captioned_boxes, draw_detections, to_numpy_image
from stages.ops import box_iou
from stages.rcnn.sliding_windows import sliding_windows
from stages.selective_search import SelectiveSearchConfig, to_uint8_hwc
from stages.flags import dataclass_from_dict
from stages.training.engine import CHECKPOINT


def denormalize(regions: torch.Tensor) -> torch.Tensor:
    """R-CNN's crops (zero-mean inputs, ``rcnn.regions.normalize``) back to colours in [0, 1]."""
    std = torch.tensor(PIXEL_STD)[:, None, None]  # (3, 1, 1)
    mean = torch.tensor(PIXEL_MEAN)[:, None, None]
    return (regions * std + mean).clamp(0, 1)


def _boxes_and_crops(image, gt_boxes, boxes, crops, captions, colours, cols: int = 4) -> Figure:
    """The image with numbered boxes (ground truth in white) on the left; each box's crop, as
    the CNN sees it, in a grid on the right (``cols`` wide), captioned in the box's colour.

    Placed by hand, in inches: a caption wider than its crop made matplotlib's layout shrink the
    crop, which widened the overhang, until the crops were specks."""
    n = len(boxes)
    rows = max(1, math.ceil(n / cols))
    lines = max((c.count("\n") + 1 for c in captions), default=1)  # caption lines
    W, top, side, cell = 16.0, 1.1, 1.9, 2.2  # inches: width, suptitle, crop, crop + gap
    row = side + 0.3 * lines + 0.15  # a crop and its caption
    H = top + rows * row + 0.3
    fig = Figure(figsize=(W, H))

    def axes_at(x: float, y_top: float, w: float, h: float):  # inches from the top left
        return fig.add_axes((x / W, 1 - (y_top + h) / H, w / W, h / H))

    picture = min(6.2, H - top - 1.9)  # the image, square, with room for a title and a note
    ax = axes_at(0.3, top + 0.45, picture, picture)
    draw_boxes(ax, image, gt_boxes, "white", linewidth=2.5)
    draw_captioned_boxes(ax, None, boxes, [str(i + 1) for i in range(n)], colours, fontsize=CAPTION)
    ax.set_title("the image; white: its objects")
    x0 = W - 0.15 - cols * cell
    for i in range(n):
        r, c = divmod(i, cols)
        a = axes_at(x0 + c * cell + (cell - side) / 2, top + r * row + row - side, side, side)
        a.imshow(to_numpy_image(crops[i]), interpolation="nearest")
        a.set_title(f"{i + 1}: {captions[i]}", color=colours[i], fontsize=13)
        a.set_axis_off()
    return fig


def cnn_ms_per_region(image: torch.Tensor, boxes: torch.Tensor, cfg, num_classes: int,
                      repeats: int = 2) -> float:
    """Milliseconds of R-CNN's work per region (sec. 2.2): warp it, with its context, to S x S
    (``crop_regions``) and run the region CNN to fc7 (``extract_features``), as ``RCNN.detect``
    does for every proposal. Timed on one batch of up to ``cfg.feature_batch`` of ``boxes`` [R, 4]
    of ``image`` [3, H, W], the best of ``repeats`` after a warm-up, on this machine's CPU (with
    torch's threads as they are). The CNN is built as ``cfg`` describes it, untrained: its weights
    change no time."""
    from stages.rcnn.cnn import extract_features
    from stages.rcnn.model import build_region_cnn
    from stages.rcnn.regions import crop_regions, normalize

    cnn = build_region_cnn(cfg, num_classes).eval()
    batch = boxes[: cfg.feature_batch]  # (B, 4)
    normalized = normalize(image)

    def warp_and_cnn(b: torch.Tensor) -> None:
        regions = crop_regions(normalized, b, cfg.warp_size, cfg.context_pad_pixels)  # (B, 3, S, S)
        extract_features(cnn, regions, cfg.feature_batch)  # pool5, fc7, logits

    warp_and_cnn(batch[:8])  # warm-up: the first call allocates
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        warp_and_cnn(batch)
        best = min(best, time.perf_counter() - t0)
    return 1000 * best / len(batch)


def _timed_sliding_windows(image_size: tuple[int, int], cfg, repeats: int = 5):
    """``(windows [R, 4], seconds)``: the windows of ``cfg``, and the best time of listing them."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        windows = sliding_windows(image_size, cfg.sliding_window())
        best = min(best, time.perf_counter() - t0)
    return windows, best


def fig_proposals(src: Inputs) -> Figure:
    """Sliding windows against selective search on one image (R-CNN sec. 2.1), with their counts,
    per object the best box each method offers, and what each costs per image: making the boxes,
    plus warping every box and running the CNN on it (sec. 2.2), measured here
    (``cnn_ms_per_region``)."""
    from stages.rcnn.config import RCNNConfig
    cfg = RCNNConfig()  # the windows, the selective search and the CNN that stage 1 runs
    image, target = src.image, src.target
    gt = target["boxes"]
    windows, window_seconds = _timed_sliding_windows(tuple(image.shape[-2:]), cfg)
    ss, seconds = src.selective_search
    ms_per_region = cnn_ms_per_region(image, windows, cfg, len(src.class_names) - 1)
    shown = 100
    fig = Figure(figsize=(16, 9), layout="compressed")
    grid = fig.add_gridspec(2, 3, height_ratios=(3.3, 1))
    axes = [fig.add_subplot(grid[0, i]) for i in range(3)]
    draw_detections(axes[0], image, gt, target["labels"], class_names=src.class_names,
                    linewidth=2.5, fontsize=CAPTION)
    axes[0].set_title(f"the image: {len(gt)} objects")
    methods = ((axes[1], "sliding windows", windows, window_seconds,
                f"{len(cfg.sw_sizes)} sizes x {len(cfg.sw_ratios)} shapes, listed in"),
               (axes[2], "selective search", ss, seconds, "found in"))
    costs = []  # (method, boxes, ms to make them, ms of warp + CNN on all of them)
    for ax, name, boxes, made_in, how in methods:
        pick = torch.randperm(len(boxes), generator=torch.Generator().manual_seed(0))[:shown]
        draw_boxes(ax, image, boxes[pick], ORANGE, linewidth=0.8, alpha=0.7)
        title = (f"{name}: {len(boxes)} boxes\n{how} {made_in * 1000:.1f} ms; "
                 f"{min(shown, len(boxes))} drawn")
        if len(gt) and len(boxes):
            best_iou, best = box_iou(gt, boxes).max(dim=1)  # (G,): each object's best box
            draw_boxes(ax, image, boxes[best], GREEN, linewidth=2.5)
            title += f"\ngreen: best per object, IoU {best_iou.mean():.2f}"
        ax.set_title(title)
        costs.append((name, len(boxes), made_in * 1000, len(boxes) * ms_per_region))
    _draw_costs(fig.add_subplot(grid[1, :]), costs, ms_per_region,
                min(cfg.feature_batch, len(windows)))
    fig.suptitle("Where to look, and what it costs: R-CNN runs its CNN on every box "
                 "(sec. 2.1, 2.2)")
    return fig


def _draw_costs(ax, costs: list[tuple], ms_per_region: float, batch: int) -> None:
    """One bar per proposal method: ms per image to make the boxes, then to warp every box and run
    the CNN on it (boxes x ms per region, timed on a ``batch`` of windows), each bar labelled with
    its sum."""
    total = max(made + cnn for _, _, made, cnn in costs)
    for y, (name, n, made, cnn) in enumerate(costs):
        ax.barh(y, made, color=ORANGE, label="making the boxes" if y == 0 else None)
        ax.barh(y, cnn, left=made, color="#1f77b4",
                label="warp + CNN, every box" if y == 0 else None)
        ax.text(made + cnn + total * 0.01, y,
                f"{made:.1f} ms + {n} boxes x {ms_per_region:.2f} ms = {made + cnn:.0f} ms",
                va="center", fontsize=14, gid=f"cost:{name}")
    ax.set_yticks(range(len(costs)), [name for name, *_ in costs])
    ax.invert_yaxis()  # in the order of the panels above
    ax.set_xlim(0, total * 1.6)  # room for the sums
    threads = torch.get_num_threads()
    ax.set_xlabel(f"ms per image on this CPU ({threads} thread{'s' if threads > 1 else ''}); "
                  f"warp + CNN timed on a batch of {batch} windows (as R-CNN batches them): "
                  f"{ms_per_region:.2f} ms per box")
    ax.legend(loc="lower right", frameon=False)


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
    shows = what_it_shows(boxes, target, src.class_names)  # (R,) "on circle, IoU 0.62"
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
        # "square SVM +0.77": the score of that class's SVM, for a region it must reject;
        # the second line says what the crop shows (a circle: a hard negative for "square")
        captions = [f"{src.class_names[k[r] + 1]} SVM {worst[r]:+.2f}\n{shows[r]}"
                    for r in pick.tolist()]
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
        captions = [shows[r] for r in pick.tolist()]
        colours = [ORANGE] * len(pick)
        title = (f"Likely hard negatives: the background regions nearest to an object "
                 f"(IoU < {cfg.svm_neg_iou:g})\nno usable R-CNN run in {src.runs / 'rcnn'}, so "
                 f"no SVM scores: these are where hard negatives come from")
        print(f"[figures] hard_negatives: {missing}; drawing the negatives nearest to an object")
    fig = _boxes_and_crops(image, target["boxes"], boxes[pick], denormalize(regions[pick]),
                           captions, colours)
    if state is not None and len(pick):  # what a caption says, in words, with crop 1's numbers
        r, name = int(pick[0]), src.class_names[int(k[pick[0]]) + 1]
        explained = (f"each crop: the class SVM that scores it highest among the\nclasses it "
                     f"must reject (IoU < {cfg.svm_neg_iou:g} with all their objects), its\n"
                     f"score, and what the crop shows. Crop 1: the {name} SVM gives\n"
                     f"{worst[r]:+.2f} to a region {shows[r]}: a hard negative for '{name}'")
        fig.axes[0].text(0.5, -0.03, explained, transform=fig.axes[0].transAxes, ha="center",
                         va="top", fontsize=14)
    fig.suptitle(title)
    return fig


def what_it_shows(boxes: torch.Tensor, target: dict, class_names: list[str]) -> list[str]:
    """Per region [R, 4]: the object it overlaps most and by how much, "on circle, IoU 0.62", or
    "on background" when it overlaps none by 0.1."""
    if len(target["boxes"]) == 0:
        return ["on background"] * len(boxes)
    best_iou, best = box_iou(boxes, target["boxes"]).max(dim=1)  # (R,)
    labels = target["labels"][best]
    return [f"on {class_names[int(c)]}, IoU {v:.2f}" if v >= 0.1 else "on background"
            for v, c in zip(best_iou.tolist(), labels.tolist())]


# ------------------------------------------------------------------------------------------------
# Selective search, step by step (Uijlings et al. 2013, sec. 3.1), from the package's own run
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchSteps:
    """One run of the ``selectivesearch`` package on one image, as the package left it.

    ``labels`` (H, W): the initial Felzenszwalb segment of each pixel (the label image the package
    returns as its 4th channel); ``regions``: the package's regions in its order, the ``n_initial``
    segments first, then one per merge; merge j joined regions ``pairs[j]`` (indices into
    ``regions``) into region ``n_initial + j``, at the similarity ``similarity[j]`` (s and its four
    terms, computed by the package's own ``_calc_sim``, ``_sim_colour``, ...)."""

    labels: np.ndarray
    regions: list
    n_initial: int
    pairs: list
    similarity: list

    def partition(self, merges: int) -> np.ndarray:
        """(H, W): the index (into ``regions``) of the region each pixel belongs to after the
        first ``merges`` merges (0: the initial segmentation)."""
        lut = np.zeros(int(self.labels.max()) + 1, dtype=np.int64)  # segment label -> region
        for i, r in enumerate(self.regions[: self.n_initial + merges]):
            for label in r["labels"]:  # a later region takes over its segments
                lut[int(label)] = i
        return lut[self.labels]


def selective_search_steps(image: torch.Tensor, cfg: SelectiveSearchConfig) -> SearchSteps:
    """Run the package's ``selective_search`` on ``image`` [3, H, W] with ``cfg``'s settings and
    read its hierarchy back: which two regions each merge joined (the two that held its
    segments) and their similarity, from the package's own functions on its own label image."""
    import selectivesearch
    from selectivesearch.selectivesearch import (_calc_sim, _extract_regions, _merge_regions,
                                                 _sim_colour, _sim_fill, _sim_size, _sim_texture)

    with warnings.catch_warnings():  # the package calls a scikit-image API that warns
        warnings.simplefilter("ignore")
        img, regions = selectivesearch.selective_search(to_uint8_hwc(image), scale=cfg.ss_scale,
                                                        sigma=cfg.ss_sigma, min_size=cfg.ss_min_size)
        features = _extract_regions(img)  # segment label -> box, size, colour/texture histograms
    labels = img[:, :, 3].astype(np.int64)  # (H, W): the Felzenszwalb segments
    n = len(np.unique(labels))
    imsize = labels.size
    owner = {}  # segment label -> the region that holds it now
    region_features = []
    for i, r in enumerate(regions[:n]):
        owner[r["labels"][0]] = i
        region_features.append(features[r["labels"][0]])
    pairs, similarity = [], []
    for j, r in enumerate(regions[n:]):
        joined = sorted({owner[label] for label in r["labels"]})
        if len(joined) != 2:
            raise ValueError(f"merge {j}: its segments are held by {len(joined)} regions, not 2")
        a, b = (region_features[i] for i in joined)
        similarity.append({"s": _calc_sim(a, b, imsize), "colour": _sim_colour(a, b),
                           "texture": _sim_texture(a, b), "size": _sim_size(a, b, imsize),
                           "fill": _sim_fill(a, b, imsize)})
        region_features.append(_merge_regions(a, b))
        pairs.append(tuple(joined))
        for label in r["labels"]:
            owner[label] = n + j
    return SearchSteps(labels, regions, n, pairs, similarity)


def _region_colours(steps: SearchSteps, seed: int = 0) -> np.ndarray:
    """(regions, 3) RGB: a random bright colour per initial segment; a merged region keeps the
    colour of the larger of the two it joined, so that the eye follows it from panel to panel."""
    rng = np.random.default_rng(seed)
    colours = list(rng.uniform(0.25, 0.95, size=(steps.n_initial, 3)))
    for a, b in steps.pairs:
        larger = a if steps.regions[a]["size"] >= steps.regions[b]["size"] else b
        colours.append(colours[larger])
    return np.array(colours)


def _draw_partition(ax, steps: SearchSteps, merges: int, colours: np.ndarray) -> None:
    """The regions after ``merges`` merges, each in its colour, with their borders; the region
    the last of them formed at full colour (the rest faded) and its box, a proposal, in red."""
    from skimage.segmentation import find_boundaries

    part = steps.partition(merges)  # (H, W) region index per pixel
    rgb = colours[part]  # (H, W, 3)
    if merges:
        new = steps.n_initial + merges - 1
        rgb = np.where((part == new)[..., None], rgb, 0.45 * rgb + 0.55)  # others faded
    rgb[find_boundaries(part, mode="inner")] = 0.15  # region borders, dark
    ax.imshow(rgb, interpolation="nearest")
    if merges:  # the package's rect (x, y, w, h) spans pixel indices: x2 = x + w + 1
        x, y, w, h = steps.regions[new]["rect"]
        box = torch.tensor([[x, y, x + w + 1, y + h + 1]], dtype=torch.float32)
        draw_captioned_boxes(ax, None, box - 0.5, colours=RED, linewidth=2.5)  # pixel edges
    ax.set_xticks([])
    ax.set_yticks([])


def _best_object_merge(steps: SearchSteps, gt_boxes: torch.Tensor) -> tuple[int, float]:
    """``(m, IoU)``: the merge whose region's box fits a ground-truth object best (m counts from
    1), the moment selective search "found" an object; (0, 0.0) without merges or objects."""
    if not steps.pairs or len(gt_boxes) == 0:
        return 0, 0.0
    rects = [steps.regions[steps.n_initial + j]["rect"] for j in range(len(steps.pairs))]
    boxes = torch.tensor([[x, y, x + w + 1, y + h + 1] for x, y, w, h in rects],
                         dtype=torch.float32)  # (M, 4)
    best_iou = box_iou(boxes, gt_boxes.float()).max(dim=1).values  # (M,)
    m = int(best_iou.argmax())
    return m + 1, float(best_iou[m])


def fig_selective_search(src: Inputs) -> Figure:
    """Selective search (Uijlings et al. 2013, sec. 3.1) on one image as the ``selectivesearch``
    package runs it, the hierarchy that stage 1 (``stages.selective_search``) wraps: the initial
    Felzenszwalb segmentation, three of its merges (the first, the one whose box fits an object
    best, one half-way), each with its similarity s = colour + texture + size + fill (the most
    similar neighbours merge first), and the proposals: every region's box, cleaned up."""
    from stages.rcnn.config import RCNNConfig
    cfg = RCNNConfig().selective_search()  # the settings stage 1 runs (and caches) it with
    image, target = src.image, src.target
    steps = selective_search_steps(image, cfg)
    proposals, _ = src.selective_search  # the same run's boxes, cleaned up, as stages 1-2 read them
    n, M = steps.n_initial, len(steps.pairs)
    colours = _region_colours(steps)
    found, found_iou = _best_object_merge(steps, target["boxes"])
    shown = sorted({m for m in (1, found, M // 2) if m >= 1})
    # placed by hand, in inches (as _boxes_and_crops): 2 rows of 3 square panels
    W, side, top, above, below = 12.8, 3.2, 1.05, 0.75, 0.8
    H = top + 2 * (above + side + below)
    fig = Figure(figsize=(W, H))
    gap = (W - 3 * side) / 3
    axes = [fig.add_axes(((gap / 2 + c * (side + gap)) / W,
                          1 - (top + r * (above + side + below) + above + side) / H,
                          side / W, side / H)) for r in range(2) for c in range(3)]
    draw_boxes(axes[0], image, target["boxes"], "white", linewidth=2.5)
    axes[0].set_title(f"the image: {len(target['boxes'])} objects\n(white)")
    _draw_partition(axes[1], steps, 0, colours)
    axes[1].set_title(f"Felzenszwalb: {n} initial regions\n(scale {cfg.ss_scale:g}, sigma "
                      f"{cfg.ss_sigma:g}, min_size {cfg.ss_min_size})")
    for ax, m in zip(axes[2:5], shown):
        _draw_partition(ax, steps, m, colours)
        sim = steps.similarity[m - 1]
        what = f"its box fits an object, IoU {found_iou:.2f}" if m == found else "red: its box"
        left = f"{n - m} region{'s' if n - m != 1 else ''} left"
        ax.set_title(f"merge {m} of {M}: {left}\n{what}")
        ax.set_xlabel(f"s = colour + texture + size + fill\n= {sim['colour']:.2f} + "
                      f"{sim['texture']:.2f} + {sim['size']:.2f} + {sim['fill']:.2f} = "
                      f"{sim['s']:.2f}")
    for ax in axes[2 + len(shown):5]:
        ax.set_axis_off()
    draw_boxes(axes[5], image, proposals, ORANGE, linewidth=0.8, alpha=0.8)
    draw_captioned_boxes(axes[5], None, target["boxes"], colours="white", linewidth=2.0)
    axes[5].set_title(f"proposals: all {n + M} regions' boxes\n-> {len(proposals)} after "
                      f"dropping < {cfg.ss_min_box:g} px, repeats")
    fig.suptitle("Selective search (Uijlings et al. 2013, sec. 3.1), the selectivesearch package: "
                 "segment,\nthen merge the two most similar neighbouring regions, again and again; "
                 "every region is a proposal", fontsize=16, y=1 - 0.1 / H, va="top")
    return fig
