"""``run_stage(stage, run, cfg) -> Result``: any stage, or torchvision's model beside it, from Python.

Each stage command is a thin wrapper (``python -m stages.fast_rcnn`` parses its flags into a
``RunConfig`` and the stage's config, then calls its ``train_and_evaluate``). Scripts that run
stages (``stages.compare``, the Mask R-CNN ablation, the benchmarks) call the same functions with
typed configs instead of building a command line for a ``main`` to parse again::

    from stages.run_stage import default_config, run_stage
    from stages.flags import RunConfig

    run = RunConfig(steps=300, out="runs/mask_rcnn_roi")
    result = run_stage("mask_rcnn", run, default_config("mask_rcnn", pool="roi"))

``cfg`` None, or ``default_config(stage)``, is the command's defaults: what ``python -m
stages.<stage>`` trains with no flag (the fields of ``stages.run.FROM_DATA`` chosen from
the data). The names are those of
the result records (``Result.stage``) and of the run folders:

    rcnn, fast_rcnn, faster_rcnn, mask_rcnn      our four stages
    torchvision_faster_rcnn, torchvision_mask_rcnn   torchvision's peers on our backbone
                                                 (``stages.torchvision.peers``, cfg: PeerConfig)
    mask_rcnn_torchvision                        torchvision's fine-tuning tutorial
                                                 (``stages.torchvision.finetune``)
"""

from __future__ import annotations

import functools

from stages.evaluation import Result
from stages.fast_rcnn.__main__ import train_and_evaluate as fast_rcnn
from stages.fast_rcnn.config import FastRCNNConfig
from stages.faster_rcnn.__main__ import train_and_evaluate as faster_rcnn
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.mask_rcnn.__main__ import train_and_evaluate as mask_rcnn
from stages.mask_rcnn.config import MaskRCNNConfig
from stages.rcnn.__main__ import train_and_evaluate as rcnn
from stages.rcnn.config import RCNNConfig
from stages.torchvision import finetune, peers
from stages.flags import RunConfig
from stages.run import command_defaults

STAGES = {
    "rcnn": rcnn,
    "fast_rcnn": fast_rcnn,
    "faster_rcnn": faster_rcnn,
    "mask_rcnn": mask_rcnn,
    "torchvision_faster_rcnn": functools.partial(peers.train_and_evaluate, "faster_rcnn"),
    "torchvision_mask_rcnn": functools.partial(peers.train_and_evaluate, "mask_rcnn"),
    "mask_rcnn_torchvision": finetune.train_and_evaluate,
}
# each one's config (``cfg``)
CONFIGS = {"rcnn": RCNNConfig, "fast_rcnn": FastRCNNConfig, "faster_rcnn": FasterRCNNConfig,
           "mask_rcnn": MaskRCNNConfig, "torchvision_faster_rcnn": peers.PeerConfig,
           "torchvision_mask_rcnn": peers.PeerConfig, "mask_rcnn_torchvision": MaskRCNNConfig}


def run_stage(stage: str, run: RunConfig, cfg=None, **configs) -> Result | None:
    """Train (or resume, or evaluate: ``run.resume``, ``run.eval_only``) the stage ``stage`` into
    ``run.out`` and evaluate it; returns its result record, also written to
    ``<out>/metrics.json`` (None on the other ranks under torchrun). ``cfg``: the stage's config
    (None: its command's defaults); ``configs``: a stage's other configs by name (Fast R-CNN's
    ``ss``, the fine-tuning path's ``choice``, R-CNN's ``test_time``)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}: expected one of {', '.join(STAGES)}")
    return STAGES[stage](run, cfg, **configs)


def default_config(stage: str, **changes):
    """The config of ``stage`` as its command builds it with no flag, with ``changes``
    (``stages.run.command_defaults``): ``default_config("mask_rcnn", pretrained="none")``
    is ``python -m stages.mask_rcnn --pretrained none``."""
    return command_defaults(CONFIGS[stage], **changes)
