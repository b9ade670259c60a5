"""The notebooks' first cell, as one call, and ``show_source``, which prints an operator beside its equation.

    from stages.notebook import setup
    nb = setup("03")    # quick mode, device, folders, the data, the stage command's flags
    QUICK, DEVICE, RUNS, train, val = nb.quick, nb.device, nb.runs, nb.train, nb.val

``setup`` reads the environment, so that one notebook runs as a lesson, on a GPU and under the
tests (``tests/test_notebooks.py`` sets the first three):

    STAGES_QUICK=1     quick mode: a 24 + 12 image synthetic set, and the stage commands' flags
                       for seconds of training (the numbers are then noise; the code paths are not)
    STAGES_DATA_ROOT   where data and the selective-search cache live (default ../data: the
                       notebooks run in notebooks/)
    STAGES_RUNS        where trained runs live (default ../runs, where python -m stages.compare
                       writes them)
    STAGES_DEVICE      where training and evaluation run: auto (default: a CUDA GPU when there is
                       one), cpu, cuda or cuda:N. The pictures are drawn from models on the CPU.
    PENNFUDAN_DIR      the Penn-Fudan folder (notebook 04; default ../../shared/datasets/PennFudanPed)

What each notebook gets (``RECIPES``): the synthetic set with its training transforms, the
selective-search cache filled for some splits, and the quick-mode flags of the stage command that
``compare.ensure_run`` runs when ``runs/<stage>`` is missing:

    00  train, val without transforms      no cache            no command
    01  val_transforms for both (R-CNN's   no cache            --epochs 1 --time-budget 5
        training images are not flipped)
    02  train_transforms (random flips)    train and val       --epochs 3 --time-budget 10 --eval-every 0
    03  train_transforms                   val (section 6)     the same
    04  train_transforms                   no cache            the same
    05  no data (it reads runs/comparison.json and the data it names)

``show_source(function)`` prints the lines of a package function, so that a notebook shows the
operator it teaches with the package as their one home (STYLE.md principle 12).
"""

from __future__ import annotations

import ast
import inspect
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from stages.data.sources import load_dataset
from stages.data.synthetic import SyntheticConfig, ensure_synthetic
from stages.data.transforms import train_transforms, val_transforms
from stages.selective_search import CACHE_DIR, ProposalCache, fill_cache
from stages.devices import choose_device

QUICK_SYNTHETIC = SyntheticConfig(n_train=24, n_val=12)  # quick mode's data: seconds to generate


@dataclass(frozen=True)
class Recipe:
    """What one notebook's setup prepares (the table of the module docstring)."""

    transforms: Literal["none", "train", "val"] = "train"  # train_transforms: random flips
    fill_cache: tuple[str, ...] = ()  # the splits whose selective-search boxes are computed now
    quick_flags: tuple[str, ...] | None = None  # the stage command's quick-mode flags; None: no command
    load_data: bool = True  # notebook 05 reads the data its comparison names, later


TRAINING_FLAGS = ("--epochs", "3", "--time-budget", "10", "--eval-every", "0", "--no-progress")
RECIPES = {
    "00": Recipe(transforms="none"),
    "01": Recipe(transforms="val", quick_flags=("--epochs", "1", "--time-budget", "5", "--no-progress")),
    "02": Recipe(fill_cache=("train", "val"), quick_flags=TRAINING_FLAGS),
    "03": Recipe(fill_cache=("val",), quick_flags=TRAINING_FLAGS),
    "04": Recipe(quick_flags=TRAINING_FLAGS),
    "05": Recipe(load_data=False),
}


@dataclass(frozen=True)
class Setup:
    """What a notebook's first cell needs, computed once (``setup``)."""

    number: str  # "00" .. "05"
    quick: bool  # STAGES_QUICK=1: the tests' quick mode
    device_flag: str  # STAGES_DEVICE as given ("auto", "cpu", ...): the stage commands' --device
    device: torch.device  # where training and evaluation run: choose_device(device_flag)
    data_root: Path  # STAGES_DATA_ROOT
    runs: Path  # STAGES_RUNS
    pennfudan: Path  # PENNFUDAN_DIR
    synthetic: SyntheticConfig  # the synthetic set: the built-in 400 + 100, or quick mode's 24 + 12
    folder: Path | None  # that set's folder (train.json, val.json, images/), when the data are loaded
    command_argv: list[str] = field(default_factory=list)  # the stage command's data and device flags
    train: Any = None  # the training dataset (None for notebook 05)
    val: Any = None  # the validation dataset
    cache_root: Path | None = None  # the selective-search cache, shared with python -m stages.rcnn
    cache: ProposalCache | None = None  # the cache itself, for the notebooks that fill it (02, 03)


def setup(number: str) -> Setup:
    """Everything notebook ``number`` ("00" .. "05") computes before its first idea.

    Seeds torch (0), so that a notebook draws the same pictures each run; prints one line per
    thing it prepared (the data, the cache) so that nothing happens unseen.
    """
    if number not in RECIPES:
        raise ValueError(f"no notebook {number!r}: expected one of {', '.join(RECIPES)}")
    recipe = RECIPES[number]
    quick = os.environ.get("STAGES_QUICK") == "1"
    device_flag = os.environ.get("STAGES_DEVICE", "auto")
    data_root = Path(os.environ.get("STAGES_DATA_ROOT", "../data"))
    common = dict(number=number, quick=quick, device_flag=device_flag, device=choose_device(device_flag),
                  data_root=data_root, runs=Path(os.environ.get("STAGES_RUNS", "../runs")),
                  pennfudan=Path(os.environ.get("PENNFUDAN_DIR", "../../shared/datasets/PennFudanPed")),
                  synthetic=QUICK_SYNTHETIC if quick else SyntheticConfig(),
                  cache_root=data_root / CACHE_DIR)
    torch.manual_seed(0)
    if not recipe.load_data:
        print(f"quick mode: {quick}; runs read from {common['runs']}")
        return Setup(folder=None, **common)

    folder = ensure_synthetic(common["synthetic"], data_root)  # prints a line when it generates
    transforms = {"none": (None, None), "train": (train_transforms(), None),
                  "val": (val_transforms(), val_transforms())}[recipe.transforms]
    train, val = load_dataset("synthetic", data_root, *transforms, synthetic=common["synthetic"])
    print(f"{len(train)} training and {len(val)} validation images; classes {train.class_names[1:]}"
          + (f"; training and evaluation on {common['device']}" if recipe.quick_flags else ""))
    cache = None
    if recipe.fill_cache:
        cache = ProposalCache(common["cache_root"])
        for split in recipe.fill_cache:
            n, seconds = fill_cache(cache, {"train": train, "val": val}[split])
            print(f"selective search ({split}): {n} images computed now ({seconds:.0f} s), "
                  f"the rest read from {cache.folder}")
    return Setup(folder=folder, train=train, val=val, cache=cache,
                 command_argv=command_argv(recipe, quick, data_root, device_flag, folder), **common)


def command_argv(recipe: Recipe, quick: bool, data_root: Path, device_flag: str, folder: Path) -> list[str]:
    """The data and device flags of the stage command (``compare.ensure_run``): the built-in set,
    or in quick mode the tiny one, with its own validation file, and the recipe's quick flags."""
    if recipe.quick_flags is None:
        return []
    argv = ["--data-root", str(data_root), "--device", device_flag]
    if quick:
        argv += ["--data", f"coco:{folder / 'train.json'}:{folder / 'images'}",
                 "--val-data", f"coco:{folder / 'val.json'}:{folder / 'images'}", *recipe.quick_flags]
    return argv


def show_source(function: Callable, start: str | None = None, end: str | None = None,
                docstring: bool = False) -> None:
    """Print the source of a package function (or a slice of it), headed by its file and lines.

    Args:
        function: a function or method, e.g. ``nms`` or ``BoxCoder.encode``.
        start: print from the first line that contains this text (default: the ``def`` line).
        end: print through the first line, from ``start`` on, that contains this text (default: the
            last line). A ``start`` or ``end`` that no line contains is an error, so a notebook that
            points at code that has moved fails its test instead of printing the wrong lines.
        docstring: keep the docstring (default: left out, the notebook's text says it).

    Example: ``show_source(box_coder.BoxCoder.encode, start="p_x, p_y")`` prints the six lines that
    compute R-CNN's Eq. 6-9.
    """
    lines, first = inspect.getsourcelines(function)
    numbers = list(range(first, first + len(lines)))
    if not docstring:
        node = ast.parse(textwrap.dedent("".join(lines))).body[0]
        doc = node.body[0] if node.body else None
        if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
            drop = set(range(doc.lineno - 1, doc.end_lineno))  # 0-based rows of the docstring
            kept = [k for k in range(len(lines)) if k not in drop]
            lines, numbers = [lines[k] for k in kept], [numbers[k] for k in kept]

    def find(text: str, after: int) -> int:
        for k in range(after, len(lines)):
            if text in lines[k]:
                return k
        raise ValueError(f"show_source({function.__qualname__}): no line contains {text!r}")

    lo = find(start, 0) if start is not None else 0
    hi = find(end, lo) if end is not None else len(lines) - 1
    path = Path(inspect.getsourcefile(function)).resolve()
    package = Path(__file__).resolve().parents[1]  # the project folder, above stages/
    where = path.relative_to(package) if path.is_relative_to(package) else path
    print(f"# {where}, {function.__qualname__}, lines {numbers[lo]}-{numbers[hi]}"
          + ("" if docstring or start is not None else " (docstring left out)"))
    print(textwrap.dedent("".join(lines[lo:hi + 1])).rstrip())
