"""Average precision by hand: one class, pure numpy, the same rules as pycocotools.

What COCO AP is (Lin et al., "Microsoft COCO", ECCV 2014; the evaluation page of cocodataset.org)
-------------------------------------------------------------------------------------------------
AP is the area under the precision-recall curve. For one class and one IoU threshold t:
  1. sort all detections of that class, over all images, by score (highest first);
  2. walk down the list; a detection is a true positive (TP) when it overlaps a still-unmatched
     ground-truth box of its image with IoU >= t, else a false positive (FP);     `match_detections`
  3. after the k-th detection: precision_k = TP_k / k, recall_k = TP_k / n_gt;    `precision_recall`
  4. make precision monotone from the right, p_interp(r) = max_{r' >= r} p(r'), and average it at
     the 101 recall points r = 0, 0.01, ..., 1 (0 where recall r is never reached). `average_precision`
That number is AP_t for one class; AP is then averaged over the classes that have ground truth.

    AP     mean of AP_t over t = 0.50, 0.55, ..., 0.95 (10 thresholds): the primary COCO metric,
           which rewards boxes that are *precisely* placed (Mask R-CNN paper, Table 1 "AP")
    AP50   AP_t at t = 0.50 only: the PASCAL VOC-style metric, "did we find it at all"
    AP75   AP_t at t = 0.75 only: a strict metric; box regression is what raises it
    APs    AP over small objects,  area < 32^2 px        (area = mask pixel area of the gt object)
    APm    AP over medium objects, 32^2 <= area <= 96^2 px  (pycocotools' ranges are closed, so an
    APl    AP over large objects,  area > 96^2 px            area of exactly 32^2 counts in both)

The rules of pycocotools this module follows (``coco.py`` runs pycocotools itself):
  * ties in score keep their input order (a stable mergesort), first within each image, then
    across images in increasing image id;
  * boxes are matched per image, and each detection takes the *best-overlapping free* gt
    (PASCAL VOC instead takes the best gt and counts a duplicate if it is already taken).

Shape shorthand and naming
--------------------------
    N  ground-truth objects in one image   D  detections in one image
    pred_*  model outputs (pred_boxes [D, 4], pred_scores [D])
    gt_*    dataset targets (gt_boxes [N, 4]); boxes are (x1, y1, x2, y2) absolute pixels

Map of this module (notebook 00 walks through it)
-------------------------------------------------
    match_detections -> precision_recall -> average_precision, one image and one class
                        (interpolated_precision: the curve whose mean is AP)
    pooled_precision_recall   the curve of one class over several images (pooled, ranked)
    hand_ap           its AP, checked in the tests against pycocotools' AP50
mAP averages AP over the classes that have ground truth; COCO's "AP" also averages over the ten
IoU thresholds 0.50, 0.55, ..., 0.95.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # r = 0, 0.01, ..., 1: same expression value as COCOeval


def match_detections(pred_boxes, pred_scores, gt_boxes, iou_threshold: float) -> np.ndarray:
    """Mark each detection of one image and one class as TP (True) or FP (False).

    pred_boxes [D, 4], pred_scores [D], gt_boxes [N, 4], all (x1, y1, x2, y2). Detections are visited
    by descending score (a stable sort, so ties keep their input order, as in pycocotools); each one
    takes the free gt it overlaps most, if that IoU >= iou_threshold. Each gt is matched at most once.

    Returns is_tp: bool [D] in *score order*, i.e. is_tp[k] is the k-th highest-scoring detection.
    """
    pred_boxes = torch.as_tensor(np.asarray(pred_boxes, dtype=np.float64)).reshape(-1, 4)
    gt_boxes = torch.as_tensor(np.asarray(gt_boxes, dtype=np.float64)).reshape(-1, 4)
    order = np.argsort(-np.asarray(pred_scores, dtype=np.float64), kind="mergesort")  # (D,)
    D, N = len(order), len(gt_boxes)
    is_tp = np.zeros(D, dtype=bool)
    if D == 0 or N == 0:
        return is_tp
    iou = torchvision.ops.box_iou(pred_boxes[order], gt_boxes).numpy()  # (D, N), rows in score order
    gt_taken = np.zeros(N, dtype=bool)
    for k in range(D):
        best_iou, best_gt = iou_threshold, -1
        for g in range(N):  # the same loop as COCOeval.evaluateImg (an exact tie goes to the later gt)
            if gt_taken[g] or iou[k, g] < best_iou:
                continue
            best_iou, best_gt = iou[k, g], g
        if best_gt >= 0:
            gt_taken[best_gt] = True
            is_tp[k] = True
    return is_tp


def precision_recall(is_tp, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall after each detection. is_tp: bool [D] in score order; n_gt > 0.

    precision_k = TP_k / k,  recall_k = TP_k / n_gt  (k = 1..D). Returns two float64 arrays [D].
    """
    if n_gt <= 0:
        raise ValueError("recall needs at least one ground-truth object (COCO reports AP = -1 then)")
    tp = np.cumsum(np.asarray(is_tp, dtype=bool)).astype(float)  # (D,) TP_k
    k = np.arange(1, len(tp) + 1, dtype=float)                     # (D,) detections so far
    return tp / k, tp / n_gt


def interpolated_precision(precision, recall) -> np.ndarray:
    """COCO's interpolated precision at the 101 recall points r = 0, 0.01, ..., 1: [101].

        p_interp(r) = max_{k: recall_k >= r} precision_k,   0 where recall r is never reached
    (precision and recall in score order, as ``precision_recall`` returns them)."""
    precision = np.asarray(precision, dtype=float)
    recall = np.asarray(recall, dtype=float)
    if len(precision) == 0:
        return np.zeros_like(RECALL_POINTS)
    monotone = np.maximum.accumulate(precision[::-1])[::-1]             # max over this and later k
    first_k = np.searchsorted(recall, RECALL_POINTS, side="left")       # (101,) first k with rec >= r
    reached = first_k < len(recall)
    return np.where(reached, monotone[np.minimum(first_k, len(recall) - 1)], 0.0)  # (101,)


def average_precision(precision, recall) -> float:
    """COCO's 101-point interpolated AP (a fraction in 0..1) from precision/recall in score order:
    the area under the precision-recall curve, as the mean of ``interpolated_precision`` over the
    101 recall points."""
    return float(interpolated_precision(precision, recall).mean())


def pooled_precision_recall(pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image,
                            iou_threshold=0.5) -> tuple[np.ndarray, np.ndarray]:
    """The precision-recall curve of one class over several images: ``(precision [D], recall [D])``
    after each of the D detections of all images, pooled and ranked by score.

    Lists of per-image arrays: pred_boxes [D_i, 4], pred_scores [D_i], gt_boxes [N_i, 4]. Detections
    are matched per image (``match_detections``), then ranked together. Images are pooled in list
    order, which matches pycocotools' tie order when the list is in image-id order.
    """
    scores, is_tp = [], []
    for boxes, s, gt in zip(pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image):
        s = np.asarray(s, dtype=float)
        scores.append(s[np.argsort(-s, kind="mergesort")])  # this image's scores, in score order
        is_tp.append(match_detections(boxes, s, gt, iou_threshold))
    scores, is_tp = np.concatenate(scores), np.concatenate(is_tp)
    order = np.argsort(-scores, kind="mergesort")  # pool all images: one ranking per class
    n_gt = sum(len(np.asarray(gt).reshape(-1, 4)) for gt in gt_boxes_per_image)
    return precision_recall(is_tp[order], n_gt)


def hand_ap(pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image, iou_threshold=0.5):
    """AP (fraction) of one class over several images: the area under its pooled precision-recall
    curve (``pooled_precision_recall``), COCO's 101-point way (``average_precision``)."""
    return average_precision(*pooled_precision_recall(pred_boxes_per_image, pred_scores_per_image,
                                                      gt_boxes_per_image, iou_threshold))
