"""The evaluator's figure: what AP is (Lin et al., "Microsoft COCO", ECCV 2014; the COCO
evaluation page), on a trained run's detections of the validation set.

    name              function               file (.png)             idea
    precision_recall  fig_precision_recall   12_precision_recall     AP = the area under the
                                                                     precision-recall curve; mAP
    error_types       fig_error_types        15_error_types          TIDE's six error types, one
                                                                     real detection of each

Each class's detections over all validation images are ranked by score and matched to the ground
truth at IoU >= 0.5 (``stages.evaluation.ap``); the curve is the precision and recall after each
one. AP50 of a class is the mean of the interpolated precision at 101 recall points: the shaded
area. mAP (AP50) is the mean over the classes; COCO's AP also averages over the IoU thresholds
0.50:0.95.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from stages.evaluation.ap import (RECALL_POINTS, average_precision, interpolated_precision,
                                  pooled_precision_recall)
from stages.figures.common import Inputs, trained_model
from stages.figures.draw import class_colour


def class_curves(model, dataset, iou_threshold: float = 0.5, max_images: int = 100) -> dict:
    """{class index k: (precision [D], recall [D])} of the model's detections on ``dataset``."""
    n = min(max_images, len(dataset))
    pred = {k: ([], []) for k in range(1, dataset.num_classes + 1)}
    gt = {k: [] for k in pred}
    for i in range(n):
        image, target = dataset[i]
        with torch.no_grad():
            out = model([image])[0]
        for k in pred:
            own = out["labels"] == k
            pred[k][0].append(out["boxes"][own].numpy())
            pred[k][1].append(out["scores"][own].numpy())
            gt[k].append(target["boxes"][target["labels"] == k].numpy())
    return {k: pooled_precision_recall(*pred[k], gt[k], iou_threshold) for k in pred
            if sum(len(g) for g in gt[k])}  # classes with ground truth only (COCO's rule)


def fig_precision_recall(src: Inputs) -> Figure:
    """The precision-recall curve of each class of a trained Mask R-CNN's boxes at IoU 0.5: the
    raw curve, its interpolation, and the area under it, which is AP50; their mean is mAP."""
    model, _ = trained_model(src, "mask_rcnn", ("mask_rcnn", "mask_rcnn_torchvision"))
    curves = class_curves(model, src.val)
    aps = {k: average_precision(p, r) for k, (p, r) in curves.items()}
    fig = Figure(figsize=(15, 6.4), layout="compressed")
    left, right = fig.subplots(1, 2)
    k = min(aps, key=aps.get)  # the hardest class: its area is the easiest to see
    precision, recall = curves[k]
    interp = interpolated_precision(precision, recall)  # (101,)
    colour = class_colour(k)
    left.fill_between(RECALL_POINTS, interp, step="post", color=colour, alpha=0.25,
                      label=f"area = AP50 = {100 * aps[k]:.1f}")
    left.step(RECALL_POINTS, interp, where="post", color=colour, linewidth=2.5,
              label="interpolated: max precision at recall >= r")
    left.plot(recall, precision, color="0.35", linewidth=1, label="after each detection, by score")
    left.set_title(f"one class, {src.class_names[k]}: {len(precision)} detections, "
                   f"ranked by score")
    for k2, (p, r) in curves.items():
        right.step(RECALL_POINTS, interpolated_precision(p, r), where="post", color=class_colour(k2),
                   linewidth=2.5, label=f"{src.class_names[k2]}: AP50 {100 * aps[k2]:.1f}")
    mean = 100 * float(np.mean(list(aps.values())))
    right.set_title(f"every class: mAP = their mean = {mean:.1f} (AP50)")
    for ax in (left, right):
        ax.set_xlabel("recall = TP / ground-truth objects")
        ax.set_ylabel("precision = TP / detections so far")
        ax.set_xlim(0, 1.02), ax.set_ylim(0, 1.05)
        ax.legend(loc="lower left")
        ax.grid(alpha=0.3)
    fig.suptitle("AP is the area under the precision-recall curve (COCO: 101 recall points); "
                 "mAP averages it over the classes\nCOCO's AP also averages over IoU 0.50:0.95; "
                 "here IoU 0.5 (AP50)")
    return fig


# ------------------------------------------------------------------------------------------------
# TIDE's error types, one real example each
# ------------------------------------------------------------------------------------------------

# where the examples are looked for: the runs on photos first, then those on the synthetic set
# (Penn-Fudan has one class, so its runs can show no classification error)
EXAMPLE_STAGES = ("mask_rcnn", "faster_rcnn", "fast_rcnn", "rcnn")
TYPE_TITLES = {"cls": "cls: the box is right, the class wrong",
               "loc": "loc: the class is right, the box off",
               "both": "both: wrong class and box off",
               "dupe": "dupe: a second box on a found object",
               "bkg": "bkg: a box on nothing",
               "missed": "missed: an object no box found"}


def error_examples(run_dirs) -> dict:
    """{type: (run folder, example, ground truth)} for each TIDE error type: the example
    (``errors.examples``: the highest-scoring detection of that type) from the first folder of
    ``run_dirs`` whose ``detections.json`` holds one."""
    import json

    from stages.evaluation.errors import examples
    from stages.run import DETECTIONS, GROUND_TRUTH

    found = {}
    for folder in run_dirs:
        try:
            gt = json.loads((folder / GROUND_TRUTH).read_text())
            detections = json.loads((folder / DETECTIONS).read_text())
        except (OSError, ValueError):
            continue
        for kind, example in examples(gt, detections).items():
            found.setdefault(kind, (folder, example, gt))
    return found


def example_image(folder, example: dict, gt: dict, data_root="data") -> np.ndarray:
    """The validation image of ``example`` as the evaluation saw it (its ground truth's frame,
    after any ``--long-side``): read again from the run's data (``metrics.json``'s ``data``)."""
    import torch.nn.functional as F

    from stages.data.sources import load_dataset
    from stages.evaluation.result import Result
    from stages.figures.draw import to_numpy_image

    entry = next(im for im in gt["images"] if im["id"] == example["image_id"])
    data = Result.load(folder / "metrics.json").data.split(" (val ")[0]
    _, val = load_dataset(data, data_root)
    index = next(i for i in range(len(val)) if val.file_name(i) == entry["file_name"])
    image, _ = val[index]
    image = F.interpolate(image[None], size=(entry["height"], entry["width"]), mode="bilinear",
                          align_corners=False, antialias=True)[0].clamp(0, 1)  # (3, H, W)
    return to_numpy_image(image)


def fig_error_types(src: Inputs) -> Figure:
    """One real detection of each of TIDE's six error types (``stages.evaluation.errors``): the
    detection (dashed) and the object it was judged against (solid), their IoU, and the run it
    came from; from the runs on photos (``--photo-runs``) where they hold one, else from the
    synthetic runs (``--runs``)."""
    from matplotlib.patches import Rectangle

    from stages.figures.common import Skip

    folders = ([src.photo_runs / s for s in EXAMPLE_STAGES] + [src.runs / s for s in EXAMPLE_STAGES])
    found = error_examples(folders)
    if not found:
        raise Skip(f"no detections.json under {src.photo_runs} or {src.runs}: run "
                   f"`{src.command('stages.compare', src.runs)}` (every run writes one)")
    fig = Figure(figsize=(15, 10.5), layout="compressed")
    axes = fig.subplots(2, 3).ravel()
    for ax, kind in zip(axes, TYPE_TITLES):
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(TYPE_TITLES[kind], fontsize=13)
        if kind not in found:
            ax.text(0.5, 0.5, "none in these runs", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        folder, ex, gt = found[kind]
        names = {c["id"]: c["name"] for c in gt["categories"]}
        src.used.append(f"{folder} (image {ex['image_id']})")
        ax.imshow(example_image(folder, ex, gt, src.data_root))
        if ex["gt_box"]:
            x, y, w, h = ex["gt_box"]
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#2ca02c", linewidth=3))
            ax.text(x + 1, y + h - 1, f"object: {names[ex['gt_class']]}", color="white",
                    fontsize=11, va="bottom", bbox={"facecolor": "#2ca02c", "alpha": 0.8, "pad": 1})
        if ex["det_box"]:
            x, y, w, h = ex["det_box"]
            ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="#d62728", linewidth=3,
                                   linestyle="--"))
            ax.text(x, y - 1, f"detection: {names[ex['det_class']]} {ex['score']:.2f}",
                    color="white", fontsize=11, va="bottom",
                    bbox={"facecolor": "#d62728", "alpha": 0.8, "pad": 1})
        where = f"{folder.parent.name}/{folder.name}" if folder.parent != src.runs else folder.name
        iou = f"IoU {ex['iou']:.2f}" if ex["det_box"] and ex["gt_box"] else "no overlap"
        with_what = {"bkg": " (nearest object)", "missed": " (nearest box)"}
        ax.set_xlabel(f"{iou}{with_what.get(kind, '')}; run {where}", fontsize=11)
    fig.suptitle("TIDE's error types, one real example each: dashed red = the detection, solid "
                 "green = the object it is judged against\nloc, cls and both are told apart at "
                 "IoU 0.5 (a match) and 0.1 (overlapping nothing)", fontsize=14)
    return fig
