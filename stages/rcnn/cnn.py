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

Both steps train through the loop every stage trains with (``stages.training.engine.train``),
which reads a model as ``model(images, targets) -> dict of losses``: the mini-batches are drawn in
advance (``crop_batches``, ``sampled_batches``) into ``RegionBatches``, whose items are warped
regions and their labels, and ``RegionClassifier`` is the CNN with its softmax loss. The solver is
the rcnn code's (R-CNN's Recipe: ``momentum``, ``weight_decay``, ``lr_drop``): ``build_optimizer``
and the schedule ``lr_factor`` are those of every stage.

Shape shorthand: R regions, S warp size, K classes, D = fc_dim. ``pred_*`` are network outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from stages.rcnn.regions import warp_from_images
from stages.training import distributed, engine
from stages.training.optimizer import build_optimizer


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


def share() -> slice:
    """This process's part of a mini-batch drawn alike on every process, as positions in it:
    every N-th region under ``torchrun`` (N processes; DDP averages their gradients), all of it
    for one process. ``x[share()]`` of anything laid out as the batch, [B, ...] -> [b, ...].
    (A share may be one region smaller than another; ``RegionClassifier`` weighs them right.)"""
    return slice(distributed.rank(), None, distributed.world_size())


class RegionBatches(torch.utils.data.Dataset):
    """R-CNN's mini-batches of warped regions, drawn in advance, warped when the loop reads one.

    ``plan``: one (image_index [B], boxes [B, 4], labels [B], flip [B] bool) per mini-batch: which
    region of which image, its class, and whether to mirror it. Item t is this process's share of
    mini-batch t (``share``), as ``engine.train`` reads a dataset of mini-batches
    (``batch_size=None``): ``([regions [b, 3, S, S]], [{"labels": [b], "batch_size": B}])``.
    The warps run on the device of ``images`` (normalised [3, H, W] each)."""

    def __init__(self, images, plan: list[tuple[Tensor, Tensor, Tensor, Tensor]], warp_size: int,
                 context_pad: float):
        self.images, self.plan = images, plan
        self.warp_size, self.context_pad = warp_size, context_pad

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, t: int):
        image_index, boxes, labels, flip = self.plan[t]
        mine = share()  # this process's positions in the batch (all of them for one process)
        regions = warp_from_images(self.images, image_index[mine], boxes[mine], self.warp_size,
                                   self.context_pad)  # (b, 3, S, S)
        flip = flip[mine].to(regions.device)
        regions = torch.where(flip[:, None, None, None], regions.flip(-1), regions)  # mirrored
        return [regions], [{"labels": labels[mine], "batch_size": len(labels)}]


class RegionClassifier(nn.Module):
    """The CNN and its softmax loss, called as the training loop calls every stage's model:
    ``model(images, targets) -> {"loss_cls": ...}``, the images being one share of warped regions
    (``RegionBatches``), their labels in 0..C-1 (C = K + 1 when fine-tuning, 0 = background).

    ``loss_cls`` is the mean cross-entropy over the *whole* mini-batch of B regions: under
    ``torchrun`` each of N processes sums its share's and scales by N / B, and
    DistributedDataParallel's average of the N gradients is then the gradient of that mean,
    whatever the shares' sizes."""

    def __init__(self, cnn: RegionCNN):
        super().__init__()
        self.cnn = cnn

    def forward(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        (regions,), (target,) = images, targets
        logits = self.cnn(regions)  # (b, C)
        loss = F.cross_entropy(logits, target["labels"], reduction="sum")
        return {"loss_cls": loss * distributed.world_size() / target["batch_size"]}


def _train(cnn: RegionCNN, batches: RegionBatches, *, optimizer: str, lr: float, momentum: float,
           weight_decay: float, lr_drop: float, time_budget_s: float | None) -> list[float]:
    """One pass over ``batches`` through the loop every stage trains with (``engine.train``), with
    the optimizer every stage builds (``build_optimizer``) and the papers' schedule: the rate
    divided by 10 after ``lr_drop`` of the mini-batches (or of ``time_budget_s``, seconds of
    training); no warm-up and no gradient clipping, as R-CNN's solver; nothing written to disk
    (the command saves the CNN once fine-tuned). Returns each step's loss."""
    model = RegionClassifier(cnn)
    solver = build_optimizer(model, optimizer, lr, momentum=momentum, weight_decay=weight_decay)
    result = engine.train(model, solver, batches, out_dir=None, stage="rcnn", config={},
                          epochs=1, time_budget_s=time_budget_s, batch_size=None,
                          device=cnn.cls_score.weight.device, lr_drop=lr_drop,
                          checkpoint_every_s=None, progress=False)
    return [r["loss"] for r in result.history]


def crop_batches(image_index: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *, epochs: int,
                 batch_size: int, jitter: float, generator: torch.Generator,
                 max_steps: int | None = None) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Pre-training's mini-batches, a ``RegionBatches`` plan: each epoch, the G ground-truth
    crops in a new random order, ``batch_size`` at a time (an epoch's last one smaller), each box
    jittered (``jitter_boxes``), half of them mirrored; labels 0..K-1. At most ``max_steps``."""
    G = len(gt_boxes)
    steps_per_epoch = math.ceil(G / batch_size)
    total = epochs * steps_per_epoch
    if max_steps is not None:
        total = min(total, max_steps)
    plan = []
    for step in range(total):
        if step % steps_per_epoch == 0:
            order = torch.randperm(G, generator=generator)  # a new epoch: reshuffle
        idx = order[(step % steps_per_epoch) * batch_size:][:batch_size]  # (B,)
        boxes = jitter_boxes(gt_boxes[idx], jitter, generator)
        flip = torch.rand(len(idx), generator=generator) < 0.5  # (B,) mirror half the crops
        plan.append((image_index[idx], boxes, gt_labels[idx] - 1, flip))
    return plan


def sampled_batches(image_index: Tensor, boxes: Tensor, labels: Tensor, *, steps: int,
                    n_pos: int, n_neg: int,
                    generator: torch.Generator) -> list[tuple[Tensor, Tensor, Tensor, Tensor]]:
    """Fine-tuning's mini-batches, a ``RegionBatches`` plan (sec. 2.3): ``n_pos`` positives (over
    all classes) and ``n_neg`` background regions drawn at random from the pool, half of them
    mirrored."""
    positives = torch.where(labels > 0)[0]  # (P+,)
    negatives = torch.where(labels == 0)[0]  # (P-,)
    plan = []
    for _ in range(steps):
        idx = torch.cat([positives[torch.randint(len(positives), (n_pos,), generator=generator)],
                         negatives[torch.randint(len(negatives), (n_neg,), generator=generator)]])
        flip = torch.rand(len(idx), generator=generator) < 0.5  # (B,) mirror half the crops
        plan.append((image_index[idx], boxes[idx], labels[idx], flip))
    return plan


def pretrain_on_crops(cnn: RegionCNN, images: list[Tensor], image_index: Tensor, gt_boxes: Tensor,
                      gt_labels: Tensor, *, epochs: int, lr: float, context_pad: float,
                      momentum: float, weight_decay: float, lr_drop: float,
                      batch_size: int = 128, jitter: float = 0.1, seed: int = 0,
                      time_budget_s: float | None = None,
                      max_steps: int | None = None) -> list[dict]:
    """Step 1: K-way classification of ground-truth crops; stands in for ImageNet pre-training.

    images: normalised [3, H, W] each, on the CNN's device; image_index [G], gt_boxes [G, 4],
    gt_labels [G] in 1..K. A temporary K-way layer replaces ``cls_score`` and is discarded
    afterwards. SGD (``momentum``, ``weight_decay``) at ``lr``, divided by 10 after ``lr_drop``
    of the training. Stops early after ``time_budget_s`` seconds of training or ``max_steps``
    mini-batches. Under ``torchrun`` each process warps its share of every mini-batch, as in
    ``finetune``. Returns the loss history.
    """
    G = len(gt_boxes)
    if G == 0 or epochs <= 0:
        return []
    K = cnn.cls_score.out_features - 1
    device = cnn.cls_score.weight.device
    head = nn.Linear(cnn.fc.fc7.out_features, K).to(device)  # our "1000-way ImageNet layer"
    generator = torch.Generator().manual_seed(seed)  # the same draws on every process
    plan = crop_batches(image_index, gt_boxes, gt_labels, epochs=epochs, batch_size=batch_size,
                        jitter=jitter, generator=generator, max_steps=max_steps)
    if not plan:
        return []
    kept_head, cnn.cls_score = cnn.cls_score, head
    try:
        losses = _train(cnn, RegionBatches(images, plan, cnn.warp_size, context_pad),
                        optimizer="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay,
                        lr_drop=lr_drop, time_budget_s=time_budget_s)
    finally:
        cnn.cls_score = kept_head
    steps_per_epoch = math.ceil(G / batch_size)
    return [{"step": "pretrain", "epoch": step // steps_per_epoch + 1, "loss": loss}
            for step, loss in enumerate(losses)]


def finetune(cnn: RegionCNN, images: list[Tensor], image_index: Tensor, boxes: Tensor,
             labels: Tensor, *, epochs: float | None, lr: float, context_pad: float,
             momentum: float, weight_decay: float, lr_drop: float,
             batch_positives: int = 32, batch_negatives: int = 96, seed: int = 0,
             time_budget_s: float | None = None, optimizer: str = "sgd",
             max_steps: int | None = None) -> list[dict]:
    """Step 2: (K+1)-way fine-tuning on warped regions, 32 positives + 96 background per batch.

    The pool of regions: image_index [P], boxes [P, 4], labels [P] (0 = background, 1..K a
    positive, i.e. IoU >= 0.5 with a ground truth of that class, sec. 2.3). One epoch = as many
    mini-batches as it takes to draw every positive once on average. With no positives at all
    (a data set without objects) the batches are all background. ``max_steps``: at most that many
    mini-batches; with ``epochs=None``, exactly that many (unless ``time_budget_s``, seconds of
    training, comes first). ``optimizer`` ("sgd" or "adamw", ``build_optimizer``) at ``lr``,
    divided by 10 after ``lr_drop`` of the training.

    Under ``torchrun`` every process draws the same mini-batch (the same generator) and warps its
    share of it (``share``); DistributedDataParallel averages the gradients, so each process takes
    the step one process would have taken on the whole batch.
    """
    cnn.cls_score.reset_parameters()  # "replacing the 1000-way layer with a new (N+1)-way one"
    n_positives = int((labels > 0).sum())
    n_pos = min(batch_positives, n_positives)
    n_neg = min(batch_negatives, int((labels == 0).sum()))
    if n_pos + n_neg == 0:
        return []
    if epochs is None:  # a budget in steps alone
        if max_steps is None:
            raise ValueError("finetune needs epochs or max_steps")
        steps = max_steps
    else:
        steps = max(1, math.ceil(epochs * max(n_positives, 1) / max(n_pos, 1)))
        if max_steps is not None:
            steps = min(steps, max_steps)
    generator = torch.Generator().manual_seed(seed)  # the same draws on every process
    plan = sampled_batches(image_index, boxes, labels, steps=steps, n_pos=n_pos, n_neg=n_neg,
                           generator=generator)
    losses = _train(cnn, RegionBatches(images, plan, cnn.warp_size, context_pad),
                    optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay,
                    lr_drop=lr_drop, time_budget_s=time_budget_s)
    return [{"step": "finetune", "epoch": (step + 1) * n_pos / max(n_positives, 1), "loss": loss}
            for step, loss in enumerate(losses)]
