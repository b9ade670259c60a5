"""Class-specific bounding-box regression: move a detection onto the object it found.

Paper: R-CNN Appendix C; Table 2: 54.2 -> 58.5 mAP on VOC 2007 (+4.3), by fixing mislocalisations.

A proposal P and the ground-truth box G it should become, as centre, width, height
(``stages.ops.BoxCoder``, weights (1, 1, 1, 1): the targets exactly as written in the paper):

    t_x = (G_x - P_x) / P_w          t_w = log(G_w / P_w)          (Appendix C, Eq. 6-9)
    t_y = (G_y - P_y) / P_h          t_h = log(G_h / P_h)

Each target t_* is a linear function of the region's pool5 features phi(P), one per class k
and coordinate *: d_*(P) = w_*^T phi(P), learnt by ridge regression

    w_* = argmin_w  sum_i (t_*^i - w^T phi(P^i))^2 + lambda ||w||^2        (Appendix C, Eq. 5)

on the training pairs (P, G) where the proposal's best ground truth has IoU > 0.6 (a far
proposal carries no information about where the object is), lambda = 1000. At test time the
predicted G-hat = BoxCoder.decode(d(P), P) (Eq. 1-4) replaces each detection of class k.

Two details of the rcnn code are kept: features are scaled to a mean L2 norm of 20 (as for the
SVMs, so that lambda means the same whatever the network), and the bias is not penalised
(scikit-learn's ``Ridge`` centres X and t first). The code also whitens the targets; for ridge
regression a per-coordinate scale of t changes nothing (w is linear in t), so we skip it.

Shapes: R regions, K classes, F = pool5 dimension. Labels 1..K; ``weight[k-1]`` is class k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from stages.ops import BoxCoder, box_iou
from stages.rcnn.svm import feature_scale

BOX_CODER = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))  # R-CNN's targets as written (Appendix C)


@dataclass
class BoxRegressors:
    """K ridge regressors: deltas = weight[k-1] @ (s phi) + bias[k-1] for a region of class k."""

    weight: Tensor  # [K, 4, F]
    bias: Tensor  # [K, 4]
    feature_scale: float  # s, as for the SVMs

    def deltas(self, features: Tensor, labels: Tensor) -> Tensor:
        """features [R, F] (unscaled pool5), labels [R] in 1..K -> (d_x, d_y, d_w, d_h) [R, 4]."""
        w = self.weight[labels - 1]  # (R, 4, F): each region's class regressor
        b = self.bias[labels - 1]  # (R, 4)
        return torch.einsum("rcf,rf->rc", w, features * self.feature_scale) + b  # (R, 4)

    def apply(self, boxes: Tensor, features: Tensor, labels: Tensor) -> Tensor:
        """G-hat for each box [R, 4] of class labels [R]: ``BoxCoder.decode`` (Eq. 1-4)."""
        if len(boxes) == 0:
            return boxes
        return BOX_CODER.decode(self.deltas(features, labels), boxes)  # (R, 4)

    def to_tensors(self) -> dict:
        return {"weight": self.weight, "bias": self.bias,
                "feature_scale": torch.tensor(self.feature_scale)}

    @classmethod
    def from_tensors(cls, d: dict) -> "BoxRegressors":
        return cls(d["weight"], d["bias"], float(d["feature_scale"]))


def regression_pairs(max_iou: Tensor, min_iou: float = 0.6) -> Tensor:
    """Indices of the training pairs: proposals whose best ground truth has IoU > 0.6."""
    return torch.where(max_iou > min_iou)[0]


def train_bbox_regressors(features: Tensor, proposals: Tensor, matched_gt: Tensor, labels: Tensor,
                          *, num_classes: int, lam: float = 1000.0, feature_norm: float = 20.0,
                          class_names: list[str] | None = None, log=print) -> BoxRegressors:
    """Fit one ridge regressor per class (Appendix C).

    features [P, F] pool5 of the training pairs (already selected by ``regression_pairs``),
    proposals [P, 4], matched_gt [P, 4] their best ground truth, labels [P] its class. A class
    with no pair keeps w = 0, b = 0: its boxes are left where they are.
    """
    from sklearn.linear_model import Ridge

    names = class_names or [str(k) for k in range(num_classes + 1)]
    F_dim = features.shape[1]
    s = feature_scale(features, feature_norm)
    weight, bias = torch.zeros(num_classes, 4, F_dim), torch.zeros(num_classes, 4)
    targets = BOX_CODER.encode(matched_gt, proposals)  # (P, 4): t_x, t_y, t_w, t_h
    for k in range(1, num_classes + 1):
        rows = torch.where(labels == k)[0]
        if len(rows) < 2:
            log(f"  box regressor {names[k]}: {len(rows)} training pairs: left as identity")
            continue
        ridge = Ridge(alpha=lam).fit((features[rows] * s).numpy(), targets[rows].numpy())
        weight[k - 1] = torch.from_numpy(ridge.coef_).float()  # (4, F)
        bias[k - 1] = torch.from_numpy(ridge.intercept_).float()  # (4,)
        fitted = BoxRegressors(weight, bias, s).apply(proposals[rows], features[rows],
                                                       labels[rows])
        before = box_iou(proposals[rows], matched_gt[rows]).diagonal().mean().item()
        after = box_iou(fitted, matched_gt[rows]).diagonal().mean().item()
        log(f"  box regressor {names[k]:>10s}: {len(rows)} pairs (IoU > 0.6), mean IoU with "
            f"ground truth {before:.3f} -> {after:.3f} on them")
    return BoxRegressors(weight, bias, s)
