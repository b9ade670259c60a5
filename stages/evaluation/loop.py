"""COCO-style evaluation shared by every stage: AP through pycocotools, timing, one result record.

What COCO AP is (Lin et al., "Microsoft COCO", ECCV 2014; the evaluation page of cocodataset.org)
-------------------------------------------------------------------------------------------------
For one class and one IoU threshold t:
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

All values here are in percent (0..100). **-1 means undefined, not bad**: pycocotools reports -1
when there is no ground truth at all in that size range (e.g. APl on 128x128 images, where no object
is larger than 96^2 = 9216 px). `explain_missing` turns each -1 into a sentence. A detection that
overlaps nothing is always counted; an image without objects (a negative) can only add FPs.

Other pycocotools details that matter here:
  * at most 100 detections per image and class count (``maxDets=100``), the top ones by score;
  * ties in score keep their input order (a stable mergesort), first within each image, then
    across images in increasing image id;
  * boxes are matched per image, and each detection takes the *best-overlapping free* gt
    (PASCAL VOC instead takes the best gt and counts a duplicate if it is already taken);
  * crowd regions (``iscrowd = 1``) are never counted as misses and never make FPs.

Shape shorthand and naming
--------------------------
    N  ground-truth objects in one image   D  detections in one image   H x W  image size
    pred_*  model outputs (pred_boxes [D, 4], pred_scores [D])
    gt_*    dataset targets (gt_boxes [N, 4]); boxes are (x1, y1, x2, y2) absolute pixels
    COCO files store boxes as (x, y, w, h) = "xywh"; `xyxy_to_xywh` converts.

Map of this module
------------------
    by hand (for notebook 00):  match_detections -> precision_recall -> average_precision
                                (hand_ap: the three over several images, checked in the tests
                                against pycocotools' AP50)
    pycocotools:                coco_ground_truth (from dataset items) , coco_metrics, explain_missing
    a whole model:              evaluate(model, dataset) -> metrics + timing
    one record per run:         Result (save / load JSON), format_table, format_markdown
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torchvision
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm

from stages.training.device import count_parameters, synchronize  # noqa: F401 (count_parameters: re-exported)
from stages.training.io import write_json

# pycocotools' summarize() order for these six; the other six stats are recall numbers we don't show
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # r = 0, 0.01, ..., 1: same expression value as COCOeval


# ------------------------------------------------------------------------------------------------
# AP by hand: one class, pure numpy, the same rules as pycocotools
# ------------------------------------------------------------------------------------------------

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


def average_precision(precision, recall) -> float:
    """COCO's 101-point interpolated AP (a fraction in 0..1) from precision/recall in score order.

        p_interp(r) = max_{k: recall_k >= r} precision_k,   AP = mean over r in {0, .01, ..., 1}
    where p_interp(r) = 0 if recall r is never reached.
    """
    precision = np.asarray(precision, dtype=float)
    recall = np.asarray(recall, dtype=float)
    if len(precision) == 0:
        return 0.0
    monotone = np.maximum.accumulate(precision[::-1])[::-1]             # max over this and later k
    first_k = np.searchsorted(recall, RECALL_POINTS, side="left")       # (101,) first k with rec >= r
    reached = first_k < len(recall)
    sampled = np.where(reached, monotone[np.minimum(first_k, len(recall) - 1)], 0.0)  # (101,)
    return float(sampled.mean())


def hand_ap(pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image, iou_threshold=0.5):
    """AP (fraction) of one class over several images: match per image, then pool and sort by score.

    Lists of per-image arrays: pred_boxes [D_i, 4], pred_scores [D_i], gt_boxes [N_i, 4]. Images are
    pooled in list order, which matches pycocotools' tie order when the list is in image-id order.
    """
    scores, is_tp = [], []
    for boxes, s, gt in zip(pred_boxes_per_image, pred_scores_per_image, gt_boxes_per_image):
        s = np.asarray(s, dtype=float)
        scores.append(s[np.argsort(-s, kind="mergesort")])  # this image's scores, in score order
        is_tp.append(match_detections(boxes, s, gt, iou_threshold))
    scores, is_tp = np.concatenate(scores), np.concatenate(is_tp)
    order = np.argsort(-scores, kind="mergesort")  # pool all images: one ranking per class
    n_gt = sum(len(np.asarray(gt).reshape(-1, 4)) for gt in gt_boxes_per_image)
    return average_precision(*precision_recall(is_tp[order], n_gt))


# ------------------------------------------------------------------------------------------------
# COCO ground truth and results, built in memory from dataset items and model outputs
# ------------------------------------------------------------------------------------------------

def xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] (x1, y1, x2, y2) -> [N, 4] (x, y, w, h), COCO's box format."""
    return torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1)


def mask_to_rle(masks: torch.Tensor) -> list[dict]:
    """Binary masks [N, H, W] -> N compressed RLE dicts, JSON-ready (``counts`` as str)."""
    N, H, W = masks.shape
    if N == 0:
        return []
    # pycocotools wants a Fortran-ordered uint8 array [H, W, N]
    array = np.asfortranarray(masks.permute(1, 2, 0).to(torch.uint8).numpy())  # (N,H,W)->(H,W,N)
    rles = mask_utils.encode(array)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")  # bytes -> str, so json.dumps accepts it
    return rles


def _as_int(x) -> int:
    """An image id may come as int or as a one-element tensor (torchvision's tutorial uses both)."""
    return int(torch.as_tensor(x).reshape(-1)[0].item()) if torch.is_tensor(x) else int(x)


def gt_entries(image_hw: tuple[int, int], target: dict, first_ann_id: int) -> tuple[dict, list[dict]]:
    """One dataset item -> (COCO image entry, its COCO annotations). Annotation ids start at first_ann_id.

    Ids must be >= 1: COCOeval stores "matched to gt id" in an array where 0 means "unmatched".
    """
    H, W = image_hw
    image_id = _as_int(target["image_id"])
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


def coco_metrics(coco_gt: COCO, detections: list[dict], iou_type: str = "bbox") -> dict[str, float]:
    """COCO AP, AP50, AP75, APs, APm, APl in percent; -1.0 where undefined (no gt of that size).

    detections: COCO result dicts, as from `detections_to_coco`. For "bbox" their boxes are used, for
    "segm" their RLE masks. The input dicts are not modified (loadRes writes ids and areas into them).
    """
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
    stats = coco_eval.stats[:6]  # fractions, or -1
    return {name: (-1.0 if s < 0 else 100.0 * float(s)) for name, s in zip(METRIC_NAMES, stats)}


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


# ------------------------------------------------------------------------------------------------
# A whole model on a dataset
# ------------------------------------------------------------------------------------------------

def evaluate(model, dataset, device="cpu", max_images: int | None = None, batch_size: int = 1,
             progress: bool = False, warmup: int = 1) -> dict:
    """Run ``model`` on the first ``max_images`` items of ``dataset`` and score it the COCO way.

    Returns a dict:
        box          coco_metrics of the boxes
        mask         coco_metrics of the masks, or None if no output had masks
        ms_per_image wall time of the model call per image, ms (a batch's time split evenly)
        ms_proposals mean over images of timing["proposals"] * 1000 (0 if the model reports none)
                     Proposals read from a cache (selective search, stage 1 and 2) are charged at
                     the time their computation took: such a model reports timing["proposals"]
                     (the seconds measured when they were computed) and timing["cache_read"] (the
                     seconds actually spent reading them in this call), and ms_per_image is the
                     wall time - cache_read + proposals. No stage looks faster for having a cache.
        ms_network   ms_per_image - ms_proposals
        timing_ms    {part name: mean ms per image} from the outputs' "timing" dicts (absent = 0)
        n_images     how many images were evaluated
        notes        explain_missing of box (and mask) metrics

    ``warmup`` untimed calls on the first image come first: the first call of a model pays one-off
    costs (memory allocation, kernel selection, caches) that would otherwise be charged to
    whichever stage happens to run first.
    """
    device = torch.device(device)
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    if n == 0:
        raise ValueError("evaluate() needs at least one image")
    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            model([dataset[0][0].to(device)])
    gt_images, gt_annotations, detections = [], [], []
    seconds, part_seconds, any_masks = 0.0, defaultdict(float), False
    with torch.no_grad(), tqdm(total=n, desc="evaluate", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, n))]
            for image, target in items:
                entry, anns = gt_entries(tuple(image.shape[-2:]), target, len(gt_annotations) + 1)
                gt_images.append(entry)
                gt_annotations.extend(anns)
            images = [image.to(device) for image, _ in items]
            synchronize(device)
            t0 = time.perf_counter()
            outputs = model(images)
            synchronize(device)
            seconds += time.perf_counter() - t0
            for (_, target), output in zip(items, outputs):
                detections.extend(detections_to_coco(output, _as_int(target["image_id"])))
                any_masks |= output.get("masks") is not None
                timing = output.get("timing") or {}
                for part, s in timing.items():
                    part_seconds[part] += float(s)
                if "cache_read" in timing:  # charge the recorded computation, not the file read
                    seconds += float(timing.get("proposals", 0.0)) - float(timing["cache_read"])
            bar.update(len(items))

    coco_gt = coco_from_entries(gt_images, gt_annotations, dataset.class_names)
    box = coco_metrics(coco_gt, detections, "bbox")
    mask = None
    if any_masks:
        mask = coco_metrics(coco_gt, [d for d in detections if "segmentation" in d], "segm")
    ms_per_image = 1000.0 * seconds / n
    timing_ms = {part: 1000.0 * s / n for part, s in part_seconds.items() if part != "cache_read"}
    ms_proposals = timing_ms.get("proposals", 0.0)
    notes = explain_missing(box) + [s for s in explain_missing(mask or {})
                                    if s not in explain_missing(box)]
    return {"box": box, "mask": mask, "ms_per_image": ms_per_image, "ms_proposals": ms_proposals,
            "ms_network": ms_per_image - ms_proposals, "timing_ms": timing_ms, "n_images": n,
            "notes": notes}


# ------------------------------------------------------------------------------------------------
# One result record per run: saved as JSON, read by `compare` and the notebooks
# ------------------------------------------------------------------------------------------------

class ResultFileError(ValueError):
    """A result file that exists but is not valid JSON or not a result record."""


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class Result:
    """What one run of one stage measured: a row of the comparison table."""
    stage: str                # "rcnn", "fast_rcnn", ...
    variant: str              # e.g. "proposals=selective_search pool=roi"
    data: str                 # the data source, e.g. "synthetic seed=0"
    box: dict                 # coco_metrics of boxes
    mask: dict | None         # coco_metrics of masks, or None
    train_time_s: float
    ms_per_image: float
    ms_proposals: float
    ms_network: float
    timing_ms: dict           # {part: ms per image}
    params: int
    n_train: int
    n_val: int
    device: str
    seed: int
    created: str = dataclasses.field(default_factory=_now_iso)  # ISO 8601, UTC
    notes: list = dataclasses.field(default_factory=list)

    @classmethod
    def from_evaluation(cls, ev: dict, *, stage: str, variant: str, data: str, train_time_s: float,
                        params: int, n_train: int, device: str, seed: int) -> "Result":
        """Wrap the dict returned by `evaluate` with what the run knows about itself."""
        return cls(stage=stage, variant=variant, data=data, box=ev["box"], mask=ev["mask"],
                   train_time_s=float(train_time_s), ms_per_image=ev["ms_per_image"],
                   ms_proposals=ev["ms_proposals"], ms_network=ev["ms_network"],
                   timing_ms=dict(ev["timing_ms"]), params=int(params), n_train=int(n_train),
                   n_val=ev["n_images"], device=str(device), seed=int(seed), notes=list(ev["notes"]))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "Result":
        """The inverse of to_dict. Unknown keys are ignored (records written by a newer version)."""
        if not isinstance(d, dict):
            raise ValueError(f"a result record is a JSON object, not {type(d).__name__}")
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in d]
        if missing:
            raise ValueError(f"not a result record: missing {', '.join(missing)}")
        return cls(**{f.name: d[f.name] for f in fields if f.name in d})

    def save(self, path) -> Path:
        """Write atomically as JSON (an interrupted run leaves the old file or the new one)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "Result":
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise FileNotFoundError(f"no result file at {path}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ResultFileError(f"{path} is not valid JSON ({e}); delete it and rerun") from None
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ResultFileError(f"{path}: {e}") from None


# ------------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------------

COLUMNS = ("stage", "variant", "box AP", "AP50", "AP75", "APs", "APm", "APl",
           "mask AP", "mask AP50", "mask AP75", "train s", "ms/img", "proposals ms", "network ms",
           "params")


def format_count(n: int) -> str:
    """1234567 -> "1.2M", 45600 -> "45.6K", 999 -> "999"."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return str(int(n))


def _ap(value: float) -> str:
    return "n/a" if value == -1 else f"{value:.1f}"


def _row(r: Result) -> list[str]:
    mask = [_ap(r.mask[k]) for k in ("AP", "AP50", "AP75")] if r.mask else ["-", "-", "-"]
    return ([r.stage, r.variant] + [_ap(r.box[k]) for k in METRIC_NAMES] + mask
            + [f"{r.train_time_s:.1f}", f"{r.ms_per_image:.1f}", f"{r.ms_proposals:.1f}",
               f"{r.ms_network:.1f}", format_count(r.params)])


def _explanations(results: list[Result]) -> list[str]:
    """Each distinct explain_missing sentence once, over box and mask metrics of all results."""
    seen = []
    for r in results:
        for sentence in explain_missing(r.box) + explain_missing(r.mask or {}):
            if sentence not in seen:
                seen.append(sentence)
    return seen


def align_columns(rows: list[list[str]], text_columns: int) -> list[str]:
    """Rows of cells (the first row the header) -> the lines of an aligned text table: the first
    ``text_columns`` columns left-aligned, numbers right-aligned, a dashed rule under the header."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if c < text_columns else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_table(results: list[Result]) -> str:
    """An aligned text table, one row per result; "n/a" (= -1) explained once below it."""
    lines = align_columns([list(COLUMNS)] + [_row(r) for r in results], text_columns=2)
    notes = _explanations(results)
    if notes:
        lines += [""] + ["n/a: " + sentence for sentence in notes]
    return "\n".join(lines)


def format_markdown(results: list[Result]) -> str:
    """The same table in Markdown."""
    lines = ["| " + " | ".join(COLUMNS) + " |",
             "|" + "|".join("---" if c < 2 else "---:" for c in range(len(COLUMNS))) + "|"]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in results]
    notes = _explanations(results)
    if notes:
        lines += [""] + ["- n/a: " + sentence for sentence in notes]
    return "\n".join(lines)
