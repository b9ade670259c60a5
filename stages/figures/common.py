"""What every lecture figure draws from, and how it looks on a slide.

    Inputs          one validation image of ``--data``, its selective-search proposals, the runs;
                    a photo (``--photo``) and the runs trained on photos (``--photo-runs``)
    Skip            a figure that cannot be made here (the message names the command that fixes it)
    trained_model   ``<runs>/<stage>/checkpoint.pt`` rebuilt into the stage's model, in eval mode
    DPI, FONTS, CAPTION, GREEN, RED, ORANGE    a projector's sizes and the figures' three colours

and the small helpers the pooling pictures share (``map_of_image``, ``zoom``, ``thicker``,
``box_size``) and ``spread``, which picks examples evenly from a sorted list.

Boxes are (x1, y1, x2, y2) in image pixels throughout; a feature map's cell (i, j) is drawn at
(x, y) = (j, i), so a box goes onto the map scaled by 1 / stride.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stages.data.sources import DatasetError, load_dataset
from stages.data.transforms import val_transforms
from stages.figures.draw import to_numpy_image
from stages.selective_search import CACHE_DIR, ProposalCache
from stages.training.checkpoint import CheckpointError, load_checkpoint
from stages.training.engine import CHECKPOINT
from stages.trained_run import rebuild

if TYPE_CHECKING:  # the stage packages are imported by the figures that use them, not here
    from stages.faster_rcnn.config import FasterRCNNConfig
    from stages.mask_rcnn.config import MaskRCNNConfig

DPI = 150
# matplotlib's defaults (10 pt) are unreadable from the back of a lecture hall
FONTS = {"font.size": 14, "axes.titlesize": 15, "axes.labelsize": 14, "legend.fontsize": 12,
         "figure.titlesize": 19, "xtick.labelsize": 12, "ytick.labelsize": 12}
CAPTION = 12  # the captions drawn on boxes
PHOTO_RUNS = "runs/pennfudan"  # the real-photo figure's runs: <PHOTO_RUNS>/<stage>, Penn-Fudan's
GREEN, RED, ORANGE = "#2ca02c", "#d62728", "#ff7f0e"


class Skip(Exception):
    """A figure that cannot be made here; the message says why, and which command would fix it."""


# ------------------------------------------------------------------------------------------------
# What the figures draw from: one image, its proposals, the trained runs
# ------------------------------------------------------------------------------------------------

class Inputs:
    """One validation image of ``--data`` (and the first few, for the masks), its selective-search
    proposals, and the checkpoints under ``--runs``. Each is loaded on first use and kept, so
    selective search runs once for all the figures. And, for the real-photo figure, ``--photo``
    and the runs trained on such photos, ``--photo-runs``."""

    def __init__(self, data: str = "synthetic", data_root: str | Path = "data",
                 runs: str | Path = "runs", image_index: int = 0, photo: str | Path | None = None,
                 photo_runs: str | Path = PHOTO_RUNS):
        self.data, self.data_root, self.runs = data, Path(data_root), Path(runs)
        self.image_index = image_index
        # the real-photo figure: one photo, and runs trained on photos of its kind
        self.photo = Path(photo) if photo is not None else None
        self.photo_runs = Path(photo_runs)
        self.used: list[str] = []  # the runs the figure being made read ("which run it came from")

    @cached_property
    def val(self):
        try:
            _, val = load_dataset(self.data, self.data_root, val_transforms(), val_transforms())
        except DatasetError as e:
            raise SystemExit(f"error: {e}") from None
        if not 0 <= self.image_index < len(val):
            raise SystemExit(f"error: --image {self.image_index}: the validation set of "
                             f"{self.data} has {len(val)} images (0..{len(val) - 1})")
        return val

    @cached_property
    def item(self) -> tuple[torch.Tensor, dict]:
        return self.val[self.image_index]

    @property
    def image(self) -> torch.Tensor:
        return self.item[0]  # float [3, H, W] in [0, 1]

    @property
    def target(self) -> dict:
        return self.item[1]

    @property
    def class_names(self) -> list[str]:
        return self.val.class_names

    @cached_property
    def selective_search(self) -> tuple[torch.Tensor, float]:
        """``(boxes [P, 4], seconds)``: the proposals stages 1 and 2 use, from their cache."""
        from stages.rcnn.config import RCNNConfig
        cache = ProposalCache(self.data_root / CACHE_DIR, RCNNConfig().selective_search())
        return cache.get(self.image)

    @cached_property
    def roi(self) -> torch.Tensor:
        """The RoI of the pooling figures: the image's largest object [4] (the most bins to see),
        or a centred 48-px box on an image without objects."""
        boxes = self.target["boxes"]
        if len(boxes) == 0:
            H, W = self.image.shape[-2:]
            return torch.tensor([W / 2 - 24, H / 2 - 24, W / 2 + 24, H / 2 + 24])
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return boxes[area.argmax()]

    def command(self, module: str, out: Path) -> str:
        """The command that writes ``out``, with the flags that differ from its defaults."""
        parts = [f"python -m {module}"]
        if self.data != "synthetic":
            parts.append(f"--data {self.data}")
        if self.data_root != Path("data"):
            parts.append(f"--data-root {self.data_root}")
        if out != Path("runs") / out.name:
            parts.append(f"--out {out}")
        return " ".join(parts)

    def checkpoint(self, run: str, stages: tuple[str, ...]) -> dict:
        """``<runs>/<run>/checkpoint.pt``, loaded and checked against the data's classes; ``Skip``
        (with the command to run) when it is missing, damaged, or of another stage."""
        path = self.runs / run / CHECKPOINT
        if not path.is_file():
            command = self.command(f"stages.{run}", path.parent)
            raise Skip(f"no trained run at {path}: run `{command}`")
        try:
            state = load_checkpoint(path, class_names=self.class_names)
        except CheckpointError as e:
            raise Skip(str(e)) from None
        if state["stage"] not in stages:
            raise Skip(f"{path} was written by stage '{state['stage']}', not {' or '.join(stages)}")
        steps = f"{state['step']} steps, " if state.get("step") else ""  # R-CNN counts no steps
        self.used.append(f"{path} ({steps}{state.get('train_time_s', 0.0):.0f} s of training)")
        return state


def trained_model(src: Inputs, run: str, stages: tuple[str, ...]
                  ) -> tuple[nn.Module, FasterRCNNConfig | MaskRCNNConfig]:
    """``(model, cfg)``: the checkpoint of ``<runs>/<run>`` (``Inputs.checkpoint``: ``Skip`` when
    it is missing, damaged or of a stage not in ``stages``), rebuilt by the stage's own model
    builder from the config it saved, its weights restored, in eval mode
    (``stages.trained_run.rebuild``, which ``python -m stages.predict`` loads its runs with)."""
    state = src.checkpoint(run, stages)
    try:
        return rebuild(state, src.data_root)
    except CheckpointError as e:  # weights that do not fit, an unfinished R-CNN
        raise Skip(str(e)) from None


# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------

def spread(indices: torch.Tensor, n: int) -> torch.Tensor:
    """At most ``n`` of ``indices``, evenly spread over them (first and last included)."""
    if len(indices) <= n:
        return indices
    return indices[torch.linspace(0, len(indices) - 1, n).round().long()]


def map_of_image(image: torch.Tensor, stride: int) -> np.ndarray:
    """A stand-in feature map for the pooling pictures: the image averaged over stride x stride
    cells, (H/stride, W/stride, 3). Pooling's geometry depends only on the map's size; this map
    lets the eye find the object in it."""
    return to_numpy_image(F.avg_pool2d(image[None], stride)[0])  # (1, 3, H, W) -> (H/s, W/s, 3)


def zoom(ax, box, scale: float, map_size: tuple[int, int], margin: float = 1.5):
    """Show the cells around a RoI: map coordinates put cell (i, j) at (x, y) = (j, i)."""
    H, W = map_size
    x1, y1, x2, y2 = (float(v) * scale - 0.5 for v in box)
    ax.set_xlim(max(x1 - margin, -0.5), min(x2 + margin, W - 0.5))
    ax.set_ylim(min(y2 + margin, H - 0.5), max(y1 - margin, -0.5))


def thicker(ax, factor: float = 2.0):
    """Lines for a projector: the pooling pictures' boxes (drawn at the notebooks' widths by
    ``stages.figures.draw``) ``factor`` times wider."""
    for patch in ax.patches:
        patch.set_linewidth(patch.get_linewidth() * factor)


def box_size(box) -> str:
    """A box's width x height for a title: "48 x 36 px"."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return f"{x2 - x1:.0f} x {y2 - y1:.0f} px"
