"""The Fast R-CNN head: pool each RoI, two fully connected layers, two sibling outputs.

Fast R-CNN sec. 2 (Figure 1): "each RoI is pooled into a fixed-size feature map and then mapped
to a feature vector by fully connected layers. The network has two output vectors per RoI:
softmax probabilities and per-class bounding-box regression offsets."

Shape shorthand: N images, C channels of the feature map, R RoIs (all images), K object classes
(K + 1 with background), D the pooled feature length (C * 7 * 7 for RoI pooling, C * 21 for SPP).

    features (N, C, H/8, W/8), rois list of N [R_i, 4]
      -> pooler            (R, D)             RoIPool | SPPPool (here), RoIAlign (stage 4)
      -> fc6, fc7 + ReLU   (R, fc_dim)
      -> cls_score         (R, K + 1)         p = softmax: the class probabilities
      -> bbox_pred         (R, 4 (K + 1))     t^k: one box offset per class (class-specific)

Losses and detection are free functions (``fast_rcnn_loss``, ``detect``) on explicit tensors.
Stage 3 reuses this head unchanged; stage 4 passes another pooler (RoIAlign).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stages.ops import BoxCoder, clip_boxes_to_image, kernels, remove_small_boxes, spp_output_dim, spp_pool


class RoIPool(nn.Module):
    """RoI max pooling (sec. 2.1) of each RoI into (C, size, size), flattened to (R, C size^2)."""

    def __init__(self, channels: int, size: int = 7, spatial_scale: float = 1 / 8, kernel: str = "ours"):
        super().__init__()
        self.size, self.spatial_scale, self.kernel = size, spatial_scale, kernel
        self.out_dim = channels * size * size
        self.roi_pool = kernels(kernel).roi_pool

    def forward(self, features, rois: list[torch.Tensor]) -> torch.Tensor:
        return self.roi_pool(features, rois, self.size, self.spatial_scale).flatten(1)  # (R, C*size*size)


class SPPPool(nn.Module):
    """SPP-net's spatial pyramid of each RoI: levels n x n, concatenated -> (R, C sum n^2)."""

    def __init__(self, channels: int, levels: tuple = (4, 2, 1), spatial_scale: float = 1 / 8,
                 kernel: str = "ours"):
        super().__init__()
        self.levels, self.spatial_scale = tuple(levels), spatial_scale
        self.out_dim = spp_output_dim(channels, self.levels)
        self.roi_pool = kernels(kernel).roi_pool

    def forward(self, features, rois: list[torch.Tensor]) -> torch.Tensor:
        return spp_pool(features, rois, self.levels, self.spatial_scale, pool=self.roi_pool)


def build_pooler(cfg, channels: int, stride: int) -> nn.Module:
    """``--pool roi``: RoI pooling to ``cfg.pool_size`` x ``cfg.pool_size``; ``--pool spp``: the
    ``cfg.spp_levels`` pyramid; on a map of ``channels`` channels and the given stride."""
    if cfg.pool == "roi":
        return RoIPool(channels, cfg.pool_size, 1.0 / stride, cfg.pool_kernel)
    if cfg.pool == "spp":
        return SPPPool(channels, cfg.spp_levels, 1.0 / stride, cfg.pool_kernel)
    raise ValueError(f"--pool {cfg.pool!r}: expected 'roi' or 'spp'")


class FastRCNNHead(nn.Module):
    """pooler -> fc6 -> fc7 -> (cls_score, bbox_pred). ``num_classes`` = K, background excluded."""

    def __init__(self, pooler: nn.Module, num_classes: int, fc_dim: int = 256):
        super().__init__()
        self.pooler = pooler
        self.fc6 = nn.Linear(pooler.out_dim, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, 4 * (num_classes + 1))
        # the paper's initialisation of the new layers (sec. 2.2): N(0, 0.01) and N(0, 0.001)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.zeros_(layer.bias)

    def forward(self, features, rois: list[torch.Tensor]):
        x = self.pooler(features, rois)  # (R, D)
        x = F.relu(self.fc7(F.relu(self.fc6(x))))  # (R, fc_dim)
        return self.cls_score(x), self.bbox_pred(x)  # (R, K+1), (R, 4(K+1))


def fast_rcnn_loss(class_logits: torch.Tensor, box_deltas: torch.Tensor, labels: torch.Tensor,
                   box_targets: torch.Tensor, loss_lambda: float = 1.0, beta: float = 1.0) -> dict:
    """The multi-task loss, Fast R-CNN Eq. 1: L(p, u, t^u, v) = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v).

    class_logits (R, K+1), box_deltas (R, 4(K+1)), labels u (R,), box_targets v (R, 4).
    L_cls = -log p_u (cross-entropy); L_loc = sum over x, y, w, h of smooth_L1(t^u_i - v_i)
    (Eq. 2-3), only for foreground RoIs (u >= 1), with the offsets t^u of the *true* class u;
    both are averaged over the R RoIs of the batch.
    """
    R = len(labels)
    loss_cls = F.cross_entropy(class_logits, labels)
    fg = torch.nonzero(labels > 0).flatten()  # [u >= 1]
    t_u = box_deltas.reshape(R, -1, 4)[fg, labels[fg]]  # (R_fg, 4): t^u, the true class's offsets
    loss_loc = F.smooth_l1_loss(t_u, box_targets[fg], beta=beta, reduction="sum") / max(R, 1)
    return {"loss_cls": loss_cls, "loss_box": loss_lambda * loss_loc}


def detect(class_logits: torch.Tensor, box_deltas: torch.Tensor, rois: list[torch.Tensor],
           image_sizes: list[tuple[int, int]], box_coder: BoxCoder, score_thresh: float = 0.05,
           nms_thresh: float = 0.3, detections_per_image: int = 100, nms_kernel: str = "ours"):
    """From head outputs to detections, per image (Fast R-CNN sec. 3, "test-time"):

    p = softmax(logits); every RoI becomes K candidate boxes, one per class, each moved by its
    class's offsets t^k; candidates scoring below ``score_thresh`` are dropped; per-class NMS at
    ``nms_thresh`` (0.3 in the paper); the ``detections_per_image`` best are kept.
    Returns one dict per image: boxes [D, 4], labels [D] (1..K), scores [D].
    """
    batched_nms = kernels(nms_kernel).batched_nms
    probs = F.softmax(class_logits, dim=-1)  # (R, K+1)
    boxes = box_coder.decode(box_deltas, torch.cat(rois))  # (R, 4(K+1)): one box per class
    K1 = probs.shape[1]
    outputs = []
    for p, b, size in zip(probs.split([len(r) for r in rois]), boxes.split([len(r) for r in rois]),
                          image_sizes):
        b = clip_boxes_to_image(b.reshape(-1, K1, 4), size)  # (R_i, K+1, 4)
        labels = torch.arange(K1, device=p.device).expand_as(p)  # (R_i, K+1)
        # drop the background column, then one candidate per (RoI, class)
        b, p, labels = b[:, 1:].reshape(-1, 4), p[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
        keep = torch.nonzero(p > score_thresh).flatten()
        b, p, labels = b[keep], p[keep], labels[keep]
        keep = remove_small_boxes(b, 1e-2)
        b, p, labels = b[keep], p[keep], labels[keep]
        keep = batched_nms(b, p, labels, nms_thresh)[:detections_per_image]  # sorted by score
        outputs.append({"boxes": b[keep], "labels": labels[keep], "scores": p[keep]})
    return outputs
