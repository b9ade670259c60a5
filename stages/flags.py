"""The command line, built from dataclasses: one flag per field, so config and CLI cannot drift.

Every stage command takes the same core flags (``RunConfig``: data source, preset, epochs, time
budget or steps, seed, device, output folder, resume, evaluate-only), plus one flag per field of its own
frozen config dataclass (``add_dataclass_args``): ``anchor_sizes: tuple = (16, 32, 64)`` becomes
``--anchor-sizes 16 32 64``, a ``bool`` field ``bbox_reg`` becomes ``--bbox-reg/--no-bbox-reg``.

A field's ``--help`` text is written once, beside its default, in the field's metadata
(``param(2, paper="N = 2 (sec. 2.3)", help="images per mini-batch")``): what the value means,
the paper's value with its section, and where the default was measured (a section of
``benchmarks/report.md``); nothing is read from the source. A field typed
``Literal["roi", "spp"]`` lists and enforces those choices, on the command line (argparse
``choices``) and when the config is built in Python (``check_choices``); a config class that
builds only some of a vocabulary's words narrows them (``SUPPORTED``). A number is checked the
same way against its field's range (``RANGES``: ``--lr`` > 0, ``--fg-iou`` in [0, 1], ...; NaN and
infinity are never a value): a value outside it ends the command in one line naming the flag and
the range, before any data is read.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal


# ------------------------------------------------------------------------------------------------
# A field with its help: ``param``
# ------------------------------------------------------------------------------------------------

def param(default: Any = dataclasses.MISSING, *, help: str, paper: str | None = None,
          measured: str | None = None) -> Any:
    """A config field that carries its own ``--help`` text, written once beside its default.

    help: what the value means. paper: the paper's value and where it is given ("N = 2 (sec.
    2.3)"), so that a student reads the paper's numbers at a glance, beside ours. measured: the
    section of ``benchmarks/report.md`` whose measurements chose this default ("section 5").
    A tuple default is kept as it is (tuples are immutable: no ``default_factory`` needed)."""
    return dataclasses.field(default=default,
                             metadata={"help": help, "paper": paper, "measured": measured})


def help_text(f: dataclasses.Field) -> str:
    """The field's ``--help``: its help, then "paper: ..." and "measured: ..." when it has them."""
    meta = f.metadata
    parts = [meta.get("help") or ""]
    if meta.get("paper"):
        parts.append(f"paper: {meta['paper']}")
    if meta.get("measured"):
        parts.append(f"measured: benchmarks/report.md, {meta['measured']}")
    return "; ".join(p for p in parts if p)


def field_help(cls) -> dict[str, str]:
    """{field: its help} for every field of the dataclass ``cls`` (``param``'s metadata),
    inherited ones included; a field written again in a subclass has the subclass's ``param``."""
    return {f.name: help_text(f) for f in dataclasses.fields(cls)}


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, with a bad flag or value reported in one line (not the whole usage)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout (its example commands) and gives the flags more room."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32, width=100)


def command_parser(prog: str, description: str | None) -> ArgumentParser:
    """The parser of ``python -m <module>``: its docstring, examples kept, as the description."""
    return ArgumentParser(prog=prog, description=(description or "").strip() or None,
                          formatter_class=HelpFormatter)


@dataclass(frozen=True)
class RunConfig:
    """Flags every stage shares."""

    data: str = param("synthetic",
                      help=("synthetic | coco:ANN.json[:IMAGE_DIR] | pennfudan:DIR: the images (synthetic comes split; with "
                            "--val-data all of them train; else 4 of every 5 train, sorted by file name, and the 5th validates)"))
    val_data: str | None = param(None,
                                 help=("coco:VAL.json[:IMAGE_DIR]: the validation images; none: every 5th image of --data (its "
                                       "categories must match --data's)"))
    data_root: str = param("data", help="where generated data and caches live")
    preset: Literal["quick", "full"] = param("quick",
                                             help=("quick: minutes on a CPU laptop (the stage's quick_time_budget seconds); "
                                                   "full: longer (its full_epochs epochs)"))
    epochs: int | None = param(None, help="passes over the training images; none: the preset's number")
    time_budget: float | None = param(None, help="seconds of training; none: the preset's budget")
    steps: int | None = param(None,
                              help=("optimizer steps of training in all (global mini-batches; R-CNN: its CNN's); replaces the "
                                    "preset's budget: compare machines by steps, runs on one machine by seconds"))
    eval_every: float | None = param(None,
                                     help=("score the validation images every this many seconds of training (not counted in the"
                                           " budget); none or 0: only at the end"))
    seed: int = param(0, help="seeds Python, NumPy and torch: the same flags give the same run")
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto",
        help="auto: a CUDA GPU when there is one (under torchrun: each process its own, LOCAL_RANK)")
    out: str | None = param(None,
                            help=("output folder; none: runs/<stage>. A folder that holds a trained run (checkpoint.pt) is "
                                  "never replaced unasked: give --resume, --eval-only or --overwrite"))
    resume: bool = param(False, help="continue from <out>/checkpoint.pt (an error if there is none)")
    overwrite: bool = param(False, help="replace the run in <out>: its checkpoint and results are deleted")
    eval_only: bool = param(False, help="evaluate <out>/checkpoint.pt without training")
    checkpoint_every: float = param(60.0,
                                    help=("seconds of training between checkpoints (also at the end of every epoch, and on "
                                          "Ctrl-C or SIGTERM): a kill loses at most this much"))
    long_side: int | None = param(None, help="resize images so the longer side has this many pixels; 0: keep them as they are")
    progress: bool = param(True, help="progress bars")

    def __post_init__(self):  # a value outside a field's range or choices: one clear line
        check_choices(self)


# ------------------------------------------------------------------------------------------------
# Types, choices and flags
# ------------------------------------------------------------------------------------------------

@functools.cache
def _hints(cls) -> dict[str, Any]:
    """The fields' annotations, evaluated (``from __future__ import annotations`` leaves strings);
    once per class, since every config built checks its choices (``check_choices``)."""
    return typing.get_type_hints(cls)


def field_choices(cls) -> dict[str, tuple]:
    """{field: allowed values} for the fields typed ``Literal[...]`` (or ``Literal[...] | None``).

    A config class may build only some of a vocabulary's words: its ``SUPPORTED`` ({field: the
    values it builds}, such as stage 2's ``{"pool": ("roi", "spp")}`` from the shared pooling
    vocabulary roi | spp | align) narrows the choices its command offers and accepts."""
    supported = getattr(cls, "SUPPORTED", {})
    choices = {}
    for name, hint in _hints(cls).items():
        union = typing.get_origin(hint) in (typing.Union, types.UnionType)  # "Literal[...] | None"
        args = typing.get_args(hint) if union else [hint]
        literal = [a for a in args if typing.get_origin(a) is Literal]
        if literal:
            choices[name] = tuple(supported.get(name, typing.get_args(literal[0])))
    return choices


def check_choices(config) -> None:
    """Raise ``ValueError`` naming the flag and the allowed values when a ``Literal`` field of the
    dataclass instance ``config`` holds another value (or one its class does not build:
    ``SUPPORTED``), or a number lies outside its ``RANGES`` (a config built in Python or from a
    saved dict; the command line has refused such values already)."""
    cls = type(config)
    for name, allowed in field_choices(cls).items():
        value = getattr(config, name)
        if value is not None and value not in allowed:
            narrowed = name in getattr(cls, "SUPPORTED", {})
            raise ValueError(f"--{name.replace('_', '-')} {value!r}: expected one of "
                             f"{', '.join(map(str, allowed))}"
                             + (f" ({cls.__name__} builds these)" if narrowed else ""))
    for f in dataclasses.fields(config):
        why = out_of_range(f.name, getattr(config, f.name))
        if why:
            raise ValueError(f"--{f.name.replace('_', '-')} {_show(getattr(config, f.name))}: {why}")


@dataclass(frozen=True)
class Range:
    """The values a number may take: ``lo`` .. ``hi``, each end included unless ``*_open``."""
    lo: float = -math.inf
    hi: float = math.inf
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        return (math.isfinite(value)
                and (self.lo < value if self.lo_open else self.lo <= value)
                and (value < self.hi if self.hi_open else value <= self.hi))

    def __str__(self) -> str:  # "> 0", ">= 1", "in [0, 1)", "a finite number"
        if math.isinf(self.lo) and math.isinf(self.hi):
            return "a finite number"
        if math.isinf(self.hi):
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        return (f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}"
                f"{')' if self.hi_open else ']'}")


POSITIVE = Range(0, lo_open=True)  # a learning rate, a size, a ratio, seconds
NON_NEGATIVE = Range(0)  # a weight that 0 switches off, a count that may be none
AT_LEAST_1 = Range(1)  # a count of images, RoIs, steps, epochs
FRACTION = Range(0, 1)  # an IoU threshold, a probability, a share of the training
BELOW_1 = Range(0, 1, hi_open=True)  # momentum, dropout: 1 would never forget / keep nothing
ANY = Range()  # an SVM score threshold: any finite number

# The range of every number a command reads, by field name (the same name means the same thing
# in every stage). A field not named here may take any finite value; tests/test_cli.py checks that
# every numeric field of every stage config is named, so a new field is given its range.
RANGES = {
    # run (every stage)
    "epochs": AT_LEAST_1, "time_budget": POSITIVE, "steps": AT_LEAST_1, "eval_every": NON_NEGATIVE,
    "seed": NON_NEGATIVE, "long_side": NON_NEGATIVE, "checkpoint_every": POSITIVE,
    # the backbone and the training recipe
    "backbone_channels": AT_LEAST_1, "freeze_at": Range(0, 5), "lr": POSITIVE,
    "pretrain_lr": POSITIVE, "momentum": BELOW_1,
    "weight_decay": NON_NEGATIVE, "warmup_steps": AT_LEAST_1, "clip_grad_norm": NON_NEGATIVE,
    "lr_drop": FRACTION, "quick_time_budget": POSITIVE, "full_epochs": AT_LEAST_1,
    "images_per_batch": AT_LEAST_1, "flip": FRACTION, "dropout": BELOW_1,
    # RoIs, heads and losses
    "pool_size": AT_LEAST_1, "input_scale": POSITIVE, "spp_levels": AT_LEAST_1,
    "fc_dim": AT_LEAST_1, "representation_size": AT_LEAST_1, "rois_per_image": AT_LEAST_1,
    "fg_fraction": FRACTION, "fg_iou": FRACTION, "bg_iou_lo": FRACTION, "bg_iou_hi": FRACTION,
    "loss_lambda": NON_NEGATIVE, "smooth_l1_beta": POSITIVE, "box_weights": POSITIVE,
    "align_sampling_ratio": NON_NEGATIVE, "fpn_k0": Range(2, 6),
    "mask_pool_size": AT_LEAST_1, "mask_convs": NON_NEGATIVE, "mask_channels": AT_LEAST_1,
    "mask_size": AT_LEAST_1, "fpn_channels": AT_LEAST_1, "fpn_canonical_size": POSITIVE,
    "image_size": AT_LEAST_1, "box_batch_size_per_image": AT_LEAST_1,
    "mask_head_channels": AT_LEAST_1, "rpn_post_nms_top_n_train": AT_LEAST_1,
    "rpn_post_nms_top_n_test": AT_LEAST_1,
    # the RPN and its anchors
    "anchor_sizes": POSITIVE, "anchor_ratios": POSITIVE, "fpn_anchor_sizes": POSITIVE,
    "rpn_pos_iou": FRACTION, "rpn_neg_iou": FRACTION, "rpn_batch": AT_LEAST_1,
    "rpn_pos_fraction": FRACTION, "rpn_lambda": NON_NEGATIVE, "rpn_beta": POSITIVE,
    "rpn_pre_nms_train": AT_LEAST_1, "rpn_post_nms_train": AT_LEAST_1,
    "rpn_pre_nms_test": AT_LEAST_1, "rpn_post_nms_test": AT_LEAST_1, "rpn_nms_thresh": FRACTION,
    "rpn_min_size": NON_NEGATIVE,
    # detections
    "score_thresh": FRACTION, "nms_thresh": FRACTION,
    "detections_per_image": AT_LEAST_1,
    # R-CNN: proposals, warps, SVMs, box regression
    "ss_scale": POSITIVE, "ss_sigma": NON_NEGATIVE, "ss_min_size": NON_NEGATIVE,
    "ss_min_box": NON_NEGATIVE, "ss_max_boxes": AT_LEAST_1, "min_size": NON_NEGATIVE,
    "sw_sizes": POSITIVE, "sw_ratios": POSITIVE, "sw_stride": POSITIVE,
    "sizes": POSITIVE, "ratios": POSITIVE, "stride": POSITIVE, "warp_size": AT_LEAST_1,
    "context_pad": NON_NEGATIVE, "pretrain_epochs": NON_NEGATIVE,
    "finetune_epochs": NON_NEGATIVE, "batch_positives": AT_LEAST_1,
    "batch_negatives": NON_NEGATIVE, "svm_neg_iou": FRACTION, "svm_pos_weight": POSITIVE,
    "svm_C": POSITIVE, "svm_bias_mult": POSITIVE, "feature_norm": POSITIVE, "hard_negative_rounds": NON_NEGATIVE,
    "hard_threshold": ANY, "evict_threshold": ANY, "initial_negatives": AT_LEAST_1,
    "bbox_iou": FRACTION, "bbox_lambda": NON_NEGATIVE, "feature_batch": AT_LEAST_1,
    "workers": AT_LEAST_1,
}


def out_of_range(name: str, value) -> str | None:
    """Why ``value`` (a number, or a tuple of numbers) cannot be the field ``name``'s, as
    "expected ... > 0", or None when it can. Booleans and text are not numbers here."""
    allowed = RANGES.get(name, ANY)
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v not in allowed:
            return f"expected {allowed}" if allowed == ANY else f"expected a number {allowed}"
    return None


def _checked(name: str, typ: type):
    """argparse's ``type`` for the field ``name``: ``typ(text)``, refused when outside its range
    (argparse then prints "argument --lr: nan: expected a number > 0" in one line)."""
    def convert(text: str):
        value = typ(text)
        why = out_of_range(name, value)
        if why:
            raise argparse.ArgumentTypeError(f"{text}: {why}")
        return value
    convert.__name__ = typ.__name__  # argparse names the type in its error message
    return convert


def _field_type(cls, f: dataclasses.Field) -> tuple[type, bool]:
    """(element type, is_tuple) from the field's evaluated annotation, or from its default."""
    hint = _hints(cls)[f.name]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)  # "int | None"
    args = [a for a in (typing.get_args(hint) if union else (hint,)) if a is not type(None)]
    base = typing.get_origin(args[0]) or args[0]
    if base is Literal:
        return type(typing.get_args(args[0])[0]), False
    if base is tuple:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        elements = typing.get_args(args[0])
        return (elements[0] if elements else type(default[0]) if default else str), True
    return base, False


def _show(value) -> str:
    """A default as the user would type it: "16 32 64" for a tuple, "0.111111" for 1 / 9."""
    if isinstance(value, tuple):
        return " ".join(map(_show, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


AUTO = "auto"  # the value of a data-dependent flag that asks for the choice from the data


def _or_auto(convert_value):
    """argparse's ``type`` for a flag that takes what ``convert_value`` reads, or the word "auto"."""
    def convert(text: str):
        return AUTO if text == AUTO else convert_value(text)
    convert.__name__ = convert_value.__name__  # argparse names the type in its error message
    return convert


def add_dataclass_args(parser: argparse.ArgumentParser, cls, group: str | None = None,
                       skip: tuple = (), defaults: dict | None = None,
                       from_data: tuple = ()) -> None:
    """Add one ``--flag`` per field of the dataclass ``cls``: its type, its choices, its
    ``param`` help, its default printed once. ``skip``: fields this command does not read;
    ``defaults``: {field: value} where this command's default differs from the field's;
    ``from_data``: fields whose default the data decides (``stages.data.box_statistics``): their
    flag also takes "auto" (unless its values are a fixed list of choices) and defaults to None,
    which the command replaces: the field's value on the built-in synthetic set, the choice from
    the training boxes on the user's data."""
    target = parser.add_argument_group(group) if group else parser
    helps, choices = field_help(cls), field_choices(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        typ, is_tuple = _field_type(cls, f)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        default = (defaults or {}).get(f.name, default)
        text = helps.get(f.name, "").replace("%", "%%")  # argparse formats help with %
        if f.name in from_data:
            how = "chosen for photos" if f.name in choices else "auto, chosen from the training boxes,"
            shown = "no resize" if default is None else _show(default)
            text += (f" (default: {how} on coco: and pennfudan: data; {shown} on the built-in "
                     f"synthetic set)")
            target.add_argument(flag, dest=f.name, default=None, help=text.strip(),
                                type=typ if f.name in choices else _or_auto(_checked(f.name, typ)),
                                choices=choices.get(f.name), nargs="+" if is_tuple else None,
                                metavar=None if f.name in choices else "N|auto")
            continue
        if typ is bool and not is_tuple:  # argparse adds "(default: ...)" to these itself
            target.add_argument(flag, dest=f.name, default=default, help=text,
                                action=argparse.BooleanOptionalAction)
            continue
        if default is not None:
            text += f" (default: {_show(default)})"
        metavar = None if f.name in choices else ("N" if typ in (int, float) else "VALUE")
        target.add_argument(flag, dest=f.name, type=_checked(f.name, typ), default=default,
                            help=text.strip(),
                            choices=choices.get(f.name), metavar=metavar,
                            nargs="+" if is_tuple else None)


def dataclass_from_args(cls, args: argparse.Namespace):
    """Build ``cls`` from parsed arguments (lists become tuples again); a field the command does
    not offer keeps its default."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            v = getattr(args, f.name)
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**values)


# Fields renamed since checkpoints were first written (issue 26: one name per idea), old -> new:
# a saved config that holds an old name is read under the new one
RENAMED = {"nms_iou": "nms_thresh", "rpn_nms": "rpn_nms_thresh", "method": "ss_method",
           "scale": "ss_scale", "sigma": "ss_sigma", "min_size": "ss_min_size",
           "min_box": "ss_min_box", "max_boxes": "ss_max_boxes",
           "finetune_optimizer": "optimizer", "finetune_lr": "lr"}  # R-CNN's, now the Recipe's


def with_current_names(values: dict) -> dict:
    """A saved config (a checkpoint's ``config``) with the names of ``RENAMED`` brought up to date;
    a name saved under both spellings keeps its current one."""
    renamed = {RENAMED[k]: v for k, v in values.items() if k in RENAMED}
    return {**renamed, **{k: v for k, v in values.items() if k not in RENAMED}}


def dataclass_from_dict(cls, values: dict):
    """Build ``cls`` from a saved dict, such as a checkpoint's ``config`` (``vars(args)``): the
    fields it has (lists become tuples again; names from before a rename read under the new one,
    ``with_current_names``), the defaults for fields added since it was saved; other keys (the
    shared ``RunConfig`` flags) are ignored."""
    values = with_current_names(values)
    return cls(**{f.name: tuple(values[f.name]) if isinstance(values[f.name], list) else values[f.name]
                  for f in dataclasses.fields(cls) if f.name in values})
