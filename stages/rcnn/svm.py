"""One linear SVM per class on CNN features, trained with hard negative mining.

Paper: R-CNN sec. 2.3 "Object category classifiers" and Appendix B; settings from the rcnn code.

For class k the score of a region with features x (fc7, [D]) is the SVM's margin

    score_k(x) = w_k . (s x) + b_k          s: one scale for all features, so mean ||s x|| = 20

    positives  the ground-truth boxes of class k, and only those (sec. 2.3)
    negatives  proposals with IoU < 0.3 with *every* instance of class k (objects of other classes
               included); proposals between 0.3 and a ground truth are ignored (the "grey zone")
    objective  liblinear's L2-regularised hinge loss (rcnn code: ``-s 3``), through scikit-learn:
                   min_w 1/2 ||w||^2 + C sum_i c_i max(0, 1 - y_i (w . x_i + b))
               C = ``svm_C``; c_i = 2 for positives, 1 for negatives (rcnn code: pos_loss_weight);
               the bias is the weight of a constant feature 10 (``intercept_scaling``; rcnn code:
               bias_mult), so it is regularised 100x less than a weight on a unit feature.

Why not just the fine-tuned softmax? (Appendix B) Fine-tuning counts a proposal at IoU 0.5 as a
positive, a loose definition that gives it enough data; the SVMs, trained on exact ground truth
against clear negatives, are more precise. Fast R-CNN (Table 8) later removed the SVMs at no
loss; ``--classifier softmax`` runs that ablation.

Hard negative mining ("standard", Felzenszwalb et al. 2010; sec. 2.3): there are far more
negatives than fit in one training set, and most are easy. So:

    cache = a random start set of negatives
    repeat for a few rounds:
        train the SVM on positives + cache
        score all negatives; *hard* = score > -1 (inside the margin or on the wrong side,
        i.e. nonzero hinge loss) and not in the cache; *easy* cached ones (< -1.2) are evicted
        stop when no hard negative is left, else add the hard ones and retrain

Each round is logged with the number of negatives it mined. Shapes: R regions, D feature dim,
K classes. Labels here are 1..K; column k-1 of a [R, K] score matrix is class k.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from stages.ops import box_iou


@dataclass
class ClassSVMs:
    """K trained linear SVMs side by side. ``scores(fc7)`` -> margins [R, K]."""

    weight: Tensor  # [K, D], w_k in row k-1
    bias: Tensor  # [K], b_k
    feature_scale: float  # s, so that the mean training feature norm ||s x|| is feature_norm

    def scores(self, features: Tensor) -> Tensor:
        """features [R, D] (unscaled fc7) -> score_k = w_k . (s x) + b_k, [R, K]."""
        return (features * self.feature_scale) @ self.weight.T + self.bias  # (R, D) @ (D, K)

    def to_tensors(self) -> dict:
        """For the checkpoint's ``extra`` (tensors only: ``torch.load(weights_only=True)``)."""
        return {"weight": self.weight, "bias": self.bias,
                "feature_scale": torch.tensor(self.feature_scale)}

    @classmethod
    def from_tensors(cls, d: dict) -> "ClassSVMs":
        return cls(d["weight"], d["bias"], float(d["feature_scale"]))


def feature_scale(features: Tensor, target_norm: float = 20.0) -> float:
    """s = target_norm / mean ||x||: the rcnn code's ``feat_norm_mean = 20`` (one scalar, so the
    geometry of the features is unchanged; it only makes C mean the same for any network)."""
    mean_norm = features.norm(dim=1).mean().item() if len(features) else 0.0
    return target_norm / mean_norm if mean_norm > 0 else 1.0


def max_iou_per_class(boxes: Tensor, gt_boxes: Tensor, gt_labels: Tensor,
                      num_classes: int) -> Tensor:
    """[R, K]: the largest IoU of each region with any ground truth of class k (0 if none).

    An SVM negative of class k is a region with ``max_iou_per_class[:, k-1] < 0.3``."""
    out = torch.zeros(len(boxes), num_classes)
    if len(boxes) and len(gt_boxes):
        iou = box_iou(boxes, gt_boxes)  # (R, N)
        for k in range(1, num_classes + 1):
            of_k = gt_labels == k  # (N,)
            if of_k.any():
                out[:, k - 1] = iou[:, of_k].max(dim=1).values
    return out


def mine_hard_negatives(scores: Tensor, in_cache: Tensor, hard_threshold: float = -1.0) -> Tensor:
    """Indices of the negatives the current SVM gets wrong and that the cache does not hold yet.

    scores [M] of all negatives (label -1), in_cache bool [M]. A negative is *hard* when its score
    is above ``hard_threshold`` = -1: its hinge loss max(0, 1 + score) is nonzero, so training on
    it would move the SVM. Example: scores (-3, -0.5, 0.2, 2), nothing cached -> indices 1, 2, 3.
    """
    return torch.where((scores > hard_threshold) & ~in_cache)[0]


def fit_linear_svm(positives: np.ndarray, negatives: np.ndarray, C: float, pos_weight: float,
                   bias_mult: float) -> tuple[np.ndarray, float]:
    """One scikit-learn LinearSVC (liblinear, hinge loss): returns (w [D], b)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    X = np.concatenate([positives, negatives])  # (n+ + n-, D)
    y = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    svm = LinearSVC(C=C, loss="hinge", dual=True, class_weight={1: pos_weight, 0: 1.0},
                    intercept_scaling=bias_mult, max_iter=5000)
    with warnings.catch_warnings():  # liblinear's dual solver stops at max_iter on hard rounds;
        warnings.simplefilter("ignore", ConvergenceWarning)  # the result is still a good SVM
        svm.fit(X, y)
    return svm.coef_[0].astype(np.float32), float(svm.intercept_[0])


def train_one_svm(features: Tensor, positives: Tensor, negatives: Tensor, *, C: float,
                  pos_weight: float = 2.0, bias_mult: float = 10.0, rounds: int = 3,
                  hard_threshold: float = -1.0, evict_threshold: float = -1.2,
                  initial_negatives: int = 2000, seed: int = 0) -> tuple[Tensor, float, list[dict]]:
    """Train one class's SVM with hard negative mining (see the module docstring).

    features [R, D] (already scaled); positives, negatives: int64 indices into features.
    Returns (w [D], b, history): one dict per round with ``round``, ``trained_on`` (negatives in
    the cache while training), ``mined`` (indices into ``features`` of the hard negatives found by
    this round's SVM and added for the next), ``evicted`` (easy negatives dropped), and the
    round's ``weight`` and ``bias``, so that a reader (or a test) can re-score what was mined.
    """
    generator = torch.Generator().manual_seed(seed)
    M = len(negatives)
    in_cache = torch.zeros(M, dtype=torch.bool)  # over the negatives
    in_cache[torch.randperm(M, generator=generator)[:initial_negatives]] = True
    X = features.numpy()
    history = []
    for r in range(rounds + 1):
        w, b = fit_linear_svm(X[positives.numpy()], X[negatives[in_cache].numpy()], C,
                              pos_weight, bias_mult)
        record = {"round": r, "trained_on": int(in_cache.sum()), "weight": torch.from_numpy(w),
                  "bias": b, "mined": negatives[:0], "evicted": 0}
        history.append(record)
        if r == rounds:
            break  # the last round only trains
        scores = features[negatives] @ record["weight"] + b  # (M,) every negative, current SVM
        hard = mine_hard_negatives(scores, in_cache, hard_threshold)  # (m,) into negatives
        easy = in_cache & (scores < evict_threshold)  # (M,) cached and far outside the margin
        record["mined"], record["evicted"] = negatives[hard], int(easy.sum())
        if len(hard) == 0:
            break  # converged: the SVM is right, with margin, about every negative
        in_cache[easy] = False
        in_cache[hard] = True
    return history[-1]["weight"], history[-1]["bias"], history


def train_svms(features: Tensor, is_gt: Tensor, labels: Tensor, max_iou: Tensor, *,
               num_classes: int,
               class_names: list[str] | None = None, C: float = 0.1, pos_weight: float = 2.0,
               bias_mult: float = 10.0, feature_norm: float = 20.0, neg_iou: float = 0.3,
               rounds: int = 3, hard_threshold: float = -1.0, evict_threshold: float = -1.2,
               initial_negatives: int = 2000, seed: int = 0,
               log=print) -> tuple[ClassSVMs, list[dict]]:
    """Train the K SVMs on training regions (sec. 2.3).

    features [R, D] fc7 of every training region (ground-truth boxes and proposals); is_gt bool
    [R]; labels [R] the ground-truth class of a gt region (ignored for proposals); max_iou [R, K]
    from ``max_iou_per_class``. Returns the SVMs and one log line (a dict) per class and round.
    A class without a single positive gets w = 0 and b = -10: it never fires.
    """
    names = class_names or [str(k) for k in range(num_classes + 1)]
    s = feature_scale(features, feature_norm)
    X = features * s  # (R, D), mean norm 20
    D = features.shape[1]
    weight, bias, log_rows = torch.zeros(num_classes, D), torch.full((num_classes,), -10.0), []
    for k in range(1, num_classes + 1):
        positives = torch.where(is_gt & (labels == k))[0]  # ground truth only
        negatives = torch.where(~is_gt & (max_iou[:, k - 1] < neg_iou))[0]  # (M,)
        if len(positives) == 0 or len(negatives) == 0:
            log(f"  SVM {names[k]}: {len(positives)} positives, {len(negatives)} negatives: "
                f"not trained (it never fires)")
            continue
        w, b, history = train_one_svm(X, positives, negatives, C=C, pos_weight=pos_weight,
                                      bias_mult=bias_mult, rounds=rounds,
                                      hard_threshold=hard_threshold,
                                      evict_threshold=evict_threshold,
                                      initial_negatives=initial_negatives, seed=seed + k)
        weight[k - 1], bias[k - 1] = w, b
        for h in history:
            row = {"class": names[k], "round": h["round"], "positives": len(positives),
                   "negatives_trained_on": h["trained_on"], "hard_negatives_mined": len(h["mined"]),
                   "evicted": h["evicted"], "of_negatives": len(negatives)}
            log_rows.append(row)
            log(f"  SVM {names[k]:>10s} round {h['round']}: trained on {len(positives)} positives "
                f"+ {h['trained_on']} negatives; mined {len(h['mined'])} hard negatives "
                f"(of {len(negatives)}), evicted {h['evicted']} easy ones")
    return ClassSVMs(weight, bias, s), log_rows
