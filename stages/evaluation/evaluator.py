"""The evaluation loop shared by every stage: a whole model on a dataset -> COCO AP and timing.

``evaluate(model, dataset)`` runs the model in ``eval()`` mode on the first images of a dataset,
times each call, and scores the detections with pycocotools (``coco.py``) against ground truth
built from the same items, in the same pixel frame. What the APs mean is in ``ap.py``.

The model call is the one every stage shares: ``model(images)`` with a list of N images
float [3, H, W] returns N dicts with
    pred boxes   "boxes" [D, 4] (x1, y1, x2, y2) absolute pixels, "labels" [D], "scores" [D]
    pred masks   "masks" [D, 1, H, W] or [D, H, W] (Mask R-CNN only)
    timing       "timing" {part: seconds} (optional): how long each part of the call took, e.g.
                 "proposals"; a cached part also reports "cache_read" (see `evaluate`)

Map of this module
------------------
    evaluate   the loop: warm-up, timed model calls, COCO ground truth and results, coco_metrics
               of boxes (and masks), ms per image split into proposals and network
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch
from tqdm import tqdm

from stages.evaluation.coco import (coco_from_entries, coco_metrics, coco_scores,
                                    detections_to_coco, explain_missing, gt_entries, image_id_of)
from stages.evaluation.errors import breakdown
from stages.devices import synchronize


def evaluate(model, dataset, device="cpu", max_images: int | None = None, batch_size: int = 1,
             progress: bool = False, warmup: int = 1, analysis: bool = True) -> dict:
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
        detections   the COCO results (one dict per detection: image_id, category_id, bbox xywh,
                     score, segmentation RLE for masks, file_name): what ``detections.json`` holds
        ground_truth the COCO ground truth they were scored against (images, annotations,
                     categories), in the same pixel frame (after any ``--long-side`` resize)
        per_class    {"box": {class name: {"AP", "AP50"}}, "mask": ... or absent}
                     (``coco.per_class_ap``); {} without ``analysis``
        errors       {"box": TIDE's breakdown, "mask": ... or absent} (``errors.breakdown``:
                     the AP50 each error type costs), "box_t75": the boxes' at IoU 0.75 (what
                     each costs AP75); {} without ``analysis``

    ``analysis=False`` leaves out the per-class APs and the error breakdown (a few seconds on a
    set of a hundred images): the validation scores taken during training do without them.

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
            for i, (image, target) in enumerate(items, start):
                entry, anns = gt_entries(tuple(image.shape[-2:]), target, len(gt_annotations) + 1)
                if hasattr(dataset, "file_name"):  # so that a reader finds the photo again
                    entry["file_name"] = dataset.file_name(i)
                gt_images.append(entry)
                gt_annotations.extend(anns)
            images = [image.to(device) for image, _ in items]
            synchronize(device)
            t0 = time.perf_counter()
            outputs = model(images)
            synchronize(device)
            seconds += time.perf_counter() - t0
            for i, ((_, target), output) in enumerate(zip(items, outputs), start):
                found = detections_to_coco(output, image_id_of(target))
                if hasattr(dataset, "file_name"):
                    for d in found:
                        d["file_name"] = dataset.file_name(i)
                detections.extend(found)
                any_masks |= output.get("masks") is not None
                timing = output.get("timing") or {}
                for part, s in timing.items():
                    part_seconds[part] += float(s)
                if "cache_read" in timing:  # charge the recorded computation, not the file read
                    seconds += float(timing.get("proposals", 0.0)) - float(timing["cache_read"])
            bar.update(len(items))

    coco_gt = coco_from_entries(gt_images, gt_annotations, dataset.class_names)
    masked = [d for d in detections if "segmentation" in d]

    def score(dets: list[dict], iou_type: str) -> tuple[dict, dict | None]:
        """COCO's metrics and, with the analysis, each class's AP from the same COCOeval run."""
        if analysis:
            return coco_scores(coco_gt, dets, iou_type)
        return coco_metrics(coco_gt, dets, iou_type), None

    box, box_per_class = score(detections, "bbox")
    mask, mask_per_class = score(masked, "segm") if any_masks else (None, None)
    ms_per_image = 1000.0 * seconds / n
    timing_ms = {part: 1000.0 * s / n for part, s in part_seconds.items() if part != "cache_read"}
    ms_proposals = timing_ms.get("proposals", 0.0)
    notes = explain_missing(box) + [s for s in explain_missing(mask or {})
                                    if s not in explain_missing(box)]
    per_class, errors = {}, {}
    if analysis:
        per_class["box"] = box_per_class
        errors["box"] = breakdown(coco_gt.dataset, detections, "bbox")
        # the same at IoU 0.75: which errors cost AP75 (a box of IoU 0.5-0.75 is then "loc")
        errors["box_t75"] = breakdown(coco_gt.dataset, detections, "bbox", t_f=0.75)
        if mask is not None:
            per_class["mask"] = mask_per_class
            errors["mask"] = breakdown(coco_gt.dataset, masked, "segm")
    return {"box": box, "mask": mask, "ms_per_image": ms_per_image, "ms_proposals": ms_proposals,
            "ms_network": ms_per_image - ms_proposals, "timing_ms": timing_ms, "n_images": n,
            "notes": notes, "detections": detections, "ground_truth": coco_gt.dataset,
            "per_class": per_class, "errors": errors}
