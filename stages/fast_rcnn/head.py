"""The Fast R-CNN head: pool each RoI, two fully connected layers, two sibling outputs.

Fast R-CNN sec. 2 (Figure 1): "each RoI is pooled into a fixed-size feature map and then mapped
to a feature vector by fully connected layers. The network has two output vectors per RoI:
softmax probabilities and per-class bounding-box regression offsets."

Shape shorthand: N images, C channels of the feature map, R RoIs (all images), K object classes
(K + 1 with background), D the pooled feature length (C * 7 * 7 for RoI pooling, C * 21 for SPP).
Naming: ``pred_*`` are the head's outputs, ``gt_*`` the targets from the ground truth.

    features (N, C, H', W'), rois list of N [R_i, 4]
      -> pooler            (R, D)             RoIPool | SPPPool (pooling.py), RoIAlign (stage 4)
      -> fc6, fc7 + ReLU   (R, fc_dim)        stage 1's FC6FC7 (stages.rcnn.cnn), unchanged
      -> cls_score         (R, K + 1)         p = softmax: the class probabilities
      -> bbox_pred         (R, 4 (K + 1))     t^k: one box offset per class (class-specific)

Losses and detection are free functions (``fast_rcnn_loss``, ``detect``) on explicit tensors.
Stage 3 reuses this head unchanged; stage 4 passes another pooler (RoIAlign).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stages.ops import BoxCoder, clip_boxes_to_image, kernels, remove_small_boxes
from stages.rcnn.cnn import FC6FC7


class FastRCNNHead(nn.Module):
    """pooler -> fc6 -> fc7 -> (cls_score, bbox_pred). ``num_classes`` = K, background excluded."""

    def __init__(self, pooler: nn.Module, num_classes: int, fc_dim: int = 256):
        super().__init__()
        self.pooler = pooler
        self.fc = FC6FC7(pooler.out_dim, fc_dim)  # R-CNN's fc6, fc7 (without dropout, as there)
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(fc_dim, 4 * (num_classes + 1))
        # the paper's initialisation of the new layers (sec. 2.3): N(0, 0.01) and N(0, 0.001)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        for layer in (self.cls_score, self.bbox_pred):
            nn.init.zeros_(layer.bias)

    def forward(self, features, rois: list[torch.Tensor]):
        x = self.pooler(features, rois).flatten(1)  # (R, C, S, S) or (R, D) -> (R, D)
        x = self.fc(x)  # (R, fc_dim)
        return self.cls_score(x), self.bbox_pred(x)  # (R, K+1), (R, 4(K+1))


def fast_rcnn_loss(pred_class_logits: torch.Tensor, pred_box_deltas: torch.Tensor,
                   gt_labels: torch.Tensor, gt_box_deltas: torch.Tensor, loss_lambda: float = 1.0,
                   beta: float = 1.0) -> dict:
    """The multi-task loss of Fast R-CNN (sec. 2.3), averaged over the R RoIs of the batch.

    pred_class_logits (R, K+1), pred_box_deltas (R, 4(K+1)): the head's outputs;
    gt_labels u (R,) in 0..K (0 = background), gt_box_deltas v (R, 4): the encoded targets.
    """
    R = len(gt_labels)
    # L_cls(p, u) = -log p_u: the log loss of the true class u             (under Eq. 1)
    loss_cls = F.cross_entropy(pred_class_logits, gt_labels)
    fg = torch.nonzero(gt_labels > 0).flatten()  # the Iverson bracket [u >= 1]: foreground only
    t_u = pred_box_deltas.reshape(R, -1, 4)[fg, gt_labels[fg]]  # (R_fg, 4): t^u, the true class's
    # L_loc(t^u, v) = sum_{i in x, y, w, h} smooth_L1(t^u_i - v_i)                  (Eq. 2)
    # smooth_L1(x) = 0.5 x^2 if |x| < 1 else |x| - 0.5 (beta = 1)                   (Eq. 3)
    loss_loc = F.smooth_l1_loss(t_u, gt_box_deltas[fg], beta=beta, reduction="sum") / max(R, 1)
    # L(p, u, t^u, v) = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v)                  (Eq. 1)
    return {"loss_cls": loss_cls, "loss_box": loss_lambda * loss_loc}


def detect(pred_class_logits: torch.Tensor, pred_box_deltas: torch.Tensor, rois: list[torch.Tensor],
           image_sizes: list[tuple[int, int]], box_coder: BoxCoder, score_thresh: float = 0.05,
           nms_thresh: float = 0.3, detections_per_image: int = 100, nms_kernel: str = "ours"):
    """From head outputs to detections, per image (Fast R-CNN sec. 3, "test-time"):

    p = softmax(logits); every RoI becomes K candidate boxes, one per class, each moved by its
    class's offsets t^k; candidates scoring below ``score_thresh`` are dropped; per-class NMS at
    ``nms_thresh`` (0.3 in the paper); the ``detections_per_image`` best are kept.
    Returns one dict per image: boxes [D, 4], labels [D] (1..K), scores [D].
    """
    batched_nms = kernels(nms_kernel).batched_nms
    probs = F.softmax(pred_class_logits, dim=-1)  # (R, K+1)
    boxes = box_coder.decode(pred_box_deltas, torch.cat(rois))  # (R, 4(K+1)): one box per class
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
