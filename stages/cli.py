"""The command line, built from dataclasses: one flag per field, so config and CLI cannot drift.

Every stage command takes the same core flags (``RunConfig``: data source, preset, epochs or time
budget, seed, device, output folder, resume, evaluate-only), plus one flag per field of its own
frozen config dataclass (``add_dataclass_args``): ``anchor_sizes: tuple = (16, 32, 64)`` becomes
``--anchor-sizes 16 32 64``, a ``bool`` field ``bbox_reg`` becomes ``--bbox-reg/--no-bbox-reg``.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

PRESETS = ("quick", "full")


@dataclass(frozen=True)
class RunConfig:
    """Flags every stage shares."""

    data: str = "synthetic"  # synthetic | coco:ANN.json[:IMAGE_DIR] | pennfudan:DIR
    data_root: str = "data"  # where generated data and caches live
    preset: str = "quick"  # quick: minutes on a CPU laptop; full: longer training
    epochs: int | None = None  # None: the preset's number
    time_budget: float | None = None  # seconds of training; None: the preset's budget
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    out: str | None = None  # output folder; None: runs/<stage>
    resume: bool = False  # continue from <out>/checkpoint.pt
    eval_only: bool = False  # evaluate <out>/checkpoint.pt without training
    long_side: int | None = None  # resize images so the longer side has this many pixels
    progress: bool = True  # progress bars


def _field_type(f: dataclasses.Field) -> tuple[type, bool, bool]:
    """(element type, is_tuple, is_optional) from a field's annotation or its default."""
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    optional = "None" in text
    is_tuple = text.startswith("tuple") or isinstance(f.default, tuple)
    for name, typ in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if name in text.replace("tuple", ""):
            return typ, is_tuple, optional
    if f.default is not None and f.default is not dataclasses.MISSING:
        sample = f.default[0] if is_tuple and f.default else f.default
        return type(sample), is_tuple, optional
    return str, is_tuple, optional


def add_dataclass_args(parser: argparse.ArgumentParser, cls, group: str | None = None) -> None:
    """Add one ``--flag`` per field of the dataclass ``cls`` (its default, its type)."""
    target = parser.add_argument_group(group) if group else parser
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        typ, is_tuple, optional = _field_type(f)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if typ is bool and not is_tuple:
            target.add_argument(flag, dest=f.name, default=default,
                                action=argparse.BooleanOptionalAction,
                                help=f"(default: {default})")
        elif is_tuple:
            target.add_argument(flag, dest=f.name, type=typ, nargs="+", default=default,
                                help=f"(default: {' '.join(map(str, default))})")
        else:
            target.add_argument(flag, dest=f.name, type=typ, default=default,
                                help=f"(default: {default})" + (" (optional)" if optional else ""))


def dataclass_from_args(cls, args: argparse.Namespace):
    """Build ``cls`` from parsed arguments (lists become tuples again)."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name)
        values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)


def dataclass_from_dict(cls, values: dict):
    """Build ``cls`` from a saved dict, such as a checkpoint's ``config`` (``vars(args)``): the
    fields it has (lists become tuples again), the defaults for fields added since it was saved;
    other keys (the shared ``RunConfig`` flags) are ignored."""
    return cls(**{f.name: tuple(values[f.name]) if isinstance(values[f.name], list) else values[f.name]
                  for f in dataclasses.fields(cls) if f.name in values})
