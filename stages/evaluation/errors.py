"""Where the AP went: TIDE's six error types and the AP each one costs.

Bolya, Foley, Hays and Hoffman, "TIDE: A General Toolbox for Identifying Object Detection Errors",
ECCV 2020 (code: github.com/dbolya/tide, the ``tidecv`` package). AP50 is one number; TIDE splits
the 100 - AP50 points a detector loses into causes, each measured by what fixing it would give back.

The six error types (the paper's definitions; tidecv's errors/main_errors.py, quantify.py)
-------------------------------------------------------------------------------------------
First COCO's matching at t_f = 0.5 (the AP50 threshold): detections in score order, each takes the
free gt of its class it overlaps most, if IoU >= t_f. That gives the true positives (TP). Every
other detection gets exactly one type, from its best IoU with the gt of its image; t_b = 0.1 is
the background threshold. The conditions are checked in tidecv's order (`classify_errors`); the
first that holds wins:

    loc     t_b <= IoU <= t_f  with a gt of its own class        right class, box off
    cls     IoU >= t_f         with a gt of another class        box right, class wrong
    dupe    IoU >= t_f         with a gt of its own class that a higher-scoring TP already took
    bkg     IoU <= t_b         with every gt                     fired on nothing
    both    anything else: t_b < IoU < t_f with a gt of another class (cls and loc at once)
    missed  a gt that no TP took and that no cls or loc error would take once fixed

dAP: fix one type with an oracle, recompute AP50, dAP = max(AP50_fixed - AP50, 0)
-------------------------------------------------------------------------------
    cls     relabel the detection to its gt's class: now a TP              (`fix_cls`)
    loc     move its box onto its gt: now a TP                             (`fix_loc`)
            Only one detection per gt can be fixed: the highest-scoring cls or loc error on a gt
            that no TP took. The others would become duplicates, so they are dropped.
    both, dupe, bkg   drop the detection                                   (`drop`)
    missed  take the missed gt out of n_gt, the recall denominator
            (recall_k = TP_k / n_gt)                                       (`fix_missed`)
Two more, which cut across the six (TIDE's "special" errors):
    FP      every false positive dropped: perfect precision at the same recall. (tidecv scores
            them 0 instead of dropping them; the curve and the AP are the same.)
    FN      every gt no TP took out of n_gt: perfect recall at the same precision.
Fixing all six at once gives AP50 = 100 (a test checks it), so the six dAPs are all the lost AP
seen one cause at a time. They need not add up to 100 - AP50: the fixes interact.

AP here is COCO's AP50, from ``ap.py`` (`precision_recall`, `average_precision`: 101 recall points),
averaged over the classes that have gt. It equals pycocotools' AP50 (a test checks it).

Where we differ from tidecv (corner cases and a rounding; the tests cross-check the rest)
------------------------------------------------------------------------------------------
  * A class with detections but no gt is left out of the mean, as COCO leaves it out (AP -1,
    undefined); tidecv counts it as AP 0. (A class whose last gt a fix takes away scores 0 in both
    while detections of it are left: `ap_at`.)
  * At most 100 detections per image *and class*, the top ones by score, as pycocotools keeps
    them; tidecv keeps 100 per image.
  * Crowd regions (iscrowd = 1): a detection that is no TP but covers a crowd region of its class
    (crowd IoU = intersection / detection area >= t_f) is ignored, as COCO ignores it: neither TP
    nor error. tidecv leaves it out of AP too, but still gives it an error type.
  * A fix that leaves no class at all (every gt missed, no detection) gives AP50 = 100: nothing
    is left to find. tidecv divides by zero there.
  * Equal scores keep COCO's order (within an image, then by image id); after a fix tidecv puts
    the false positives first among equal scores.
  * The 101 recall points are pycocotools' np.linspace(0, 1, 101); tidecv's are x / 100. They
    differ by one ulp at r = 0.35, 0.41, 0.47, 0.57, 0.69, 0.70, 0.82, 0.83, 0.94, 0.95, so a recall
    of exactly 7/10 (n_gt a multiple of 10) counts at r = 0.70 for tidecv only: a few tenths of AP.

Shape shorthand and naming
--------------------------
    D  detections in one image   N  ground-truth objects in one image (crowd regions included)
    ious [D, N]   det_* per detection [D] (sorted by score)   gt_* per gt object [N]
    Boxes are COCO's (x, y, w, h), masks COCO RLE dicts; class = COCO category id.
    A *point* is what AP is computed from: (class, score, is_tp), one per counted detection.
    An *outcome* is one detection's verdict: {"class", "score", "type", "gt_class", "fixable"}.

Map of this module
------------------
    input:     to_rle, group_by_image (per image: gt and detections, sorted by score), image_ious
    typing:    match_detections (COCO's TPs) -> classify_errors (the six types, per image)
    AP:        ap_at (mean AP over the classes with gt, from points and n_gt)
    fixes:     fix_cls, fix_loc, drop, fix_missed -> points (the points with some types fixed)
    the whole: classify_dataset (all images: outcomes, gt counts) -> breakdown (a JSON-ready
               dict, AP in percent), format_breakdown (a text table); examples (one detection
               of each type, for a figure)
    checks:    check_ground_truth, check_results, geometry_problem (ValueError naming the problem)
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from pycocotools import mask as mask_utils

from stages.evaluation.ap import average_precision, precision_recall
from stages.evaluation.tables import format_rows

T_F = 0.5  # foreground IoU threshold t_f: a TP at AP50 (TIDE's default, tidecv's pos_threshold)
T_B = 0.1  # background IoU threshold t_b: at or below it a detection overlaps nothing (tidecv's
#            background_threshold)
MAX_DETS = 100  # per image and class, as pycocotools' maxDets = 100
ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "missed")
FP_TYPES = ("cls", "loc", "both", "dupe", "bkg")  # the five that are detections (missed is a gt)
GEOMETRY = {"bbox": "bbox", "segm": "segmentation"}  # iou_type -> the key in gt and results


# ------------------------------------------------------------------------------------------------
# Input: COCO ground truth (a dict) and COCO results (a list), grouped per image
# ------------------------------------------------------------------------------------------------

def to_rle(segmentation, height: int, width: int) -> dict:
    """A COCO segmentation (polygons, uncompressed RLE, or compressed RLE with ``counts`` as str or
    bytes) -> a compressed RLE dict, what ``pycocotools.mask.iou`` takes."""
    if isinstance(segmentation, list):  # polygons [[x1, y1, x2, y2, ...], ...]
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):  # uncompressed RLE
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def group_by_image(coco_gt: dict, detections: list[dict], iou_type: str = "bbox") -> list[dict]:
    """Ground truth and detections per image, images in increasing id (COCO's order for ties).

    Each image: {"image_id", "gt_classes" [N], "gt_crowd" [N] bool, "gt_geoms" (N boxes or RLEs),
    "det_classes" [D], "det_scores" [D], "det_geoms"}, the detections sorted by score (a stable
    sort: ties keep their input order) and cut to the top MAX_DETS per class, as pycocotools does.
    """
    key = GEOMETRY[iou_type]
    sizes = {img["id"]: (img.get("height"), img.get("width")) for img in coco_gt["images"]}
    gts = {i: [] for i in sizes}
    dets = {i: [] for i in sizes}
    for ann in coco_gt["annotations"]:
        gts[ann["image_id"]].append(ann)
    for det in detections:
        dets[det["image_id"]].append(det)

    def geometry(item, image_id):
        return item[key] if iou_type == "bbox" else to_rle(item[key], *sizes[image_id])

    images = []
    for image_id in sorted(gts):
        ranked = sorted(dets[image_id], key=lambda d: -d["score"])  # stable, as mergesort
        per_class = Counter()
        kept = []
        for d in ranked:
            per_class[d["category_id"]] += 1
            if per_class[d["category_id"]] <= MAX_DETS:
                kept.append(d)
        gt = gts[image_id]
        images.append({
            "image_id": image_id,
            "gt_classes": np.array([a["category_id"] for a in gt], dtype=np.int64),
            "gt_crowd": np.array([bool(a.get("iscrowd", 0)) for a in gt], dtype=bool),
            "gt_geoms": [geometry(a, image_id) for a in gt],
            "det_classes": np.array([d["category_id"] for d in kept], dtype=np.int64),
            "det_scores": np.array([d["score"] for d in kept], dtype=np.float64),
            "det_geoms": [geometry(d, image_id) for d in kept],
            "gt_boxes": [a.get("bbox") for a in gt], "det_boxes": [d.get("bbox") for d in kept],
        })
    return images


def image_ious(det_geoms: list, gt_geoms: list, gt_crowd: np.ndarray) -> np.ndarray:
    """IoU of each detection with each gt of one image: [D, N]. Boxes (x, y, w, h) or RLE masks.

    Against a crowd region COCO's IoU is intersection / detection area ("is the detection inside
    the crowd?"), which ``pycocotools.mask.iou`` computes where its iscrowd flag is set."""
    D, N = len(det_geoms), len(gt_geoms)
    if D == 0 or N == 0:
        return np.zeros((D, N))
    return np.asarray(mask_utils.iou(det_geoms, gt_geoms, [int(c) for c in gt_crowd]),
                      dtype=np.float64).reshape(D, N)


# ------------------------------------------------------------------------------------------------
# Typing: COCO's TPs first, then one error type for every other detection
# ------------------------------------------------------------------------------------------------

def match_detections(ious, det_classes, gt_classes, gt_crowd, t_f: float = T_F):
    """COCO's greedy matching in one image: detections (rows of ``ious`` [D, N], in score order)
    each take the free non-crowd gt of their class with the highest IoU >= t_f (an exact tie goes
    to the later gt, as in COCOeval.evaluateImg). One that takes none but covers a crowd region of
    its class (crowd IoU >= t_f) is ignored: neither TP nor error.

    Returns (det_gt [D] int: the gt index each detection took, -1 for none; det_ignored [D] bool).
    """
    D, N = ious.shape
    same_class = det_classes[:, None] == gt_classes[None, :]  # (D, N)
    det_gt = np.full(D, -1, dtype=np.int64)
    det_ignored = np.zeros(D, dtype=bool)
    gt_taken = np.zeros(N, dtype=bool)
    for d in range(D):
        free = same_class[d] & ~gt_crowd & ~gt_taken & (ious[d] >= t_f)  # (N,)
        if free.any():
            candidates = np.where(free, ious[d], -1.0)
            g = N - 1 - int(np.argmax(candidates[::-1]))  # the best; the last one among equals
            det_gt[d], gt_taken[g] = g, True
        elif (same_class[d] & gt_crowd & (ious[d] >= t_f)).any():
            det_ignored[d] = True
    return det_gt, det_ignored


def classify_errors(ious, det_classes, gt_classes, gt_crowd, det_gt, det_ignored,
                    t_f: float = T_F, t_b: float = T_B):
    """The error type of every detection of one image, and which gt are missed (TIDE).

    ious [D, N] in score order; det_gt, det_ignored from `match_detections`. Returns
      det_type   [D] str: "tp", "ignored" (on a crowd region) or one of cls loc dupe bkg both;
      det_fix    [D] int: for the cls or loc error that a fix turns into a TP, the gt it takes;
                 else -1. One per free gt, the highest-scoring (tidecv's BestGTMatch);
      gt_missed  [N] bool: non-crowd gt that no TP took and no fixable cls/loc error points at.
    """
    D, N = ious.shape
    real = ~gt_crowd[None, :]                                   # (1, N) crowd regions are no gt
    same = (det_classes[:, None] == gt_classes[None, :]) & real  # (D, N)
    other = ~(det_classes[:, None] == gt_classes[None, :]) & real
    gt_taken = np.zeros(N, dtype=bool)
    gt_taken[det_gt[det_gt >= 0]] = True
    iou_same = np.where(same, ious, 0.0)                        # IoU_fg: own class
    iou_other = np.where(other, ious, 0.0)                      # another class
    iou_taken = np.where(same & gt_taken[None, :], ious, 0.0)  # own class, gt taken by a TP
    iou_any = np.where(real, ious, 0.0)

    det_type, det_fix = [], np.full(D, -1, dtype=np.int64)
    gt_covered = np.zeros(N, dtype=bool)  # a fixable cls/loc error points at it (tidecv: "usable")
    for d in range(D):
        if det_gt[d] >= 0 or det_ignored[d]:
            det_type.append("tp" if det_gt[d] >= 0 else "ignored")
            continue
        if N == 0:
            det_type.append("bkg")
            continue
        g_same, g_other = int(np.argmax(iou_same[d])), int(np.argmax(iou_other[d]))
        if t_b <= iou_same[d, g_same] <= t_f:
            kind, g = "loc", g_same          # would be a TP if its box were better
        elif iou_other[d, g_other] >= t_f:
            kind, g = "cls", g_other         # would be a TP if its class were right
        elif iou_taken[d].max() >= t_f:
            kind, g = "dupe", -1             # a TP if the gt were not taken already
        elif iou_any[d].max() <= t_b:
            kind, g = "bkg", -1              # overlaps nothing
        else:
            kind, g = "both", -1             # wrong class and off: no single fix makes it a TP
        det_type.append(kind)
        if g >= 0 and not gt_taken[g] and not gt_covered[g]:  # rows are in score order: the first
            det_fix[d], gt_covered[g] = g, True                # error on a gt is its best one
    gt_missed = ~gt_crowd & ~gt_taken & ~gt_covered
    return det_type, det_fix, gt_missed


# ------------------------------------------------------------------------------------------------
# AP from points, and the oracle fixes
# ------------------------------------------------------------------------------------------------

def ap_at(points: list[tuple], n_gt: dict) -> float:
    """Mean AP in percent over the classes of ``n_gt``, at the threshold the points were matched
    with (t_f: AP50).

    points: (class, score, is_tp), in COCO's tie order; n_gt: {class: gt count}, the classes that
    have gt (`breakdown` passes only those, so that classes without gt are left out, as COCO
    leaves them out). For each class: rank its points by score (stable), precision_k = TP_k / k,
    recall_k = TP_k / n_gt, AP = 101-point interpolated precision (``ap.py``). A class whose gt
    a fix took away (n_gt 0) scores 0 while detections of it are left (all wrong), and is left
    out when none are (tidecv's rule). No class left -> 100: nothing left to find, nothing found
    wrongly (every gt missed and fixed away; tidecv divides by zero here).
    """
    by_class = {k: [] for k in n_gt}
    for k, score, is_tp in points:
        if k in by_class:  # a class that is not in the ground truth's categories: COCO skips it
            by_class[k].append((score, is_tp))
    aps = []
    for k, n in n_gt.items():
        if n <= 0:
            if by_class[k]:
                aps.append(0.0)  # detections of a class with no gt left: precision 0
            continue
        scores = np.array([s for s, _ in by_class[k]], dtype=np.float64)
        is_tp = np.array([tp for _, tp in by_class[k]], dtype=bool)
        order = np.argsort(-scores, kind="mergesort")  # stable, as COCOeval.accumulate
        aps.append(average_precision(*precision_recall(is_tp[order], n)) if len(order) else 0.0)
    return 100.0 * float(np.mean(aps)) if aps else 100.0


def fix_cls(outcome: dict):
    """cls oracle: relabel to the gt's class, a TP; or None (dropped) where its gt is taken or
    goes to a higher-scoring error."""
    return (outcome["gt_class"], outcome["score"], True) if outcome["fixable"] else None


def fix_loc(outcome: dict):
    """loc oracle: the box set to its gt's box, a TP of its own class; or None (dropped) where its
    gt is taken or goes to a higher-scoring error."""
    return (outcome["class"], outcome["score"], True) if outcome["fixable"] else None


def drop(outcome: dict):
    """both, dupe and bkg oracle: the detection is suppressed (no single fix makes it a TP)."""
    return None


FIXES = {"cls": fix_cls, "loc": fix_loc, "both": drop, "dupe": drop, "bkg": drop}


def fix_missed(n_gt: dict, n_missed: dict) -> dict:
    """missed oracle: the missed gt leave the recall denominator. {class: n_gt - n_missed}."""
    return {k: n - n_missed.get(k, 0) for k, n in n_gt.items()}


def points(outcomes: list[dict], fixed=()) -> list[tuple]:
    """The AP points (class, score, is_tp) of all detections, the error types in ``fixed`` fixed
    by their oracle (FIXES); ignored detections give none."""
    result = []
    for o in outcomes:
        if o["type"] == "ignored":
            continue
        if o["type"] in fixed:
            point = FIXES[o["type"]](o)
        else:
            point = (o["class"], o["score"], o["type"] == "tp")
        if point is not None:
            result.append(point)
    return result


# ------------------------------------------------------------------------------------------------
# The breakdown
# ------------------------------------------------------------------------------------------------

def classify_dataset(coco_gt: dict, detections: list[dict], iou_type: str = "bbox",
                     t_f: float = T_F, t_b: float = T_B) -> tuple[list[dict], dict, dict, dict]:
    """Every detection's outcome, and the gt counts per class, over all images (input unchecked).

    Returns (outcomes, n_gt, n_missed, n_unmatched): outcomes [{"class", "score", "type",
    "fixable", "gt_class"}] in COCO's order (images by id, then score); n_gt {class: non-crowd gt}
    for the classes that have gt, the K classes AP is averaged over (COCO); n_missed {class:
    missed gt}; n_unmatched {class: gt no TP took}, what TIDE's FN error removes.
    """
    n_gt = {c["id"]: 0 for c in coco_gt["categories"]}  # COCO's catIds
    n_missed, n_unmatched = Counter(), Counter()
    outcomes = []
    for im in group_by_image(coco_gt, detections, iou_type):
        det_classes, gt_classes, gt_crowd = im["det_classes"], im["gt_classes"], im["gt_crowd"]
        ious = image_ious(im["det_geoms"], im["gt_geoms"], gt_crowd)  # (D, N)
        det_gt, det_ignored = match_detections(ious, det_classes, gt_classes, gt_crowd, t_f)
        det_type, det_fix, gt_missed = classify_errors(ious, det_classes, gt_classes, gt_crowd,
                                                       det_gt, det_ignored, t_f, t_b)
        taken = set(det_gt[det_gt >= 0].tolist())
        for g, k in enumerate(gt_classes.tolist()):
            if not gt_crowd[g]:
                n_gt[k] += 1
                n_missed[k] += int(gt_missed[g])
                n_unmatched[k] += int(g not in taken)
        for d, kind in enumerate(det_type):
            g = int(det_fix[d])
            outcomes.append({"class": int(det_classes[d]), "score": float(im["det_scores"][d]),
                             "type": kind, "fixable": g >= 0,
                             "gt_class": int(gt_classes[g]) if g >= 0 else None})
    n_gt = {k: n for k, n in n_gt.items() if n > 0}
    return outcomes, n_gt, dict(n_missed), dict(n_unmatched)


def breakdown(coco_gt: dict, detections: list[dict], iou_type: str = "bbox",
              t_f: float = T_F, t_b: float = T_B) -> dict:
    """TIDE's breakdown of COCO results against COCO ground truth, JSON-ready, AP in percent:

        {"iou_type", "t_f", "t_b", "ap50",
         "dAP": {"cls", "loc", "both", "dupe", "bkg", "missed"},   AP50 gained by each oracle fix
         "dAP_fp", "dAP_fn",                                      all FPs dropped / all FNs removed
         "counts": {"tp", "cls", "loc", "both", "dupe", "bkg", "missed",
                    "gt", "detections", "ignored"}}

    coco_gt: {"images", "annotations", "categories"} (boxes xywh, masks as RLE or polygons);
    detections: [{image_id, category_id, score, bbox and/or segmentation}]. iou_type "bbox" uses
    boxes, "segm" masks. Raises ValueError (one sentence) on input that is not that.
    """
    check_ground_truth(coco_gt, iou_type)
    check_results(detections, coco_gt, iou_type)
    outcomes, n_gt, n_missed, n_unmatched = classify_dataset(coco_gt, detections, iou_type,
                                                             t_f, t_b)
    base = points(outcomes)
    ap50 = ap_at(base, n_gt)
    dAP = {kind: max(ap_at(points(outcomes, fixed={kind}), n_gt) - ap50, 0.0) for kind in FP_TYPES}
    dAP["missed"] = max(ap_at(base, fix_missed(n_gt, n_missed)) - ap50, 0.0)
    counts = Counter(o["type"] for o in outcomes)
    return {
        "iou_type": iou_type, "t_f": t_f, "t_b": t_b, "ap50": ap50, "dAP": dAP,
        # TIDE's special errors are not clipped at 0 (nor are they in tidecv)
        "dAP_fp": ap_at([p for p in base if p[2]], n_gt) - ap50,
        "dAP_fn": ap_at(base, fix_missed(n_gt, n_unmatched)) - ap50,
        "counts": {"tp": counts["tp"], **{kind: counts[kind] for kind in FP_TYPES},
                   "missed": sum(n_missed.values()), "gt": sum(n_gt.values()),
                   "detections": len(outcomes), "ignored": counts["ignored"]},
    }


def examples(coco_gt: dict, detections: list[dict], iou_type: str = "bbox",
             t_f: float = T_F, t_b: float = T_B) -> dict:
    """One example of each error type, for a figure: the highest-scoring detection of each type
    (for "missed", the largest missed object), as

        {type: {"image_id", "det_box", "det_class", "score", "gt_box", "gt_class", "iou"}}

    boxes COCO (x, y, w, h); ``gt_box`` the object the detection was judged against (its best
    overlap: for cls and loc the gt a fix would take), None for a detection on nothing; for
    "missed", ``det_box`` is the best-overlapping detection of any class, None if there is none.
    ``iou`` is the IoU of the two (0 when one is missing). Types that did not occur are absent."""
    found: dict = {}
    for im in group_by_image(coco_gt, detections, iou_type):
        ious = image_ious(im["det_geoms"], im["gt_geoms"], im["gt_crowd"])  # (D, N)
        det_gt, det_ignored = match_detections(ious, im["det_classes"], im["gt_classes"],
                                               im["gt_crowd"], t_f)
        det_type, det_fix, gt_missed = classify_errors(ious, im["det_classes"], im["gt_classes"],
                                                       im["gt_crowd"], det_gt, det_ignored, t_f, t_b)
        N = len(im["gt_classes"])
        for d, kind in enumerate(det_type):
            score = float(im["det_scores"][d])
            if kind in ("tp", "ignored") or (kind in found and found[kind]["score"] >= score):
                continue
            g = int(det_fix[d]) if det_fix[d] >= 0 else (int(np.argmax(ious[d])) if N else -1)
            if kind == "bkg" and (g < 0 or ious[d, g] <= 0):
                g = -1
            found[kind] = _example(im, d, g, ious, score)
        for g in np.flatnonzero(gt_missed):
            area = _area(im["gt_boxes"][g])
            if "missed" in found and found["missed"]["area"] >= area:
                continue
            d = int(np.argmax(ious[:, g])) if len(det_type) and ious[:, g].max() > 0 else -1
            found["missed"] = {**_example(im, d, int(g), ious,
                                          float(im["det_scores"][d]) if d >= 0 else None),
                               "area": area}
    return found


def _area(box) -> float:
    return float(box[2]) * float(box[3])


def _example(im: dict, d: int, g: int, ious: np.ndarray, score) -> dict:
    """One detection ``d`` and gt ``g`` of image ``im`` (-1: none) as an example entry."""
    return {"image_id": im["image_id"], "score": score,
            "det_box": [float(v) for v in im["det_boxes"][d]] if d >= 0 else None,
            "det_class": int(im["det_classes"][d]) if d >= 0 else None,
            "gt_box": [float(v) for v in im["gt_boxes"][g]] if g >= 0 else None,
            "gt_class": int(im["gt_classes"][g]) if g >= 0 else None,
            "iou": float(ious[d, g]) if d >= 0 and g >= 0 else 0.0}


NAMES = {"cls": "classification", "loc": "localization", "both": "cls and loc",
         "dupe": "duplicate", "bkg": "background", "missed": "missed gt"}


def format_breakdown(b: dict) -> str:
    """A breakdown as a small text table: one row per error type (count, dAP), then FP and FN."""
    c = b["counts"]
    ap = "AP50" if b["t_f"] == 0.5 else f"AP{100 * b['t_f']:g}"  # "ap50" holds the AP at t_f
    title = (f"TIDE errors, {b['iou_type']}: {ap} {b['ap50']:.1f}  "
             f"({c['tp']} TP of {c['detections']} detections, {c['gt']} gt; "
             f"t_f = {b['t_f']}, t_b = {b['t_b']})")
    rows = [[kind, NAMES[kind], str(c[kind]), f"{b['dAP'][kind]:.2f}"] for kind in ERROR_TYPES]
    rows += [["FP", "all false positives", str(sum(c[k] for k in FP_TYPES)), f"{b['dAP_fp']:.2f}"],
             ["FN", "all unmatched gt", str(c["gt"] - c["tp"]), f"{b['dAP_fn']:.2f}"]]
    return title + "\n" + format_rows(["type", "", "count", "dAP"], rows, text_columns=2)


# ------------------------------------------------------------------------------------------------
# Checking the input: one sentence naming the problem, before pycocotools sees it
# ------------------------------------------------------------------------------------------------

def geometry_problem(item: dict, key: str) -> str | None:
    """What is wrong with a box (4 numbers x, y, w, h) or a segmentation (RLE dict with "counts"
    and "size", or a list of polygons), or None."""
    g = item[key]
    if key == "bbox":
        ok = isinstance(g, list) and len(g) == 4 and all(isinstance(v, (int, float)) for v in g)
        return None if ok else f"bbox {str(g)[:40]} is not 4 numbers [x, y, w, h]"
    ok = (isinstance(g, dict) and "counts" in g and "size" in g) or isinstance(g, list)
    return None if ok else "segmentation is neither an RLE {counts, size} nor polygons"


def check_ground_truth(coco_gt: dict, iou_type: str = "bbox") -> None:
    """Raise ValueError (one sentence) unless ``coco_gt`` is COCO ground truth with what
    ``iou_type`` needs: {"images": [{id, height, width}], "annotations": [{image_id, category_id,
    bbox or segmentation}], "categories": [{id, name}]}."""
    if iou_type not in GEOMETRY:
        raise ValueError(f"iou_type must be 'bbox' or 'segm', not {iou_type!r}")
    if not isinstance(coco_gt, dict) or not all(
            isinstance(coco_gt.get(k), list) for k in ("images", "annotations", "categories")):
        raise ValueError("not COCO ground truth: expected an object with lists 'images', "
                         "'annotations' and 'categories'")
    needed = ("id", "height", "width") if iou_type == "segm" else ("id",)  # polygons need the size
    for i, img in enumerate(coco_gt["images"]):
        missing = [k for k in needed if not isinstance(img, dict) or k not in img]
        if missing:
            raise ValueError(f"image {i} has no {missing[0]!r}")
    for i, cat in enumerate(coco_gt["categories"]):
        if not isinstance(cat, dict) or "id" not in cat:
            raise ValueError(f"category {i} has no 'id'")
    image_ids = {img["id"] for img in coco_gt["images"]}
    category_ids = {cat["id"] for cat in coco_gt["categories"]}
    key = GEOMETRY[iou_type]
    for i, ann in enumerate(coco_gt["annotations"]):
        missing = [k for k in ("image_id", "category_id", key)
                   if not isinstance(ann, dict) or k not in ann]
        if missing:
            hint = " (no masks: evaluate boxes, 'bbox')" if missing[0] == "segmentation" else ""
            raise ValueError(f"annotation {i} has no {missing[0]!r}{hint}")
        if ann["image_id"] not in image_ids:
            raise ValueError(f"annotation {i} is on image id {ann['image_id']!r}, not in 'images'")
        if ann["category_id"] not in category_ids:
            raise ValueError(f"annotation {i} has category id {ann['category_id']!r}, "
                             f"not in 'categories'")
        problem = geometry_problem(ann, key)
        if problem:
            raise ValueError(f"annotation {i}: {problem}")


def check_results(detections: list, coco_gt: dict, iou_type: str = "bbox") -> None:
    """Raise ValueError (one sentence) unless ``detections`` is a COCO results list, [{image_id,
    category_id, score, bbox (x, y, w, h) or segmentation (RLE)}], on images of ``coco_gt``."""
    if not isinstance(detections, list):
        raise ValueError("not COCO results: expected a list of detections")
    key = GEOMETRY[iou_type]
    for i, det in enumerate(detections):
        missing = [k for k in ("image_id", "category_id", "score", key)
                   if not isinstance(det, dict) or k not in det]
        if missing:
            raise ValueError(f"not COCO results: detection {i} has no {missing[0]!r}")
        problem = geometry_problem(det, key)
        if problem or not isinstance(det["score"], (int, float)):
            raise ValueError(f"detection {i}: {problem or 'its score is not a number'}")
    unknown = {d["image_id"] for d in detections} - {img["id"] for img in coco_gt["images"]}
    if unknown:
        raise ValueError(f"detections on image ids that the ground truth does not have: "
                         f"{sorted(unknown, key=str)[:5]}")
    if iou_type == "segm":  # pycocotools gives IoU -1 to masks of two sizes, silently
        sizes = {img["id"]: [img["height"], img["width"]] for img in coco_gt["images"]}
        for i, det in enumerate(detections):
            seg = det["segmentation"]
            if isinstance(seg, dict) and list(seg["size"]) != sizes[det["image_id"]]:
                raise ValueError(f"detection {i}: mask size {list(seg['size'])} is not the "
                                 f"[height, width] of image {det['image_id']}, "
                                 f"{sizes[det['image_id']]}")
