"""The evaluator's figure: what AP is (Lin et al., "Microsoft COCO", ECCV 2014; the COCO
evaluation page), on a trained run's detections of the validation set.

    name              function               file (.png)             idea
    precision_recall  fig_precision_recall   12_precision_recall     AP = the area under the
                                                                     precision-recall curve; mAP

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
