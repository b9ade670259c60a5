"""The Region Proposal Network (Faster R-CNN sec. 3.1): proposals from the shared feature map.

A small network slides over the backbone's feature map: a 3x3 conv, then two sibling 1x1 convs
that give, for each of the A anchors at each location, an *objectness* score (object or not) and
4 box deltas that move the anchor onto the object (Faster R-CNN Eq. 2, the box coding of R-CNN).

Shape shorthand: N images, C channels, H x W the map, A anchors per location,
M = H * W * A anchors per image, G ground-truth boxes, P proposals.
Naming: ``pred_*`` the network's outputs, ``gt_*`` the targets made from the ground truth.

    feature (N, C, H, W) --RPNHead--> objectness (N, A, H, W), deltas (N, 4A, H, W)
                         --flatten_rpn_outputs--> (N, M), (N, M, 4)   in grid_anchors' order
    train: assign_anchors (labels 1 / 0 / -1, sec. 3.1.2) -> sample_anchors (256, <= 50 % positive)
           -> rpn_loss (Eq. 1)
    both:  propose: top-N by objectness, decode, clip, drop tiny boxes, NMS 0.7, top-N (sec. 3.3)

``RegionProposalNetwork`` puts these together behind the proposer call that stage 2's detector
makes (``FastRCNN``): ``rpn(features, image_sizes, images, targets) -> (proposals, losses, None)``.
Stage 4 subclasses it to run the same head on every FPN level (``stages.mask_rcnn.fpn``).

The proposals are detached: the detector's loss does not flow back into the proposal *coordinates*
(the "approximate joint training" of sec. 3.2); it does flow into the shared backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stages.fast_rcnn.sampling import random_order
from stages.faster_rcnn.anchors import anchor_shapes, grid_anchors
from stages.ops import BoxCoder, box_iou, clip_boxes_to_image, kernels, remove_small_boxes


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then 1x1 objectness (A outputs) and 1x1 box deltas (4A) per location.

    The paper (sec. 3.1) feeds a 512-d (VGG16) intermediate layer; ours keeps the map's width.
    One sigmoid score per anchor (the paper's "k scores with logistic regression" option) rather
    than a 2-way softmax: the same thing with half the outputs.
    """

    def __init__(self, in_channels: int, num_anchors: int, mid_channels: int | None = None):
        super().__init__()
        mid = mid_channels or in_channels
        self.conv = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.objectness = nn.Conv2d(mid, num_anchors, 1)
        self.deltas = nn.Conv2d(mid, 4 * num_anchors, 1)
        for layer in (self.conv, self.objectness, self.deltas):  # sec. 3.1.3: N(0, 0.01)
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.conv(feature))  # (N, mid, H, W)
        return self.objectness(x), self.deltas(x)  # (N, A, H, W), (N, 4A, H, W)


def flatten_rpn_outputs(objectness: torch.Tensor, deltas: torch.Tensor):
    """(N, A, H, W), (N, 4A, H, W) -> (N, H*W*A), (N, H*W*A, 4): one row per anchor, in the order
    of ``grid_anchors`` (location-major, then the A shapes)."""
    N, A, H, W = objectness.shape
    objectness = objectness.permute(0, 2, 3, 1).reshape(N, -1)  # (N, H, W, A) -> (N, M)
    deltas = deltas.view(N, A, 4, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, 4)  # (N, M, 4)
    return objectness, deltas


def inside_image(anchors: torch.Tensor, image_size: tuple[int, int], allowed: float = 0.0):
    """[M] bool: the anchors lying inside the image (up to ``allowed`` pixels over its border)."""
    h, w = image_size
    return ((anchors[:, 0] >= -allowed) & (anchors[:, 1] >= -allowed)
            & (anchors[:, 2] < w + allowed) & (anchors[:, 3] < h + allowed))


def assign_anchors(anchors: torch.Tensor, gt_boxes: torch.Tensor, pos_iou: float = 0.7,
                   neg_iou: float = 0.3, valid: torch.Tensor | None = None):
    """Label every anchor (sec. 3.1.2): ``(labels [M], matched_gt [M, 4])``.

    labels: 1 positive, 0 negative, -1 ignored (neither; contributes no loss).
      positive  (i) the anchor(s) with the highest IoU for some ground-truth box (even if < 0.7:
                    so that every object has at least one positive anchor), or
                (ii) IoU >= ``pos_iou`` (0.7) with some ground-truth box;
      negative  IoU < ``neg_iou`` (0.3) with every ground-truth box;
      ignored   the rest, and the anchors outside ``valid`` (cross-boundary ones if the paper's
                rule is on, sec. 3.3).
    matched_gt: the best-overlapping ground-truth box of each anchor (used for positives only).
    """
    M = len(anchors)
    valid = torch.ones(M, dtype=torch.bool, device=anchors.device) if valid is None else valid
    labels = torch.full((M,), -1, dtype=torch.int64, device=anchors.device)
    if len(gt_boxes) == 0:  # no objects: every valid anchor is negative
        labels[valid] = 0
        return labels, torch.zeros_like(anchors)
    iou = box_iou(gt_boxes, anchors)  # (G, M)
    iou[:, ~valid] = -1.0  # invalid anchors can be nobody's best
    max_iou, best_gt = iou.max(dim=0)  # (M,): each anchor's best ground truth
    labels[(max_iou >= 0) & (max_iou < neg_iou)] = 0
    labels[max_iou >= pos_iou] = 1  # rule (ii)
    best_of_gt = iou.max(dim=1, keepdim=True).values  # (G, 1): each ground truth's best IoU
    is_best = (iou == best_of_gt) & (best_of_gt > 0)  # (G, M); ties all count (py-faster-rcnn)
    labels[is_best.any(dim=0)] = 1  # rule (i)
    labels[~valid] = -1
    return labels, gt_boxes[best_gt]


def sample_anchors(labels: torch.Tensor, num: int = 256, pos_fraction: float = 0.5,
                   generator: torch.Generator | None = None):
    """Pick the anchors one image's loss uses (sec. 3.1.3): ``(pos_idx, neg_idx)``.

    Up to ``pos_fraction * num`` positives at random, then negatives up to ``num`` in all ("if
    there are fewer than 128 positive samples in an image, we pad the mini-batch with negative
    ones"). Randomness from ``generator``, the image's own in training, else torch's global one.
    """
    pos = torch.nonzero(labels == 1).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    n_pos = min(int(num * pos_fraction), len(pos))
    n_neg = min(num - n_pos, len(neg))
    pos = pos[random_order(len(pos), pos.device, generator)[:n_pos]]
    neg = neg[random_order(len(neg), neg.device, generator)[:n_neg]]
    return pos, neg


def rpn_loss(pred_objectness: torch.Tensor, pred_deltas: torch.Tensor, samples: list,
             gt_deltas: list, n_reg: int, loss_lambda: float = 1.0, beta: float = 1 / 9) -> dict:
    """Faster R-CNN Eq. 1 over a batch:

        L = 1/N_cls sum_i L_cls(p_i, p_i*) + lambda 1/N_reg sum_i p_i* L_reg(t_i, t_i*)

    pred_objectness (N, M) logits, pred_deltas (N, M, 4) the t_i; per image ``samples[n] =
    (pos_idx, neg_idx)`` and ``gt_deltas[n]`` [M, 4] the t_i* (encoded against the anchors).
    The paper's lambda = 10 with N_reg = 2400, N_cls = 256 makes lambda / N_reg ~ 1 / N_cls;
    our 32 x 32 map (C3 of the 2x image) has N_reg = 1024, so lambda = 4 keeps that balance.
    """
    logits, p_star, t, t_star = [], [], [], []
    for n, (pos, neg) in enumerate(samples):
        idx = torch.cat([pos, neg])  # the 256 sampled anchors i of image n
        logits.append(pred_objectness[n, idx])
        p_star.append(torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).float())  # p_i*
        t.append(pred_deltas[n, pos])  # only p_i* = 1 anchors regress
        t_star.append(gt_deltas[n][pos])
    logits, p_star = torch.cat(logits), torch.cat(p_star)
    n_cls = max(len(p_star), 1)  # N_cls: the mini-batch size, 256 per image
    # 1/N_cls sum_i L_cls(p_i, p_i*): log loss, object vs. not object
    loss_cls = F.binary_cross_entropy_with_logits(logits, p_star, reduction="sum") / n_cls
    # lambda 1/N_reg sum_i p_i* L_reg(t_i, t_i*): L_reg = smooth L1 (R(t - t*), Fast R-CNN Eq. 3),
    # N_reg = the number of anchor locations (the paper's ~2400 on a 40 x 60 map)
    loss_reg = F.smooth_l1_loss(torch.cat(t), torch.cat(t_star), beta=beta, reduction="sum") / n_reg
    return {"loss_objectness": loss_cls, "loss_rpn_box": loss_lambda * loss_reg}


@torch.no_grad()
def propose(pred_objectness: torch.Tensor, pred_deltas: torch.Tensor, anchors: torch.Tensor,
            image_sizes: list[tuple[int, int]], box_coder: BoxCoder, pre_nms_top_n: int,
            post_nms_top_n: int, nms_thresh: float = 0.7, min_size: float = 1.0,
            nms_kernel: str = "ours"):
    """The proposal layer (sec. 3.3), per image: ``(boxes list of [P, 4], scores list of [P])``.

    1. keep the ``pre_nms_top_n`` anchors with the highest objectness (cheap, before decoding),
    2. move them by their deltas (decode), clip to the image, drop boxes under ``min_size`` px,
    3. NMS at ``nms_thresh`` (0.7: removes near-duplicates, keeps neighbours),
    4. keep the ``post_nms_top_n`` best (NMS returns them sorted by score).
    Scores are objectness probabilities (sigmoid).
    """
    nms = kernels(nms_kernel).nms
    boxes_out, scores_out = [], []
    for logits, d, size in zip(pred_objectness, pred_deltas, image_sizes):  # (M,), (M, 4), (h, w)
        k = min(pre_nms_top_n, len(logits))
        top_logits, idx = logits.topk(k)  # sorted, best first
        boxes = clip_boxes_to_image(box_coder.decode(d[idx], anchors[idx]), size)  # (k, 4)
        scores = torch.sigmoid(top_logits)
        keep = remove_small_boxes(boxes, min_size)
        boxes, scores = boxes[keep], scores[keep]
        keep = nms(boxes, scores, nms_thresh)[:post_nms_top_n]
        boxes_out.append(boxes[keep])
        scores_out.append(scores[keep])
    return boxes_out, scores_out


class RegionProposalNetwork(nn.Module):
    """The RPN on one feature map: ``rpn(features, image_sizes, images, targets=None)`` ->
    ``(proposals list of N [P_i, 4], losses, None)``; losses only when given targets.

    ``stride``: the map's stride in image pixels (4: C3 of the 2x image); the A = 9 anchor shapes
    (``cfg.anchor_sizes`` x ``cfg.anchor_ratios``) sit at every location.
    """

    def __init__(self, in_channels: int, stride: float, cfg, sizes: tuple | None = None):
        super().__init__()
        self.stride, self.cfg = stride, cfg
        sizes = tuple(cfg.anchor_sizes) if sizes is None else sizes  # FPN passes one size per level
        self.base_anchors = anchor_shapes(sizes, cfg.anchor_ratios)  # (A, 4)
        self.head = RPNHead(in_channels, len(self.base_anchors))
        # t_x = (x - x_a) / w_a, t_y = (y - y_a) / h_a, t_w = log(w / w_a), t_h = log(h / h_a)
        # (Eq. 2), unnormalised: weights 1
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))

    def score(self, feature: torch.Tensor):
        """The head on the map, and its anchors: ``(pred_objectness (N, M), pred_deltas (N, M, 4),
        anchors (M, 4), locations H * W)``."""
        pred_objectness, pred_deltas = flatten_rpn_outputs(*self.head(feature))  # (N, M), (N, M, 4)
        H, W = feature.shape[-2:]
        anchors = grid_anchors((H, W), self.stride, self.base_anchors).to(feature.device)  # (M, 4)
        return pred_objectness, pred_deltas, anchors, H * W

    def forward(self, features, image_sizes, images=None, targets: list[dict] | None = None):
        pred_objectness, pred_deltas, anchors, locations = self.score(features)
        cfg = self.cfg
        pre, post = ((cfg.rpn_pre_nms_train, cfg.rpn_post_nms_train) if self.training
                     else (cfg.rpn_pre_nms_test, cfg.rpn_post_nms_test))
        proposals, _ = propose(pred_objectness.detach(), pred_deltas.detach(), anchors, image_sizes,
                               self.box_coder, pre, post, cfg.rpn_nms_thresh, cfg.rpn_min_size, cfg.nms_kernel)
        losses = {}
        if targets is not None:
            losses = self.losses(pred_objectness, pred_deltas, anchors, locations, image_sizes, targets)
        return proposals, losses, None

    def losses(self, pred_objectness, pred_deltas, anchors, locations: int, image_sizes,
               targets: list[dict]) -> dict:
        """Label the anchors (sec. 3.1.2), sample 256 per image (3.1.3), Eq. 1."""
        cfg = self.cfg
        samples, gt_deltas = [], []
        for t, size in zip(targets, image_sizes):
            valid = inside_image(anchors, size) if cfg.ignore_cross_boundary else None
            labels, matched = assign_anchors(anchors, t["boxes"], cfg.rpn_pos_iou, cfg.rpn_neg_iou, valid)
            samples.append(sample_anchors(labels, cfg.rpn_batch, cfg.rpn_pos_fraction,
                                          t.get("generator")))
            gt_deltas.append(self.box_coder.encode(matched, anchors))  # t_i*, (M, 4)
        n_reg = locations * len(targets)  # N_reg: anchor locations of the batch
        return rpn_loss(pred_objectness, pred_deltas, samples, gt_deltas, n_reg, cfg.rpn_lambda,
                        cfg.rpn_beta)
