"""The bridge to pycocotools: COCO ground truth and results built in memory, and COCO's six APs.

``ap.py`` computes AP by hand; this module lets pycocotools compute it, from dataset items and
model outputs, without a file on disk. What AP, AP50, AP75, APs, APm and APl mean is in ``ap.py``.

All values here are in percent (0..100). **-1 means undefined, not bad**: pycocotools reports -1
when there is no ground truth at all in that size range (e.g. APl on 128x128 images, where no object
is larger than 96^2 = 9216 px). `explain_missing` turns each -1 into a sentence. A detection that
overlaps nothing is always counted; an image without objects (a negative) can only add FPs.

Other pycocotools details that matter here:
  * at most 100 detections per image and class count (``maxDets=100``), the top ones by score;
  * ties in score keep their input order (a stable mergesort), first within each image, then
    across images in increasing image id;
  * boxes are matched per image, and each detection takes the *best-overlapping free* gt;
  * crowd regions (``iscrowd = 1``) are never counted as misses and never make FPs.

Shape shorthand and naming
--------------------------
    N  ground-truth objects in one image   D  detections in one image   H x W  image size
    pred_*  model outputs (pred_boxes [D, 4], pred_scores [D], pred_masks [D, H, W])
    gt_*    dataset targets (gt_boxes [N, 4], gt_masks [N, H, W]); boxes are (x1, y1, x2, y2)
            absolute pixels. COCO files store boxes as (x, y, w, h) = "xywh"; `xyxy_to_xywh` converts.

Map of this module
------------------
    formats:       xyxy_to_xywh (boxes), mask_to_rle (masks -> COCO's run-length encoding), from
                   stages.data.coco_format (the dataset writer needs them too)
    ground truth:  gt_entries (one dataset item) -> coco_from_entries; coco_ground_truth (a dataset)
    results:       detections_to_coco (one model output)
    scores:        coco_metrics (METRIC_NAMES, in percent), per_class_ap (AP and AP50 of each
                   class, from COCOeval's precision array), explain_missing (a sentence per -1)
"""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Sequence

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from stages.data.coco_format import mask_to_rle, xyxy_to_xywh  # noqa: F401 (part of this module's API)

# pycocotools' summarize() order for these six; the other six stats are recall numbers we don't show
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def image_id_of(target: dict) -> int:
    """``target["image_id"]`` as an int: it may come as int or as a one-element tensor
    (torchvision's tutorial uses both)."""
    x = target["image_id"]
    return int(torch.as_tensor(x).reshape(-1)[0].item()) if torch.is_tensor(x) else int(x)


def gt_entries(image_hw: tuple[int, int], target: dict, first_ann_id: int) -> tuple[dict, list[dict]]:
    """One dataset item -> (COCO image entry, its COCO annotations). Annotation ids start at first_ann_id.

    Ids must be >= 1: COCOeval stores "matched to gt id" in an array where 0 means "unmatched".
    """
    H, W = image_hw
    image_id = image_id_of(target)
    gt_boxes = torch.as_tensor(target["boxes"], dtype=torch.float64).reshape(-1, 4)  # (N, 4)
    N = len(gt_boxes)
    gt_labels = torch.as_tensor(target["labels"]).reshape(-1)
    gt_masks = target.get("masks")
    iscrowd = torch.as_tensor(target.get("iscrowd", torch.zeros(N))).reshape(-1)
    if "area" in target:  # the mask pixel area: what COCO's small/medium/large ranges use
        area = torch.as_tensor(target["area"], dtype=torch.float64).reshape(-1)
    elif gt_masks is not None:
        area = torch.as_tensor(gt_masks).flatten(1).sum(1).double()
    else:
        area = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    rles = mask_to_rle(torch.as_tensor(gt_masks)) if gt_masks is not None else [None] * N
    xywh = xyxy_to_xywh(gt_boxes)
    annotations = []
    for j in range(N):
        ann = {"id": first_ann_id + j, "image_id": image_id, "category_id": int(gt_labels[j]),
               "bbox": [float(v) for v in xywh[j]], "area": float(area[j]),
               "iscrowd": int(iscrowd[j])}
        if rles[j] is not None:
            ann["segmentation"] = rles[j]
        annotations.append(ann)
    return {"id": image_id, "height": int(H), "width": int(W)}, annotations


def coco_from_entries(images: list[dict], annotations: list[dict], class_names: Sequence[str]) -> COCO:
    """An in-memory pycocotools COCO object. class_names[0] is "background" and gets no category."""
    ids = [img["id"] for img in images]
    if len(set(ids)) != len(ids):
        raise ValueError("two dataset items share an image_id; COCO needs one id per image")
    categories = [{"id": k, "name": name, "supercategory": "object"}
                  for k, name in enumerate(class_names) if k > 0]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index... index created!"
        coco.createIndex()
    return coco


def coco_ground_truth(dataset, indices: Sequence[int] | None = None) -> COCO:
    """COCO ground truth built from the dataset's own items (image, target), in the frame the model sees.

    Building it from the items (not from a JSON file on disk) means resized images, boxes and masks
    are evaluated in the same pixel frame as the predictions. Images without objects are kept.
    """
    indices = range(len(dataset)) if indices is None else indices
    images, annotations = [], []
    for i in indices:
        image, target = dataset[i]
        entry, anns = gt_entries(tuple(image.shape[-2:]), target, first_ann_id=len(annotations) + 1)
        images.append(entry)
        annotations.extend(anns)
    return coco_from_entries(images, annotations, dataset.class_names)


def detections_to_coco(output: dict, image_id: int) -> list[dict]:
    """One model output dict -> COCO result dicts (image_id, category_id, bbox xywh, score[, segmentation]).

    Masks may be [D, 1, H, W] (torchvision's probabilities) or [D, H, W], float, bool or uint8;
    they are binarised at 0.5.
    """
    pred_boxes = output["boxes"].detach().cpu().double().reshape(-1, 4)  # (D, 4)
    pred_labels = output["labels"].detach().cpu().reshape(-1)
    pred_scores = output["scores"].detach().cpu().double().reshape(-1)
    rles = None
    if output.get("masks") is not None:
        pred_masks = output["masks"].detach().cpu()
        if pred_masks.dim() == 4:
            pred_masks = pred_masks[:, 0]  # (D, 1, H, W) -> (D, H, W)
        rles = mask_to_rle(pred_masks.float() > 0.5)
    xywh = xyxy_to_xywh(pred_boxes)
    results = []
    for d in range(len(pred_boxes)):
        r = {"image_id": image_id, "category_id": int(pred_labels[d]),
             "bbox": [float(v) for v in xywh[d]], "score": float(pred_scores[d])}
        if rles is not None:
            r["segmentation"] = rles[d]
        results.append(r)
    return results


def _empty_results(coco_gt: COCO) -> COCO:
    """A result set with no detections. ``COCO.loadRes([])`` fails (it reads ``anns[0]``), so we
    build it by hand and let COCOeval compute honestly: AP 0 where gt exists, -1 where none does."""
    res = COCO()
    res.dataset = {"images": list(coco_gt.dataset["images"]),
                   "categories": copy.deepcopy(coco_gt.dataset["categories"]), "annotations": []}
    res.createIndex()
    return res


def _evaluated(coco_gt: COCO, detections: list[dict], iou_type: str) -> COCOeval:
    """COCOeval run through evaluate, accumulate and summarize on ``detections``, quietly.

    For "bbox" the detections' boxes are used, for "segm" their RLE masks. The input dicts are not
    modified (loadRes writes ids and areas into them)."""
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', not {iou_type!r}")
    needed, other = ("bbox", "segmentation") if iou_type == "bbox" else ("segmentation", "bbox")
    if any(needed not in d for d in detections):
        raise ValueError(f"iou_type={iou_type!r} needs a {needed!r} in every detection")
    # Fresh dicts without the other geometry: for "segm", loadRes would otherwise take the box
    # branch and set each detection's area to its *box* area instead of its mask area.
    dets = [{k: v for k, v in d.items() if k != other} for d in detections]
    unknown = {d["image_id"] for d in dets} - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(f"detections for image ids not in the ground truth: {sorted(unknown)[:5]}")
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and the summary
        coco_dt = coco_gt.loadRes(dets) if dets else _empty_results(coco_gt)
        coco_eval = COCOeval(coco_gt, coco_dt, iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def coco_metrics(coco_gt: COCO, detections: list[dict], iou_type: str = "bbox") -> dict[str, float]:
    """COCO AP, AP50, AP75, APs, APm, APl in percent; -1.0 where undefined (no gt of that size).

    detections: COCO result dicts, as from `detections_to_coco`. For "bbox" their boxes are used, for
    "segm" their RLE masks. The input dicts are not modified (loadRes writes ids and areas into them).
    """
    return _metrics_of(_evaluated(coco_gt, detections, iou_type))


def _metrics_of(coco_eval: COCOeval) -> dict[str, float]:
    stats = coco_eval.stats[:6]  # fractions, or -1
    return {name: (-1.0 if s < 0 else 100.0 * float(s)) for name, s in zip(METRIC_NAMES, stats)}


def per_class_ap(coco_gt: COCO, detections: list[dict],
                 iou_type: str = "bbox") -> dict[str, dict[str, float]]:
    """AP and AP50 of each class in percent, {class name: {"AP": .., "AP50": ..}}; -1.0 where the
    class has no gt (undefined, as in `coco_metrics`).

    Read from COCOeval's ``eval["precision"]``, [T, R, K, A, M]: T = 10 IoU thresholds 0.50..0.95,
    R = 101 recall points, K classes, A = 4 area ranges (0 = "all"), M = 3 maxDets (1, 10, 100).
    One class's AP is the mean of its [T, R] slice at area "all" and maxDets 100 over the entries
    > -1, exactly what summarize() computes for all K at once; AP50 the same at T = 0.50 only.
    COCO's AP is the mean of these over the classes whose AP is not -1 (a test checks it).
    """
    return _per_class_of(_evaluated(coco_gt, detections, iou_type), coco_gt)


def coco_scores(coco_gt: COCO, detections: list[dict],
                iou_type: str = "bbox") -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(`coco_metrics`, `per_class_ap`) from one COCOeval run: what the evaluator reports, without
    matching the detections twice."""
    coco_eval = _evaluated(coco_gt, detections, iou_type)
    return _metrics_of(coco_eval), _per_class_of(coco_eval, coco_gt)


def _per_class_of(coco_eval: COCOeval, coco_gt: COCO) -> dict[str, dict[str, float]]:
    p = coco_eval.params
    precision = coco_eval.eval["precision"][:, :, :, p.areaRngLbl.index("all"),
                                            p.maxDets.index(100)]  # (T, R, K, A, M) -> (T, R, K)
    t50 = int(np.argmin(np.abs(p.iouThrs - 0.5)))

    def mean_defined(s: np.ndarray) -> float:
        s = s[s > -1]
        return -1.0 if s.size == 0 else 100.0 * float(s.mean())

    return {coco_gt.cats[cat_id]["name"]: {"AP": mean_defined(precision[:, :, k]),
                                           "AP50": mean_defined(precision[t50, :, k])}
            for k, cat_id in enumerate(p.catIds)}


_WHY_UNDEFINED = {
    "AP": "the validation set has no ground-truth object at all, so AP is undefined, not zero.",
    "AP50": "the validation set has no ground-truth object at all, so AP50 is undefined, not zero.",
    "AP75": "the validation set has no ground-truth object at all, so AP75 is undefined, not zero.",
    "APs": "the validation set has no small object (area < 32^2 px), "
           "so AP over small objects is undefined, not zero.",
    "APm": "the validation set has no medium object (32^2 <= area <= 96^2 px), "
           "so AP over medium objects is undefined, not zero.",
    "APl": "the validation set has no large object (area > 96^2 px), "
           "so AP over large objects is undefined, not zero.",
}


def explain_missing(metrics: dict) -> list[str]:
    """A sentence for each metric equal to -1, e.g. "APl = -1: the validation set has no large ..."."""
    return [f"{name} = -1: {_WHY_UNDEFINED[name]}"
            for name in METRIC_NAMES if name in metrics and metrics[name] == -1]
