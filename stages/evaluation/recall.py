"""Proposal recall: how much of the ground truth the region proposals cover, before any detector.

A detector can only find an object that some proposal covers, so the first lesson of R-CNN's
selective search (Girshick et al. 2014, sec. 2.1) and the first check of Faster R-CNN's RPN
(Ren et al. 2015, sec. 4.1, "Analysis of Recall-to-IoU") is recall: the fraction of ground-truth
objects that some proposal covers at IoU >= 0.5 / 0.7, against the number of proposals per image.

Shape shorthand
---------------
    P  proposals of one image (boxes [P, 4], in the proposer's own order: selective search's, or
       by objectness for a learned proposer)    N  ground-truth boxes of one image, gt_boxes [N, 4]
    Boxes are (x1, y1, x2, y2) absolute pixels.

Map of this module
------------------
    proposal_recall   {IoU threshold: {n proposals: recall}} over a list of images
"""

from __future__ import annotations

import numpy as np
import torch

from stages.ops import box_iou


def proposal_recall(proposals: list[torch.Tensor], gt_boxes: list[torch.Tensor],
                    top_n: tuple = (10, 25, 50, 100, 200, 300, 1000),
                    iou_thresholds: tuple = (0.5, 0.7)) -> dict:
    """Recall of ground truth by the first ``n`` proposals of each image, for each n and IoU.

    A ground-truth box counts as recalled at threshold t when some proposal among the first n has
    IoU >= t with it. Proposals are taken in the order given (selective search's own order; for a
    learned proposer, by objectness). Returns ``{t: {n: recall}}`` and the mean proposals/image
    under the key ``"mean_proposals"``.
    """
    result: dict = {t: {} for t in iou_thresholds}
    n_gt = sum(len(g) for g in gt_boxes)
    for n in top_n:
        best = [box_iou(g, p[:n]).max(dim=1).values if len(p) and len(g) else torch.zeros(len(g))
                for p, g in zip(proposals, gt_boxes)]  # per image: best IoU of each gt, [N]
        best = torch.cat(best) if best else torch.zeros(0)
        for t in iou_thresholds:
            result[t][n] = float((best >= t).sum()) / max(n_gt, 1)
    result["mean_proposals"] = float(np.mean([len(p) for p in proposals])) if proposals else 0.0
    return result
