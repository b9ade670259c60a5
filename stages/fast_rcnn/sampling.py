"""Which RoIs train the head, and what each one should predict (Fast R-CNN sec. 2.3).

For every image of a mini-batch, the ground-truth boxes join its proposals, then:

    u (label)  = the class of the best-overlapping gt box if IoU >= 0.5  (foreground),
                 0 (background) if the best IoU is in [lo, 0.5): the paper's lo = 0.1,
                 ours 0 (torchvision's; FastRCNNConfig.bg_iou_lo says why)
    sample     up to 25 % of R foreground RoIs, the rest background, at random
    v (target) = the box-regression target t of each RoI towards its matched gt box
                 (R-CNN Appendix C; encoded with BoxCoder, whose weights normalise t)

Shape shorthand: P proposals (+ G gt boxes) of one image, S sampled RoIs.
Reused as is by Faster R-CNN (stage 3, on RPN proposals) and Mask R-CNN (stage 4).
"""

from __future__ import annotations

import torch

from stages.ops import match_to_ground_truth


def random_order(n: int, device, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of 0..n-1 on ``device``, drawn from ``generator`` (an image's own,
    ``target["generator"]`` in training) or, without one, from torch's global generator."""
    return torch.randperm(n, generator=generator).to(device)


def sample_rois(proposals: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor,
                num: int = 64, fg_fraction: float = 0.25, fg_iou: float = 0.5,
                bg_iou_lo: float = 0.1, bg_iou_hi: float = 0.5, return_index: bool = False,
                generator: torch.Generator | None = None):
    """Sample ``num`` RoIs of one image: ``(rois [S, 4], labels [S], matched_gt [S, 4])``, plus
    the index [S] of each RoI's matched gt box with ``return_index`` (for stage 4's mask targets).

    Ground-truth boxes are added to the proposals first (they are the best foreground). Fewer
    than ``fg_fraction * num`` foreground RoIs? All of them are taken and background fills up.
    Background comes from IoU in [bg_iou_lo, bg_iou_hi); if that range has too few, from
    [0, bg_iou_hi) (the paper's range is a heuristic, and our images have ~100 proposals, not
    2000). Randomness comes from ``generator``, the image's own in training (``batches.SeededItems``:
    the draws do not depend on the other images of the batch), else from torch's global one.
    """
    proposals = torch.cat([proposals, gt_boxes])  # (P + G, 4)
    max_iou, gt_index, best_label = match_to_ground_truth(proposals, gt_boxes, gt_labels)  # (P+G,) each
    labels = torch.where(max_iou >= fg_iou, best_label, torch.zeros_like(best_label))  # u: 0 = background
    matched_gt = gt_boxes[gt_index] if len(gt_boxes) else torch.zeros_like(proposals)  # (P+G, 4)
    fg = torch.nonzero(labels > 0).flatten()
    bg = torch.nonzero((labels == 0) & (max_iou < bg_iou_hi) & (max_iou >= bg_iou_lo)).flatten()
    n_fg = min(int(round(fg_fraction * num)), len(fg))
    if len(bg) < num - n_fg:  # too few "hard" backgrounds: widen to [0, bg_iou_hi)
        bg = torch.nonzero((labels == 0) & (max_iou < bg_iou_hi)).flatten()
    n_bg = min(num - n_fg, len(bg))
    fg = fg[random_order(len(fg), fg.device, generator)[:n_fg]]
    bg = bg[random_order(len(bg), bg.device, generator)[:n_bg]]
    keep = torch.cat([fg, bg])
    out = (proposals[keep], labels[keep], matched_gt[keep])
    return out + (gt_index[keep],) if return_index else out


def sample_batch(proposals: list[torch.Tensor], targets: list[dict], cfg, box_coder):
    """``sample_rois`` for every image of a mini-batch, and each RoI's regression target v.

    proposals: list of N [P_i, 4]; targets: the images' dicts ("boxes", "labels"); ``cfg``: a stage
    config with the sampling fields (``rois_per_image``, ``fg_fraction``, ``fg_iou``, ``bg_iou_lo``,
    ``bg_iou_hi``); ``box_coder`` encodes v (normalised by its weights, sec. 2.3).
    Returns ``(rois list of N [S_i, 4], labels [S], box_targets [S, 4], gt_index list of N [S_i])``;
    ``gt_index`` (each RoI's matched gt box) is what stage 4 needs for its mask targets.
    """
    rois, labels, box_targets, gt_index = [], [], [], []
    for p, t in zip(proposals, targets):
        r, u, gt, g = sample_rois(p, t["boxes"], t["labels"], cfg.rois_per_image, cfg.fg_fraction,
                                  cfg.fg_iou, cfg.bg_iou_lo, cfg.bg_iou_hi, return_index=True,
                                  generator=t.get("generator"))
        rois.append(r)
        labels.append(u)
        box_targets.append(box_coder.encode(gt, r))  # v: normalised targets
        gt_index.append(g)
    return rois, torch.cat(labels), torch.cat(box_targets), gt_index
