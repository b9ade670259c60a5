"""The optimizer and its learning-rate schedule: one builder and one schedule for every stage.

    optimizer = build_optimizer(model, "sgd", lr=0.001, momentum=0.9, weight_decay=5e-4)
    at step t, with a fraction ``done`` of the training behind it:
        lr_t = lr * lr_factor(t, done, warmup_steps, lr_drop)

The papers' solver is SGD with momentum 0.9 and weight decay 0.0005 at lr 0.001 (R-CNN sec. 2.3,
Fast R-CNN sec. 2.3), the rate divided by 10 for the last part of the training (Fast R-CNN:
after 30k of 40k iterations, ``lr_drop=0.75``). Stages 2-4 add a linear warm-up (Goyal et al.
2017) and fine-tune with AdamW (their configs say why); R-CNN's CNN trains with the papers'
schedule and no warm-up. ``stages.training.engine.train`` sets the rate at every step.
"""

from __future__ import annotations

import torch

OPTIMIZERS = ("sgd", "adamw")


def build_optimizer(model: torch.nn.Module, kind: str, lr: float, *, momentum: float = 0.9,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``kind`` over the parameters that train (a frozen backbone part has none), at ``lr``:
    "sgd" (the papers': SGD with ``momentum``, L2 ``weight_decay``) or "adamw" (AdamW, the same
    decay, decoupled; ``momentum`` is not used)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if kind == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer {kind!r}: expected one of {', '.join(OPTIMIZERS)}")


def lr_factor(step: int, done: float, warmup_steps: int = 0, lr_drop: float | None = None) -> float:
    """What multiplies the initial learning rate at optimizer step ``step`` (0 = the first), with
    the fraction ``done`` (0..1) of the training behind it.

    A linear warm-up over the first ``warmup_steps`` steps, (step + 1) / warmup_steps (0: none);
    then 1; divided by 10 once ``done`` >= ``lr_drop`` (None: never), the papers' step schedule.
    ``done`` is measured in whatever ends the training (epochs, steps or seconds), so that a run
    cut short by its time budget still ends at the low rate. Worked numbers, warmup_steps=50,
    lr_drop=0.75: step 0 -> 0.02, step 49 -> 1.0, done 0.8 -> 0.1."""
    factor = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    if lr_drop is not None and done >= lr_drop:
        factor *= 0.1
    return factor
