"""The CNN R-CNN runs on every warped region: pre-trained, fine-tuned, then a feature extractor.

Paper: R-CNN sec. 2.1 (features), 2.3 (training), Appendix C (pool5 for box regression).

    warped region (R, 3, S, S)       cut from the mean-subtracted image, S = 56
      body            the shared backbone up to C3: (R, C, S/8, S/8) = (R, 40, 7, 7)
      pool5           max pooled to 7 x 7 and flattened: (R, C * 7 * 7)    -> box regression
      fc6, fc7        (R, D) each, ReLU (+ dropout: AlexNet 0.5, ours 0)     -> fc7: the SVMs
      cls_score       (R, K + 1) logits, background = 0                      -> the softmax

**The same network as stage 2.** The body is the backbone that Fast R-CNN runs once per image,
and fc6/fc7 have the width of Fast R-CNN's head: Fast R-CNN RoI-pools each proposal to 7 x 7
from one shared map, R-CNN warps each proposal to 56 x 56 and runs the body on it, which gives
7 x 7 directly (VGG16's pool5 is 7 x 7 on a 224 input for the same reason: RoI pooling was made
to fit the fc6 of the network that R-CNN used). So the two stages differ in one thing, where the
7 x 7 comes from, and stage 2's speed-up over stage 1 measures the sharing and nothing else, as
the papers' 146x compares VGG16 with VGG16 (Fast R-CNN sec. 4.4). The paper's R-CNN uses
AlexNet's or VGG16's layer names; we keep "pool5" and "fc7" so that they mean what they mean there.

Training, in the paper's two steps (sec. 2.3):
  1. *Supervised pre-training.* The paper starts from AlexNet trained on ImageNet classification;
     so do we: the shared backbone's default is EfficientNet-Lite0 with its ImageNet weights
     (``stages.backbone``). From random weights (``--backbone tiny``), ``pretrain_on_crops``
     stands in for ImageNet with the closest thing our data has: a K-way classifier on the
     ground-truth crops of the training images, slightly jittered; its K-way output layer is
     thrown away afterwards, as the 1000-way ImageNet layer was (``--pretrain-epochs N``).
  2. *Domain-specific fine-tuning.* A new (K+1)-way layer (``cls_score``); SGD on warped
     proposals: IoU >= 0.5 with a ground-truth box = a positive of that box's class, the rest
     background; each mini-batch draws 32 positives (over all classes) and 96 background
     windows. Like the rcnn code we also count the ground-truth boxes among the positives.

Shape shorthand: R regions, S warp size, K classes, D = fc_dim. ``pred_*`` are network outputs.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stages.rcnn.regions import warp_from_images
from stages.recipe import Recipe
from stages.training import distributed


class FC6FC7(nn.Module):
    """fc6 -> ReLU -> fc7 -> ReLU (each + dropout): the two fully connected layers after pool5.

    AlexNet's fc6/fc7 in R-CNN (4096-d; dropout 0.5), and, unchanged, the layers of Fast R-CNN's
    head after RoI pooling (Fast R-CNN Figure 1: "FCs"; stage 2 imports this class).
    (R, in_dim) -> (R, fc_dim).
    """

    def __init__(self, in_dim: int, fc_dim: int = 256, dropout: float = 0.0):
        super().__init__()
        self.fc6 = nn.Linear(in_dim, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout(F.relu(self.fc6(x)))  # (R, D)
        return self.dropout(F.relu(self.fc7(x)))  # (R, D)


class RegionCNN(nn.Module):
    """Stage 2's backbone (to C3) and fc6/fc7 on S x S warped regions (see the module docstring).

    ``body``: the shared backbone up to C3 (``stages.backbone.build_backbone(..., "C3")``);
    ``pool_size`` is the side of pool5 (Fast R-CNN's RoI pooling size); ``warp_size`` must be a
    multiple of the body's stride, 8.
    """

    def __init__(self, num_classes: int, body: nn.Module, fc_dim: int = 256, warp_size: int = 56,
                 pool_size: int = 7, dropout: float = 0.0):
        super().__init__()
        self.body = body
        if warp_size % self.body.stride or warp_size < self.body.stride * pool_size:
            raise ValueError(f"--warp-size {warp_size} must be a multiple of the backbone's stride "
                             f"{self.body.stride} and at least {self.body.stride * pool_size} "
                             f"(a {pool_size} x {pool_size} pool5)")
        self.pool5 = nn.AdaptiveMaxPool2d(pool_size)  # 7 x 7 -> 7 x 7 at S = 56: nothing to do
        self.pool5_dim = self.body.out_channels * pool_size * pool_size  # 40 * 7 * 7 = 1960
        self.fc = FC6FC7(self.pool5_dim, fc_dim, dropout)
        self.cls_score = nn.Linear(fc_dim, num_classes + 1)  # the (K+1)-way layer of sec. 2.3
        self.warp_size = warp_size

    def features(self, regions: Tensor) -> dict[str, Tensor]:
        """regions [R, 3, S, S] (normalised) -> {"pool5": [R, C*7*7], "fc7": [R, D]}
        (fc7 after its ReLU)."""
        conv = self.body.forward_normalized(regions)["C3"]  # (R, C, S/8, S/8)
        pool5 = self.pool5(conv).flatten(1)  # (R, C, 7, 7) -> (R, C*7*7)
        return {"pool5": pool5, "fc7": self.fc(pool5)}  # fc7: (R, D)

    def forward(self, regions: Tensor) -> Tensor:
        """regions [R, 3, S, S] -> class logits [R, K+1] (0 = background)."""
        return self.cls_score(self.features(regions)["fc7"])


@torch.no_grad()
def extract_features(cnn: RegionCNN, regions: Tensor, batch: int = 256) -> dict[str, Tensor]:
    """``cnn.features`` in eval mode over [R, 3, S, S], ``batch`` regions per forward pass.

    Returns {"pool5": [R, C*s*s], "fc7": [R, D], "logits": [R, K+1]}."""
    cnn.eval()
    parts = []
    for start in range(0, len(regions), batch):
        f = cnn.features(regions[start:start + batch])
        f["logits"] = cnn.cls_score(f["fc7"])
        parts.append(f)
    if not parts:  # no regions: empty tensors of the right widths
        return {"pool5": regions.new_zeros((0, cnn.pool5_dim)),
                "fc7": regions.new_zeros((0, cnn.fc.fc7.out_features)),
                "logits": regions.new_zeros((0, cnn.cls_score.out_features))}
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def jitter_boxes(boxes: Tensor, amount: float, generator: torch.Generator) -> Tensor:
    """Move each box by up to ``amount`` of its size and rescale its sides by up to 1 +- amount:
    the augmentation of pre-training, so that crops are not always perfectly centred."""
    wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # (R, 4): w, h, w, h
    noise = (torch.rand(boxes.shape, generator=generator) * 2 - 1) * amount  # (R, 4) in +-amount
    return boxes + noise * wh


def _optimizer(cnn: nn.Module, recipe: Recipe):
    """``recipe.optimizer`` at ``recipe.lr`` over the parameters that train (a frozen backbone part
    has none): SGD with ``recipe.momentum`` and ``recipe.weight_decay`` (R-CNN's 0.9 and 5e-4:
    AlexNet's, and the rcnn fine-tuning solver's values), or AdamW with the same decay (what stage 2
    fine-tunes the same network with)."""
    params = [p for p in cnn.parameters() if p.requires_grad]
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)


class Progress:
    """How far training is, 0..1: steps done out of ``total``, or the time used out of what is left
    until ``deadline`` (a ``time.perf_counter()`` value), whichever is further."""

    def __init__(self, total: int, deadline: float | None):
        self.total, self.deadline, self.start = total, deadline, time.perf_counter()

    def __call__(self, step: int) -> float:
        done = step / max(self.total, 1)
        if self.deadline is not None:
            span = max(self.deadline - self.start, 1e-9)
            done = max(done, (time.perf_counter() - self.start) / span)
        return done


def _step_lr(optimizer, recipe: Recipe, progress: float) -> None:
    """Caffe's "step" policy: the rate drops 10x after ``recipe.lr_drop`` of training (R-CNN's
    0.75: for the last quarter, of its steps or of its time budget, so that a run cut by the
    budget still ends at the low rate)."""
    for g in optimizer.param_groups:
        g["lr"] = recipe.lr * (0.1 if progress >= recipe.lr_drop else 1.0)


def share() -> slice:
    """This process's part of a mini-batch drawn alike on every process, as positions in it:
    every N-th region under ``torchrun`` (N processes; DDP averages their gradients), all of it
    for one process. ``x[share()]`` of anything laid out as the batch, [B, ...] -> [b, ...].
    (A share may be one region smaller than another; ``_train_step`` weighs them right.)"""
    return slice(distributed.rank(), None, distributed.world_size())


def _train_step(net, optimizer, regions, labels, flip, batch_size: int) -> float:
    """One SGD step on this process's warped regions [b, 3, S, S] (those with ``flip`` [b]
    mirrored) of a mini-batch of ``batch_size`` regions in all; returns the mini-batch's loss.

    The loss is the mean over the *whole* mini-batch: under ``torchrun`` each of N processes sums
    its share and scales by N / batch_size, and DistributedDataParallel's average of the N
    gradients is then the gradient of that mean, whatever the shares' sizes."""
    flip = flip.to(regions.device)
    regions = torch.where(flip[:, None, None, None], regions.flip(-1), regions)
    world = distributed.world_size()
    loss = F.cross_entropy(net(regions), labels.to(regions.device),  # (b, K+1) logits, (b,) labels
                           reduction="sum") * world / batch_size
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return distributed.agree([loss.item()], "mean")[0]


def agreed_progress(progress: "Progress", step: int) -> float:
    """How far training is at ``step`` (0..1), the same on every process: the furthest along
    (each process reads its own clock; the learning-rate drop and the stop must not differ)."""
    return distributed.agree([progress(step)])[0]


def pretrain_on_crops(cnn: RegionCNN, images: list[Tensor], image_index: Tensor, gt_boxes: Tensor,
                      gt_labels: Tensor, *, epochs: int, recipe: Recipe, context_pad: float,
                      batch_size: int = 128, jitter: float = 0.1, seed: int = 0,
                      deadline: float | None = None, max_steps: int | None = None) -> list[dict]:
    """Step 1: K-way classification of ground-truth crops; stands in for ImageNet pre-training.

    images: normalised [3, H, W] each, on the CNN's device; image_index [G], gt_boxes [G, 4],
    gt_labels [G] in 1..K. A temporary K-way layer replaces ``cls_score`` and is discarded
    afterwards. ``recipe``: the optimizer, its rate and the drop (``stages.recipe.Recipe``; R-CNN
    pre-trains with SGD at ``pretrain_lr``). Stops early at ``deadline`` (a ``time.perf_counter()`` value) or after
    ``max_steps`` mini-batches. Under ``torchrun`` each process warps its share of every
    mini-batch, as in ``finetune``. Returns the loss history.
    """
    G = len(gt_boxes)
    if G == 0 or epochs <= 0:
        return []
    K = cnn.cls_score.out_features - 1
    device = cnn.cls_score.weight.device
    head = nn.Linear(cnn.fc.fc7.out_features, K).to(device)  # our "1000-way ImageNet layer"
    kept_head, cnn.cls_score = cnn.cls_score, head
    optimizer = _optimizer(cnn, recipe)
    net = distributed.wrap(cnn, device)  # DDP under torchrun, else the CNN itself
    generator = torch.Generator().manual_seed(seed)  # the same draws on every process
    steps_per_epoch = math.ceil(G / batch_size)
    total, history = epochs * steps_per_epoch, []
    if max_steps is not None:
        total = min(total, max_steps)
    progress = Progress(total, deadline)
    cnn.train()
    try:
        for step in range(total):
            done = agreed_progress(progress, step)
            if done >= 1:
                break  # out of time
            if step % steps_per_epoch == 0:
                order = torch.randperm(G, generator=generator)  # a new epoch: reshuffle
            idx = order[(step % steps_per_epoch) * batch_size:][:batch_size]  # (B,)
            boxes = jitter_boxes(gt_boxes[idx], jitter, generator)
            flip = torch.rand(len(idx), generator=generator) < 0.5  # (B,) mirror half the crops
            mine = share()  # this process's positions in the batch (all of them for one process)
            regions = warp_from_images(images, image_index[idx[mine]], boxes[mine], cnn.warp_size,
                                       context_pad)  # (b, 3, S, S)
            _step_lr(optimizer, recipe, done)
            loss = _train_step(net, optimizer, regions, gt_labels[idx[mine]] - 1, flip[mine],
                               len(idx))  # labels 0..K-1
            history.append({"step": "pretrain", "epoch": step // steps_per_epoch + 1, "loss": loss})
    finally:
        cnn.cls_score = kept_head
    return history


def finetune(cnn: RegionCNN, images: list[Tensor], image_index: Tensor, boxes: Tensor,
             labels: Tensor, *, epochs: float | None, recipe: Recipe, context_pad: float,
             batch_positives: int = 32, batch_negatives: int = 96, seed: int = 0,
             deadline: float | None = None, max_steps: int | None = None) -> list[dict]:
    """Step 2: (K+1)-way fine-tuning on warped regions, 32 positives + 96 background per batch.

    The pool of regions: image_index [P], boxes [P, 4], labels [P] (0 = background, 1..K a
    positive, i.e. IoU >= 0.5 with a ground truth of that class, sec. 2.3). One epoch = as many
    mini-batches as it takes to draw every positive once on average. With no positives at all
    (a data set without objects) the batches are all background. ``max_steps``: at most that many
    mini-batches; with ``epochs=None``, exactly that many (unless ``deadline`` comes first).
    ``recipe``: the optimizer, its rate and the drop (``stages.recipe.Recipe``: the R-CNN config).

    Under ``torchrun`` every process draws the same mini-batch (the same generator) and warps its
    share of it (``share``); DistributedDataParallel averages the gradients, so each process takes
    the step one process would have taken on the whole batch.
    """
    cnn.cls_score.reset_parameters()  # "replacing the 1000-way layer with a new (N+1)-way one"
    positives = torch.where(labels > 0)[0]  # (P+,)
    negatives = torch.where(labels == 0)[0]  # (P-,)
    n_pos = min(batch_positives, len(positives))
    n_neg = min(batch_negatives, len(negatives))
    if n_pos + n_neg == 0:
        return []
    if epochs is None:  # a budget in steps alone
        if max_steps is None:
            raise ValueError("finetune needs epochs or max_steps")
        steps = max_steps
    else:
        steps = max(1, math.ceil(epochs * max(len(positives), 1) / max(n_pos, 1)))
        if max_steps is not None:
            steps = min(steps, max_steps)
    optimizer = _optimizer(cnn, recipe)
    net = distributed.wrap(cnn, cnn.cls_score.weight.device)  # DDP under torchrun
    generator = torch.Generator().manual_seed(seed)  # the same draws on every process
    history = []
    progress = Progress(steps, deadline)
    cnn.train()
    for step in range(steps):
        done = agreed_progress(progress, step)
        if done >= 1:
            break  # out of time
        idx = torch.cat([positives[torch.randint(len(positives), (n_pos,), generator=generator)],
                         negatives[torch.randint(len(negatives), (n_neg,), generator=generator)]])
        flip = torch.rand(len(idx), generator=generator) < 0.5  # (B,) mirror half the crops
        mine = idx[share()]  # this process's regions of the batch (all of them for one process)
        regions = warp_from_images(images, image_index[mine], boxes[mine], cnn.warp_size,
                                   context_pad)  # (b, 3, S, S), b = B = 128 on one process
        _step_lr(optimizer, recipe, done)
        loss = _train_step(net, optimizer, regions, labels[mine], flip[share()], len(idx))
        history.append({"step": "finetune", "epoch": (step + 1) * n_pos / max(len(positives), 1),
                        "loss": loss})
    return history

