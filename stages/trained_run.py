"""A trained run rebuilt: ``<folder>/checkpoint.pt`` -> the stage's model, in eval mode, to detect.

What ``python -m stages.predict``, the lecture figures and the notebooks load. The model is rebuilt
by its stage's own builder from the config its checkpoint saved (the flags it was trained with,
values chosen from the data included), and its weights are restored:

    stage (checkpoint)     rebuilt by                                 its proposals
    rcnn                   rcnn.model.model_from_checkpoint           selective search (or sliding
                           (the CNN; SVMs, regressors from "extra")   windows), computed live
    fast_rcnn              fast_rcnn.model.build_fast_rcnn            selective search, from the
                                                                      cache <data_root>/proposals
    faster_rcnn            faster_rcnn.model.build_faster_rcnn        the RPN
    mask_rcnn              mask_rcnn.model.build_mask_rcnn            the RPN (on each FPN level)
    mask_rcnn_torchvision  torchvision.finetune.build_detector (torchvision's MaskRCNN: on our
                           backbone, or maskrcnn_resnet50_fpn when fine-tuned from COCO weights)

    load_run(folder)    -> LoadedRun(stage, model, cfg, class_names, long_side, title, ...)
    rebuild(state)      -> (model, cfg): a checkpoint already read by ``checkpoint.load_checkpoint``
    command_for(folder) the command that trains the run a folder is meant to hold

The image size a run was trained at is its config's ``long_side`` (None or 0: the images as they
were): a run sees new images best resized the same way (``stages.data.transforms.Resize``).
The stage packages are imported inside ``rebuild``: they import ``stages.training`` themselves, and
only the stage being loaded is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from stages.training.checkpoint import CheckpointError, load_checkpoint, restore
from stages.flags import dataclass_from_dict
from stages.training.engine import CHECKPOINT

# the four stages in the order of the papers (a run folder of each is runs/<stage>)
STAGES = ("rcnn", "fast_rcnn", "faster_rcnn", "mask_rcnn")
TITLES = {"rcnn": "R-CNN", "fast_rcnn": "Fast R-CNN", "faster_rcnn": "Faster R-CNN",
          "mask_rcnn": "Mask R-CNN", "mask_rcnn_torchvision": "torchvision's Mask R-CNN"}


@dataclass(frozen=True)
class LoadedRun:
    """A trained run, rebuilt. ``model(images)`` detects (one dict per image, the shared call)."""

    stage: str  # the stage that wrote the checkpoint: "faster_rcnn", ...
    model: nn.Module  # in eval mode, on the device it was loaded to
    cfg: object  # the stage's config dataclass, as trained (RCNNConfig, FasterRCNNConfig, ...)
    class_names: list[str]  # ["background", ...]: label k of a detection is class_names[k]
    long_side: int | None  # the image size it trained at (longer side, px); None: as they were
    title: str  # the paper's name: "Faster R-CNN"
    proposals: str  # where its proposals come from: "selective-search", "RPN", ...
    path: Path  # the checkpoint file
    trained: str  # how long it trained: "120 steps, 241 s of training"

    def describe(self) -> str:
        """"runs/faster_rcnn/checkpoint.pt (120 steps, 241 s of training)": which run drew what."""
        return f"{self.path} ({self.trained})"


def command_for(folder: str | Path, stage: str | None = None) -> str:
    """``python -m stages.<stage>`` with ``--out`` where ``folder`` is not its default,
    ``runs/<stage>``; ``stage`` defaults to the folder's name."""
    folder = Path(folder)
    stage = stage or folder.name
    if stage not in STAGES:  # a folder named otherwise: any stage's command writes it
        return f"a stage command with --out {folder} (python -m stages.mask_rcnn --out {folder})"
    out = "" if folder == Path("runs") / stage else f" --out {folder}"
    return f"python -m stages.{stage}{out}"


def load_run(folder: str | Path, device: str | torch.device = "cpu", data_root: str | Path = "data",
             stages: tuple[str, ...] | None = None) -> LoadedRun:
    """The run in ``folder`` (``<folder>/checkpoint.pt``), rebuilt on ``device``.

    ``data_root``: where Fast R-CNN's selective-search cache lives (``<data_root>/proposals``).
    ``stages``: the stages accepted (None: any). A missing checkpoint, a damaged one, one of
    another stage and an unfinished R-CNN each raise ``CheckpointError`` with one line: the file,
    and what to do (for a missing one, the command that trains it)."""
    folder = Path(folder)
    path = folder / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"no trained run at {path}: run {command_for(folder)}")
    state = load_checkpoint(path)
    if stages is not None and state["stage"] not in stages:
        raise CheckpointError(f"{path} was written by stage '{state['stage']}', "
                              f"not {' or '.join(stages)}")
    model, cfg = rebuild(state, data_root)
    steps = f"{state['step']} steps, " if state.get("step") else ""  # R-CNN counts no steps
    return LoadedRun(stage=state["stage"], model=model.to(device), cfg=cfg,
                     class_names=list(state["class_names"]),
                     long_side=state["config"].get("long_side") or None,
                     title=TITLES.get(state["stage"], state["stage"]),
                     proposals=proposal_method(state["stage"], cfg), path=path,
                     trained=f"{steps}{state.get('train_time_s', 0.0):.0f} s of training")


def rebuild(state: dict, data_root: str | Path = "data") -> tuple[nn.Module, object]:
    """``(model, cfg)``: a loaded checkpoint (``load_checkpoint``) rebuilt by its stage's builder
    from the config it saved, its weights restored, in eval mode, on the CPU."""
    stage, config = state["stage"], state["config"]
    K = len(state["class_names"]) - 1  # object classes, background not counted
    if stage == "rcnn":
        from stages.rcnn.config import RCNNConfig
        from stages.rcnn.model import model_from_checkpoint, phases_done
        from stages.rcnn.proposers import make_proposer
        done = phases_done(state)
        if "svm_bbox" not in done:
            raise CheckpointError(f"{state['path']} holds an unfinished R-CNN (phases done: "
                                  f"{done}); train it first: python -m stages.rcnn --resume")
        cfg = dataclass_from_dict(RCNNConfig, config)
        # its SVMs and regressors are tensors in "extra", not nn.Module state: rebuilt here
        return model_from_checkpoint(state, cfg, make_proposer(cfg)).eval(), cfg
    if stage == "fast_rcnn":
        from stages.fast_rcnn.config import FastRCNNConfig
        from stages.fast_rcnn.model import build_fast_rcnn
        from stages.selective_search import CACHE_DIR, ProposalCache, SelectiveSearchConfig
        cfg = dataclass_from_dict(FastRCNNConfig, config)
        # the selective-search flags it trained with are in its config too (the cache's key)
        cache = ProposalCache(Path(data_root) / CACHE_DIR,
                              dataclass_from_dict(SelectiveSearchConfig, config))
        model = build_fast_rcnn(cfg, K, cache)
    elif stage == "faster_rcnn":
        from stages.faster_rcnn.config import FasterRCNNConfig
        from stages.faster_rcnn.model import build_faster_rcnn
        cfg = dataclass_from_dict(FasterRCNNConfig, config)
        model = build_faster_rcnn(cfg, K)
    elif stage == "mask_rcnn":
        from stages.mask_rcnn.config import MaskRCNNConfig
        from stages.mask_rcnn.model import build_mask_rcnn
        cfg = dataclass_from_dict(MaskRCNNConfig, config)
        model = build_mask_rcnn(cfg, K)
    elif stage == "mask_rcnn_torchvision":
        from stages.mask_rcnn.config import MaskRCNNConfig
        from stages.torchvision.finetune import FinetuneConfig, build_detector
        cfg = dataclass_from_dict(MaskRCNNConfig, config)
        # the model it trained, built from this checkpoint (nothing fetched)
        choice = dataclass_from_dict(FinetuneConfig, config)
        model = build_detector(cfg, choice, K, config.get("long_side"), restore=state["path"])
    else:
        raise CheckpointError(f"{state['path']}: no model builder for stage '{stage}'")
    try:
        restore(state, model, restore_rng=False)
    except RuntimeError as e:  # weights of other names or shapes: another version's
        raise CheckpointError(f"{state['path']}: its weights do not fit the {TITLES[stage]} its "
                              f"config describes (written by another version?): "
                              f"{str(e).splitlines()[0]}; train afresh") from None
    return model.eval(), cfg


def proposal_method(stage: str, cfg) -> str:
    """Where a stage's proposals come from, for a figure's title: "selective-search", "RPN"."""
    if stage == "rcnn":
        return "sliding-window" if cfg.proposals == "sliding_window" else "selective-search"
    return "selective-search" if stage == "fast_rcnn" else "RPN"
