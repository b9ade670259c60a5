"""Every command's ``--help`` teaches: each flag has a description (its config field's ``param``),
choices are listed and enforced, each default is printed once; a bad value is one line."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import re
import typing
from typing import Literal

import pytest

from stages import flags
from stages.fast_rcnn import FastRCNNConfig
from stages.fast_rcnn.config import Pool
from stages.mask_rcnn import MaskRCNNConfig
from stages.rcnn import RCNNConfig
from stages.recipe import Recipe

# every command a user runs: (its prog, the module whose main() builds its parser)
COMMANDS = {
    "python -m stages.rcnn": "stages.rcnn.__main__",
    "python -m stages.fast_rcnn": "stages.fast_rcnn.__main__",
    "python -m stages.faster_rcnn": "stages.faster_rcnn.__main__",
    "python -m stages.mask_rcnn": "stages.mask_rcnn.__main__",
    "python -m stages.torchvision.peers": "stages.torchvision.peers",
    "python -m stages.torchvision.finetune": "stages.torchvision.finetune",
    "python -m stages.compare": "stages.compare",
    "python -m stages.figures": "stages.figures.gallery",
    "python -m stages.predict": "stages.predict",
    "python -m stages.data.synthetic": "stages.data.synthetic",
    "python -m stages.figures.dataset_preview": "stages.figures.dataset_preview",
}


class _Parsed(Exception):
    pass


def parser_of(module_name: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser the command's ``main`` builds (caught at ``parse_args``, before any work)."""
    seen = []

    def grab(self, *args, **kwargs):
        seen.append(self)
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    with pytest.raises(_Parsed):
        importlib.import_module(module_name).main([])
    monkeypatch.undo()
    return seen[0]


@pytest.mark.parametrize("prog", COMMANDS)
def test_every_flag_has_a_description_and_each_default_is_printed_once(prog, monkeypatch):
    parser = parser_of(COMMANDS[prog], monkeypatch)
    assert parser.prog == prog
    text = parser.format_help()
    assert text.startswith(f"usage: {prog}")
    assert "__main__.py" not in text
    for action in parser._actions:
        if action.dest == "help":
            continue
        help_text = (action.help or "").replace("%(default)s", "")
        words = re.sub(r"\(default[^)]*\)", "", help_text).strip()
        assert words, f"{prog} {action.option_strings}: no description"
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", text), "a default printed twice"
    assert text.count("(default: 7) (default: 7)") == 0


WITH_RUN_FLAGS = [p for p in COMMANDS if not any(w in p for w in ("figures", "synthetic", "predict"))]


@pytest.mark.parametrize("prog", WITH_RUN_FLAGS)
def test_choices_are_listed_in_help(prog, monkeypatch):
    parser = parser_of(COMMANDS[prog], monkeypatch)
    by_flag = {s: a for a in parser._actions for s in a.option_strings}
    assert tuple(by_flag["--preset"].choices) == ("quick", "full")
    assert tuple(by_flag["--device"].choices) == ("auto", "cpu", "cuda")
    assert "{quick,full}" in parser.format_help()


def test_stage_flags_list_their_choices_and_the_description_keeps_its_examples(monkeypatch):
    rcnn = parser_of(COMMANDS["python -m stages.rcnn"], monkeypatch)
    text = rcnn.format_help()
    assert "sliding_window" in text and "selective_search" in text and "{svm,softmax}" in text
    assert "python -m stages.rcnn --proposals sliding_window" in text  # an example of the docstring
    fast = parser_of(COMMANDS["python -m stages.fast_rcnn"], monkeypatch).format_help()
    assert "{roi,spp}" in fast and "{ours,torchvision}" in fast and "{adamw,sgd}" in fast
    mask = parser_of(COMMANDS["python -m stages.mask_rcnn"], monkeypatch).format_help()
    for choices in ("{align,roi}", "{sigmoid,softmax}", "{mean,max}", "{ours,torchvision}"):
        assert choices in mask


def test_a_stage_offers_only_the_flags_it_reads(monkeypatch):
    mask = parser_of(COMMANDS["python -m stages.mask_rcnn"], monkeypatch).format_help()
    assert "--spp-levels" not in mask and "--ss-min-size" not in mask  # align | roi; the RPN proposes
    rcnn = parser_of(COMMANDS["python -m stages.rcnn"], monkeypatch).format_help()
    assert "--eval-every" not in rcnn and "--input-scale" not in rcnn
    fast = parser_of(COMMANDS["python -m stages.fast_rcnn"], monkeypatch).format_help()
    assert "--spp-levels" in fast and "--eval-every" in fast and "--val-data" in fast
    # one spelling of the selective-search flags in stages 1 and 2 (one shared cache)
    for flag in ("--ss-method", "--ss-scale", "--ss-min-box", "--ss-max-boxes"):
        assert flag in fast and flag in rcnn
    assert "--scale " not in fast and "--method " not in fast


@pytest.mark.parametrize("module, argv, allowed", [
    ("stages.fast_rcnn.__main__", ["--pool", "max"], ["roi", "spp"]),
    ("stages.mask_rcnn.__main__", ["--mask-loss", "dice"], ["sigmoid", "softmax"]),
    ("stages.rcnn.__main__", ["--proposals", "edge_boxes"], ["selective_search", "sliding_window"]),
    ("stages.compare", ["--device", "tpu"], ["auto", "cpu", "cuda"]),
])
def test_a_bad_choice_is_one_line_naming_the_allowed_values(module, argv, allowed, capsys):
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("python -m stages.") and "invalid choice" in err
    assert all(f"'{value}'" in err for value in allowed)


def test_field_help_comes_from_each_fields_metadata_not_from_the_source():
    helps = flags.field_help(FastRCNNConfig)
    assert helps["pool"].startswith("roi: RoI max pooling (one level) | spp:")
    # the paper's value with its section, and where the default was measured: no tuning diary
    assert helps["images_per_batch"] == ("images per mini-batch; paper: N = 2 (sec. 2.3); "
                                         "measured: benchmarks/report.md, section 17")
    assert "gave" not in helps["images_per_batch"] and "AP" not in helps["images_per_batch"]
    # a subclass that writes the field again has its own help
    assert flags.field_help(MaskRCNNConfig)["pool"].startswith("align: RoIAlign")
    assert "Figure 4 right" in flags.field_help(MaskRCNNConfig)["mask_pool_size"]
    assert "paper: ignored (sec. 3.3)" in flags.field_help(MaskRCNNConfig)["ignore_cross_boundary"]
    # the recipe is one dataclass that the stage configs inherit, its help with it
    assert all(issubclass(cls, Recipe) for cls in (RCNNConfig, FastRCNNConfig, MaskRCNNConfig))
    assert flags.field_help(MaskRCNNConfig)["lr"] == flags.field_help(Recipe)["lr"]
    # every field of every stage config has one
    for cls in (RCNNConfig, FastRCNNConfig, MaskRCNNConfig, flags.RunConfig, Recipe):
        missing = [f.name for f in dataclasses.fields(cls) if not flags.field_help(cls).get(f.name)]
        assert not missing, (cls.__name__, missing)
    # nothing is read from the source: a class defined where there is none has its help too
    Example = dataclasses.make_dataclass(
        "Example", [("size", int, flags.param(3, help="a size", paper="3 (sec. 1)"))], frozen=True)
    assert flags.field_help(Example) == {"size": "a size; paper: 3 (sec. 1)"}


def test_literal_fields_are_checked_when_a_config_is_built_in_python():
    assert flags.field_choices(MaskRCNNConfig)["pool"] == ("align", "roi")
    assert flags.field_choices(FastRCNNConfig)["pool"] == ("roi", "spp")
    # one pooling vocabulary: the same field type in every stage, each stage building some of it
    hints = typing.get_type_hints
    assert hints(MaskRCNNConfig)["pool"] == hints(FastRCNNConfig)["pool"] == Pool
    assert typing.get_args(Pool) == ("roi", "spp", "align")
    with pytest.raises(ValueError, match=r"--pool 'align': expected one of roi, spp \(FastRCNNConfig"):
        FastRCNNConfig(pool="align")
    with pytest.raises(ValueError, match=r"--pool 'spp': expected one of align, roi \(MaskRCNNConfig"):
        MaskRCNNConfig(pool="spp")
    with pytest.raises(ValueError, match="--classifier 'boost': expected one of svm, softmax"):
        RCNNConfig(classifier="boost")

    @dataclasses.dataclass(frozen=True)
    class Example:
        mode: Literal["a", "b"] | None = flags.param(None, help="which one; none: neither")
        sizes: tuple = flags.param((1, 2), help="sizes")

    assert flags.field_choices(Example) == {"mode": ("a", "b")}
    parser = flags.command_parser("example", "An example.")
    flags.add_dataclass_args(parser, Example)
    assert parser.parse_args(["--mode", "b", "--sizes", "3", "4"]).sizes == [3, 4]
    assert "which one; none: neither" in parser.format_help()


def test_a_checkpoint_saved_before_a_rename_is_read_under_the_new_names():
    old = {"nms_iou": 0.4, "rpn_nms": 0.6, "method": "opencv_fast", "scale": 50.0, "max_boxes": 9,
           "lr": 0.01}
    assert flags.with_current_names(old) == {"nms_thresh": 0.4, "rpn_nms_thresh": 0.6,
                                           "ss_method": "opencv_fast", "ss_scale": 50.0,
                                           "ss_max_boxes": 9, "lr": 0.01}
    assert flags.dataclass_from_dict(RCNNConfig, old).nms_thresh == 0.4
    assert flags.dataclass_from_dict(MaskRCNNConfig, old).rpn_nms_thresh == 0.6
    assert flags.dataclass_from_dict(RCNNConfig, {"finetune_optimizer": "sgd"}).optimizer == "sgd"
    # a name saved under both spellings keeps its current one
    assert flags.with_current_names({"nms_iou": 0.4, "nms_thresh": 0.5}) == {"nms_thresh": 0.5}
