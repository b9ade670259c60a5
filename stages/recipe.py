"""The training recipe: the settings no paper fixes for us, one dataclass that every stage shares.

The stage configs hold what the papers define (pooling size, sampling, loss weights, anchors,
thresholds), each field citing its section. How a network is trained on our 128-pixel images in
two CPU minutes is another matter, decided by measurement rather than by a paper: the optimizer
and its rate, the warm-up, gradient clipping, when the rate drops, how long the presets train, and
which kernel (ours or torchvision's) runs the pooling and NMS. Those fields live here, once:

    optimizer, lr, momentum, weight_decay   what takes a step (``stages.training.optimizer.build_optimizer``)
    warmup_steps, lr_drop                   the rate at each step: a linear warm-up, then / 10
    clip_grad_norm                          a guard against one bad batch
    quick_time_budget, full_epochs          the presets: --preset quick trains for seconds, full
                                            for epochs (``stages.run.budget``)
    pool_kernel, nms_kernel                 ours (the readable Python) or torchvision's (C++)

A stage config inherits them (``class FastRCNNConfig(Recipe, BackboneConfig)``): the flags keep
their names (``--lr``, ``--warmup-steps``, ``--pool-kernel`` ...). The measurements behind each
default are in ``benchmarks/report.md``, section 17 ("Measurements behind the defaults").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stages.flags import check_choices, param

Kernel = Literal["ours", "torchvision"]


@dataclass(frozen=True)
class Recipe:
    """How a stage trains (optimizer, schedule, budgets) and which kernels run: no paper's values."""

    # what takes a step: the papers' SGD, or AdamW (measured better from ImageNet weights)
    optimizer: Literal["adamw", "sgd"] = param("adamw", paper="SGD (Fast R-CNN sec. 2.3)", measured="section 17",
                                               help="adamw | sgd (with --momentum)")
    lr: float = param(1e-3, paper="SGD at 0.001 (Fast R-CNN sec. 2.3)", measured="section 17",
                      help="the learning rate after the warm-up")
    momentum: float = param(0.9, paper="0.9 (Fast R-CNN sec. 2.3)", help="SGD only")
    weight_decay: float = param(1e-4, paper="0.0005 (Fast R-CNN sec. 2.3)", help="L2 penalty on the weights (torchvision: 1e-4)")
    # the rate at each step
    warmup_steps: int = param(50, measured="section 17", help="steps of linear warm-up of the learning rate")
    clip_grad_norm: float = param(10.0, measured="section 17",
                                  help=("scale all gradients down to this norm when above it, a guard against one bad batch "
                                        "blowing the weights up (tests/test_training_errors.py); 0: off"))
    lr_drop: float = param(0.75, paper="30k of 40k iterations (Fast R-CNN sec. 2.3)",
                           help="lr / 10 after this fraction of the training")
    # the presets
    quick_time_budget: float = param(120.0,
                                     help=("seconds of training in the quick preset (the README's comparison: four stages "
                                           "within 12 minutes on 2 cores)"))
    full_epochs: int = param(30, help="epochs of training in the full preset")
    # the kernels: ours is equal (tested) but a Python loop over RoIs, ~10x slower per step; the
    # notebooks and tests run ours, training runs torchvision's for speed
    pool_kernel: Kernel = param("torchvision", help="ours | torchvision: who runs RoI pooling")
    nms_kernel: Kernel = param("torchvision", help="ours | torchvision: who runs NMS")

    def __post_init__(self):  # a value outside a field's range or choices: one clear line
        check_choices(self)
