"""Evaluation shared by every stage: COCO-style AP, the evaluation loop, one result record, tables.

The same evaluator scores all four stages and torchvision's peers, so that their numbers can stand
side by side. One concept per module:

    ap.py          AP by hand (the area under the precision-recall curve): match_detections ->
                   precision_recall -> average_precision, hand_ap (what COCO's AP, AP50, AP75,
                   APs/m/l mean is explained here)
    coco.py        the pycocotools bridge: dataset items and model outputs -> COCO ground truth
                   and results in memory, coco_metrics (percent, -1 = undefined), explain_missing
    evaluator.py   evaluate(model, dataset): the loop, with timing (proposals / network)
    result.py      Result: what one run measured, saved as metrics.json (ResultFileError)
    tables.py      the one table formatter (format_rows) and the table of result records
    recall.py      proposal_recall: how much ground truth the region proposals cover

The report of ``python -m stages.compare`` (rows, ratios between generations, comparison.json /
.csv / .md) lives beside that command, in ``stages/compare_report.py``.

Shape shorthand and naming (all modules): N ground-truth objects and D detections in one image,
H x W the image size; ``pred_*`` model outputs (pred_boxes [D, 4], pred_scores [D]), ``gt_*``
dataset targets (gt_boxes [N, 4]); boxes (x1, y1, x2, y2) in absolute pixels. APs in percent.

    from stages.evaluation import evaluate, Result, format_table
    result = Result.from_evaluation(evaluate(model, val_set), stage="rcnn", ...)
"""

from stages.evaluation.ap import (RECALL_POINTS, average_precision, hand_ap, interpolated_precision,
                                  match_detections, pooled_precision_recall, precision_recall)
from stages.evaluation.coco import (METRIC_NAMES, coco_from_entries, coco_ground_truth,
                                    coco_metrics, detections_to_coco, explain_missing,
                                    gt_entries, image_id_of, mask_to_rle, xyxy_to_xywh)
from stages.evaluation.evaluator import evaluate
from stages.evaluation.recall import proposal_recall
from stages.evaluation.result import Result, ResultFileError
from stages.evaluation.tables import (align_columns, format_cell, format_count,
                                      format_rows, format_table, missing_explanations,
                                      result_cells)

__all__ = [
    # ap.py
    "RECALL_POINTS", "average_precision", "hand_ap", "interpolated_precision", "match_detections",
    "pooled_precision_recall",
    "precision_recall",
    # coco.py
    "METRIC_NAMES", "coco_from_entries", "coco_ground_truth", "coco_metrics", "detections_to_coco",
    "explain_missing", "gt_entries", "image_id_of", "mask_to_rle", "xyxy_to_xywh",
    # evaluator.py
    "evaluate",
    # recall.py
    "proposal_recall",
    # result.py
    "Result", "ResultFileError",
    # tables.py
    "align_columns", "format_cell", "format_count", "format_rows",
    "format_table", "missing_explanations", "result_cells",
]
