"""Training R-CNN, in the paper's separate steps (sec. 2.3), each a plain function.

    data = prepare_training_data(dataset, cfg)       images, their proposals, their ground truth
    cnn, _, _ = train_cnn(data, cfg, device=d)       1. pre-train on gt crops, 2. fine-tune (on d)
    feats = region_features(cnn, data, cfg, device=d)  fc7 (and pool5) of every training region
    svms = fit_svms(feats, data, cfg)                3. one SVM per class, hard negative mining
    regressors = fit_bbox_regressors(feats, data)    4. ridge regression of t_x, t_y, t_w, t_h
    model = RCNN(cfg, make_proposer(cfg), cnn, svms, regressors)

Both the SVMs and the regressors are always trained (seconds, next to the CNN's minutes): the
ablation switches ``--classifier`` and ``--bbox-reg`` only choose what the model *uses*, so one
trained checkpoint evaluates every combination (``--eval-only``). ``train_rcnn`` runs the steps
in this order, for the command (``python -m stages.rcnn``) as for the tests; it hands the
fine-tuned CNN to the caller before the SVMs (``on_cnn``: the command saves it, what ``--resume``
picks up) and takes a fine-tuned CNN back in place of steps 1-2 (``cnn``).

As in the rcnn code, the features of every training region are computed once and reused by every
round of hard negative mining and by the regressors (the rcnn code cached them on disk, at VOC's
scale; ours fit in memory). The regions of image i are its proposals and its ground-truth boxes.

Devices: the warps and the CNN (steps 1-2 and the features) run on ``device``, a GPU when there
is one. The features then come back to the CPU, because steps 3 and 4 are scikit-learn's
(liblinear's SVMs, ridge regression), which runs on the CPU only; the trained SVMs and regressors
are plain tensors again, and score and regress on the model's device at test time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from stages.rcnn.bbox_regression import BoxRegressors, regression_pairs, train_bbox_regressors
from stages.rcnn.cnn import RegionCNN, extract_features, finetune, pretrain_on_crops
from stages.rcnn.config import RCNNConfig
from stages.rcnn.model import RCNN, build_region_cnn
from stages.rcnn.proposers import compute_proposals, make_proposer
from stages.ops import match_to_ground_truth
from stages.rcnn.regions import crop_regions, normalize
from stages.rcnn.svm import ClassSVMs, max_iou_per_class, train_svms
from stages.training import distributed


@dataclass
class TrainingData:
    """The training images as R-CNN's steps read them (one entry per image)."""

    images: Tensor | list[Tensor]  # normalised (``regions.normalize``), no flips: [N, 3, H, W]
    #                                when the images share one size (faster warps), else a list
    proposals: list[Tensor]  # [R_i, 4]
    gt_boxes: list[Tensor]  # [N_i, 4]
    gt_labels: list[Tensor]  # [N_i] in 1..K
    proposal_seconds: list[float]  # per image, as measured when computed
    class_names: list[str]
    summary: str = ""  # where the proposals came from (cache hits, time)

    @property
    def num_classes(self) -> int:
        return len(self.class_names) - 1


def prepare_training_data(dataset, cfg: RCNNConfig, cache_root=None, workers: int = 1,
                          log=print) -> TrainingData:
    """Read every training image (give a dataset *without* random flips) and its proposals."""
    images, gt_boxes, gt_labels = [], [], []
    for image, target in dataset:
        keep = target["iscrowd"] == 0 if "iscrowd" in target else slice(None)  # never on crowds
        images.append(image)
        gt_boxes.append(target["boxes"][keep])
        gt_labels.append(target["labels"][keep])
    proposals, seconds, summary = compute_proposals(images, cfg, cache_root, workers)
    log(f"[rcnn] proposals: {summary}")
    normalised = [normalize(im) for im in images]
    if len({tuple(im.shape) for im in normalised}) == 1:
        normalised = torch.stack(normalised)  # (N, 3, H, W)
    return TrainingData(normalised, proposals, gt_boxes, gt_labels, seconds,
                        list(dataset.class_names), summary)


def _flat(pieces: list[Tensor], width: int | None = None) -> Tensor:
    """Concatenate per-image tensors (one may be empty)."""
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        return torch.zeros((0, width)) if width else torch.zeros(0, dtype=torch.long)
    return torch.cat(pieces)


def train_cnn(data: TrainingData, cfg: RCNNConfig, seed: int = 0, time_budget: float | None = None,
              log=print, max_steps: int | None = None, steps_replace_epochs: bool = True,
              device: torch.device | str = "cpu") -> tuple[RegionCNN, list[dict], str]:
    """Steps 1 and 2 of sec. 2.3: pre-training on gt crops, then (K+1)-way fine-tuning.

    Both train through the loop every stage uses (``engine.train``, by ``cnn.pretrain_on_crops``
    and ``cnn.finetune``), with R-CNN's Recipe (``cfg.momentum``, ``cfg.weight_decay``,
    ``cfg.lr_drop``; fine-tuning's ``cfg.optimizer`` at ``cfg.lr``, pre-training SGD at
    ``cfg.pretrain_lr``). ``time_budget`` (seconds) caps both together: pre-training may use its share of
    the planned mini-batches (plus 25 %), fine-tuning what is left; within each, the loop counts
    seconds of training steps (the warps, like stages 2-4's image reading, are not counted); a
    cap for slow machines, not a target.
    ``max_steps``: that many mini-batches in all (``--steps``), shared as the planned work is
    (pre-training its part, at least one left for fine-tuning); with ``steps_replace_epochs``
    exactly that many, else the epochs may stop it sooner. The warps and the CNN run on ``device``.
    Under ``torchrun`` each process warps its share of every mini-batch (``cnn.finetune``).
    Returns the CNN (in eval mode, on ``device``), its loss history, and what stopped it:
    "steps", "time_budget" or "epochs"."""
    torch.manual_seed(seed)
    cnn = build_region_cnn(cfg, data.num_classes).to(device)
    images = (data.images.to(device) if isinstance(data.images, Tensor)
              else [im.to(device) for im in data.images])  # the warps cut them on the device
    p = cfg.context_pad_pixels

    # the pre-training examples: every ground-truth box is a K-way classification example
    gt_index = _flat([torch.full((len(b),), i) for i, b in enumerate(data.gt_boxes)])  # (G,)
    gt_boxes, gt_labels = _flat(data.gt_boxes, 4), _flat(data.gt_labels)
    # the fine-tuning pool: proposals labelled by IoU >= 0.5, plus the ground-truth boxes
    index, boxes, labels = [], [], []
    per_image = zip(data.proposals, data.gt_boxes, data.gt_labels)
    for i, (props, g_boxes, g_labels) in enumerate(per_image):
        max_iou, _, matched = match_to_ground_truth(props, g_boxes, g_labels)
        label = torch.where(max_iou >= cfg.fg_iou, matched, torch.zeros_like(matched))  # (R_i,)
        index += [torch.full((len(props) + len(g_boxes),), i)]
        boxes += [props, g_boxes]
        labels += [label, g_labels]
    index, boxes, labels = _flat(index), _flat(boxes, 4), _flat(labels)
    n_pos = int((labels > 0).sum())

    batch = cfg.batch_positives + cfg.batch_negatives  # pre-training crops per mini-batch, too
    start = time.perf_counter()
    pre_steps = cfg.pretrain_epochs * math.ceil(len(gt_boxes) / batch)
    ft_steps = cfg.finetune_epochs * n_pos / cfg.batch_positives
    share = pre_steps / max(pre_steps + ft_steps, 1)  # pre-training's part of the work
    pretrain_budget = None
    if time_budget is not None:
        pretrain_budget = time_budget * min(1.0, 1.25 * share)  # with some slack
    pretrain_cap = None
    if max_steps is not None:  # pre-training's share of the steps, one at least left to fine-tune
        pretrain_cap = min(round(max_steps * share), max_steps - 1)
    solver = dict(momentum=cfg.momentum, weight_decay=cfg.weight_decay, lr_drop=cfg.lr_drop)

    # 1. pre-training
    history = pretrain_on_crops(cnn, images, gt_index, gt_boxes, gt_labels,
                                epochs=cfg.pretrain_epochs, lr=cfg.pretrain_lr, context_pad=p,
                                **solver, batch_size=batch, seed=seed,
                                time_budget_s=pretrain_budget, max_steps=pretrain_cap)
    if cfg.pretrain_epochs == 0:
        log("[rcnn] 1. pre-training skipped (--pretrain-epochs 0, as the quick preset: see "
            "stages.rcnn.config.PHASE_EPOCHS)")
    elif history:
        log(f"[rcnn] 1. pre-trained on {len(gt_boxes)} ground-truth crops: {len(history)} "
            f"mini-batches ({history[-1]['epoch']} of {cfg.pretrain_epochs} epochs) in "
            f"{time.perf_counter() - start:.1f} s, loss {history[0]['loss']:.3f} -> "
            f"{history[-1]['loss']:.3f}")

    # 2. fine-tuning, for what is left of the time budget (the slowest process's clock)
    t0 = time.perf_counter()
    finetune_budget = None
    if time_budget is not None:
        finetune_budget = time_budget - distributed.agree([t0 - start])[0]
    exact = max_steps is not None and steps_replace_epochs  # --steps alone: exactly N in all
    ft = finetune(cnn, images, index, boxes, labels, epochs=None if exact else cfg.finetune_epochs,
                  lr=cfg.lr, context_pad=p, **solver,
                  batch_positives=cfg.batch_positives, batch_negatives=cfg.batch_negatives,
                  seed=seed, time_budget_s=finetune_budget, optimizer=cfg.optimizer,
                  max_steps=None if max_steps is None else max_steps - len(history))
    if ft:
        log(f"[rcnn] 2. fine-tuned ({data.num_classes}+1)-way on {n_pos} positive and "
            f"{len(labels) - n_pos} background regions: {len(ft)} mini-batches of "
            f"{cfg.batch_positives}+{cfg.batch_negatives} ({ft[-1]['epoch']:.1f} of "
            f"{cfg.finetune_epochs:g} epochs) in {time.perf_counter() - t0:.1f} s, "
            f"loss {ft[0]['loss']:.3f} -> {ft[-1]['loss']:.3f}")
    stopped_by = "epochs"
    elapsed = distributed.agree([time.perf_counter() - start])[0]  # the slowest process's clock
    if max_steps is not None and len(history) + len(ft) >= max_steps:
        stopped_by = "steps"
    elif time_budget is not None and elapsed >= time_budget:
        stopped_by = "time_budget"
        log(f"[rcnn] the CNN's time budget ({time_budget:.0f} s) ran out before its planned epochs")
    cnn.eval()
    return cnn, history + ft, stopped_by


@dataclass
class RegionFeatures:
    """Features of every training region (all images concatenated; R regions in all)."""

    fc7: Tensor  # [R, D], for the SVMs
    boxes: Tensor  # [R, 4] the region's box
    image_of: Tensor  # [R] the index of its image in TrainingData
    is_gt: Tensor  # [R] bool, a ground-truth box (else a proposal)
    labels: Tensor  # [R] class of a gt region (0 for proposals)
    max_iou: Tensor  # [R, K] best IoU with a ground truth of each class (SVM negatives)
    # the box-regression pairs (proposals with IoU > 0.6), P of them
    pair_pool5: Tensor  # [P, F]
    pair_boxes: Tensor  # [P, 4]
    pair_gt: Tensor  # [P, 4] the best ground truth of each
    pair_labels: Tensor  # [P] its class
    seconds: float = 0.0


def region_features(cnn: RegionCNN, data: TrainingData, cfg: RCNNConfig,
                    log=print, device: torch.device | str = "cpu") -> RegionFeatures:
    """One CNN pass over every training region: fc7 for all, pool5 for the regression pairs.
    Warps and CNN on ``device``; the features come back to the CPU, where scikit-learn fits the
    SVMs and regressors on them."""
    K = data.num_classes
    cnn.to(device)
    t0 = time.perf_counter()
    parts = {k: [] for k in ("fc7", "boxes", "is_gt", "labels", "max_iou", "image_of", "pair_pool5",
                             "pair_boxes", "pair_gt", "pair_labels")}
    for i, (image, props, g_boxes, g_labels) in enumerate(
            zip(data.images, data.proposals, data.gt_boxes, data.gt_labels)):
        boxes = torch.cat([g_boxes, props])  # (N + R_i, 4): ground truth first
        regions = crop_regions(image.to(device), boxes.to(device), cfg.warp_size,
                               cfg.context_pad_pixels)
        f = extract_features(cnn, regions, cfg.feature_batch)  # on (N + R_i, 3, S, S)
        f = {k: v.cpu() for k, v in f.items()}  # for scikit-learn: the CPU
        N = len(g_boxes)
        parts["fc7"].append(f["fc7"])
        parts["boxes"].append(boxes)
        parts["is_gt"].append(torch.arange(len(boxes)) < N)
        parts["labels"].append(torch.cat([g_labels, torch.zeros(len(props), dtype=torch.long)]))
        parts["max_iou"].append(max_iou_per_class(boxes, g_boxes, g_labels, K))
        parts["image_of"].append(torch.full((len(boxes),), i))
        best_iou, gt_index, gt_label = match_to_ground_truth(props, g_boxes, g_labels)
        pairs = regression_pairs(best_iou, cfg.bbox_iou)  # (P_i,) proposals only
        parts["pair_pool5"].append(f["pool5"][N:][pairs])
        parts["pair_boxes"].append(props[pairs])
        parts["pair_gt"].append(g_boxes[gt_index[pairs]] if N else props[:0])
        parts["pair_labels"].append(gt_label[pairs])
    cat = {k: torch.cat(v) if v else torch.zeros(0) for k, v in parts.items()}
    seconds = time.perf_counter() - t0
    log(f"[rcnn] features of {len(cat['fc7'])} training regions ({int(cat['is_gt'].sum())} "
        f"ground truth) in {seconds:.1f} s; {len(cat['pair_boxes'])} box-regression pairs")
    return RegionFeatures(**cat, seconds=seconds)


def fit_svms(features: RegionFeatures, data: TrainingData, cfg: RCNNConfig, seed: int = 0,
             log=print) -> tuple[ClassSVMs, list[dict]]:
    """Step 3 of sec. 2.3: the K SVMs with hard negative mining (``svm.train_svms``): scikit-learn's
    liblinear, on the CPU whatever the run's device (``features`` are CPU tensors)."""
    t0 = time.perf_counter()
    svms, rows = train_svms(features.fc7, features.is_gt, features.labels, features.max_iou,
                            num_classes=data.num_classes, class_names=data.class_names,
                            C=cfg.svm_C, pos_weight=cfg.svm_pos_weight,
                            bias_mult=cfg.svm_bias_mult, feature_norm=cfg.feature_norm,
                            neg_iou=cfg.svm_neg_iou, rounds=cfg.hard_negative_rounds,
                            hard_threshold=cfg.hard_threshold,
                            evict_threshold=cfg.evict_threshold,
                            initial_negatives=cfg.initial_negatives, seed=seed, log=log)
    log(f"[rcnn] 3. trained {data.num_classes} SVMs in {time.perf_counter() - t0:.1f} s")
    return svms, rows


def fit_bbox_regressors(features: RegionFeatures, data: TrainingData, cfg: RCNNConfig,
                        log=print) -> BoxRegressors:
    """Step 4 (Appendix C): the K ridge regressors on the pairs with IoU > 0.6 (scikit-learn's
    ridge regression, on the CPU whatever the run's device)."""
    t0 = time.perf_counter()
    regressors = train_bbox_regressors(features.pair_pool5, features.pair_boxes, features.pair_gt,
                                       features.pair_labels, num_classes=data.num_classes,
                                       lam=cfg.bbox_lambda, feature_norm=cfg.feature_norm,
                                       class_names=data.class_names, log=log)
    log(f"[rcnn] 4. trained {data.num_classes} box regressors in {time.perf_counter() - t0:.1f} s")
    return regressors


def train_rcnn(dataset, cfg: RCNNConfig, *, cache_root=None, workers: int = 1, seed: int = 0,
               time_budget: float | None = None, log=print, max_steps: int | None = None,
               steps_replace_epochs: bool = True, device: torch.device | str = "cpu",
               cnn: RegionCNN | None = None, on_cnn=None) -> tuple[RCNN | None, dict]:
    """All of R-CNN's training, step by step. ``dataset`` yields un-flipped training items.

    cnn: a CNN fine-tuned already (a checkpoint's, ``--resume``): steps 1-2 are skipped.
    on_cnn: called as ``on_cnn(cnn, history, stopped_by, seconds)`` once steps 1-2 are done,
        before the features and SVMs (the command saves its checkpoint there).
    Under torchrun the processes fill the proposal cache (rank 0 first) and fine-tune the CNN
    together; rank 0 then goes on alone, and the others return ``(None, record)``.

    Returns the model (in eval mode, on ``device``) and a record of the steps: ``data``,
    ``cnn_history`` (empty when ``cnn`` was given), ``stopped_by``, ``seconds`` per step
    ("proposals", "cnn": the slowest process's, "svm_bbox"), and on rank 0 ``features`` and
    ``svm_log``."""
    seconds = {}
    t0 = time.perf_counter()
    with distributed.main_first():  # rank 0 fills the proposal cache, the others read it
        data = prepare_training_data(dataset, cfg, cache_root, workers, log)
    seconds["proposals"] = time.perf_counter() - t0
    history, stopped_by = [], None
    if cnn is None:
        t0 = time.perf_counter()
        cnn, history, stopped_by = train_cnn(data, cfg, seed=seed, time_budget=time_budget, log=log,
                                             max_steps=max_steps, device=device,
                                             steps_replace_epochs=steps_replace_epochs)
        seconds["cnn"] = distributed.agree([time.perf_counter() - t0])[0]
        if on_cnn is not None:
            on_cnn(cnn, history, stopped_by, seconds["cnn"])
    record = {"data": data, "cnn_history": history, "seconds": seconds, "stopped_by": stopped_by}
    if not distributed.is_main():
        return None, record  # the processes fine-tuned the CNN together; rank 0 goes on alone
    t0 = time.perf_counter()
    features = region_features(cnn, data, cfg, log, device=device)
    svms, svm_log = fit_svms(features, data, cfg, seed, log)
    regressors = fit_bbox_regressors(features, data, cfg, log)
    seconds["svm_bbox"] = time.perf_counter() - t0
    model = RCNN(cfg, make_proposer(cfg), cnn, svms, regressors).to(device).eval()
    return model, {**record, "features": features, "svm_log": svm_log}
