"""Settings from the data (``stages.data.box_statistics``, ``run.stage_config``): on hand-made
boxes the chosen anchors follow the boxes, large photos are resized, small objects enlarged; the
synthetic set keeps its measured values and a value given on the command line wins."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from stages.data import box_statistics as bs
from stages.faster_rcnn.config import FasterRCNNConfig
from stages import run


class Boxes:
    """A stand-in dataset: ``record_boxes`` gives each image's size and boxes, nothing else."""

    def __init__(self, images):  # [(H, W, [[x1, y1, x2, y2], ...]), ...]
        self.images = images
        self.indices = list(range(len(images)))

    def record_boxes(self, record):
        H, W, boxes = self.images[record]
        return H, W, np.asarray(boxes, np.float32).reshape(-1, 4)


def squares(sides, image=128):
    """One image per side: a square box of that side."""
    return Boxes([(image, image, [[0, 0, s, s]]) for s in sides])


def test_anchor_sizes_are_the_quantiles_of_the_box_sizes_and_follow_them():
    sides = list(range(10, 101))  # 10..100 px: quantiles 10 / 50 / 90 % = 19, 55, 91
    stats = bs.gather(squares(sides))
    assert bs.choose_anchor_sizes(stats) == (19, 55, 91)
    doubled = bs.gather(squares([2 * s for s in sides], image=256))
    assert bs.choose_anchor_sizes(doubled) == (38, 110, 182)  # twice the boxes, twice the anchors


def test_anchor_ratios_follow_the_boxes_shapes():
    tall = Boxes([(400, 300, [[0, 0, 40, 40 * r]]) for r in (2.0, 2.5, 3.0)])  # h / w = r
    assert bs.choose_anchor_ratios(bs.gather(tall)) == (2.1, 2.5, 2.9)
    same = squares([20, 30, 40])  # every box square: three distinct ratios still
    assert bs.choose_anchor_ratios(bs.gather(same)) == (1.0, 1.1, 1.2)


def test_large_photos_are_resized_and_small_objects_keep_enough_pixels():
    photos = Boxes([(750, 1000, [[0, 0, 200, 400]])] * 3)  # 283 px objects on 1000-px photos
    stats = bs.gather(photos)
    assert bs.choose_long_side(stats) == 256
    assert stats.resized(256).median_size() == pytest.approx(283 * 0.256, rel=0.01)
    small = Boxes([(750, 1000, [[0, 0, 20, 20]])] * 3)  # 20-px objects: 5 px at 256
    assert bs.choose_long_side(bs.gather(small)) == 800  # as large as allowed, not 256
    assert bs.choose_long_side(bs.gather(squares([20], image=300))) is None  # small images stay


def test_the_image_is_enlarged_only_for_small_objects():
    assert bs.choose_input_scale(bs.gather(squares([30] * 3))) == 2.0  # the synthetic shapes
    assert bs.choose_input_scale(bs.gather(squares([45] * 3))) == 1.5
    assert bs.choose_input_scale(bs.gather(squares([80] * 3))) == 1.0  # pedestrians at 256 px
    fpn = bs.choose_fpn_anchor_sizes(bs.gather(squares(range(10, 101))))
    assert fpn == (14, 28, 56, 112, 224)  # the 5 % quantile, doubling per level


def _context(data, train):
    cfg = run.RunConfig(data=data)
    return run.Context(cfg, "faster_rcnn", None, None, train, None)


def _args(**given):
    values = {"anchor_sizes": None, "anchor_ratios": None, "input_scale": None, **given}
    return argparse.Namespace(**values)


def test_stage_config_keeps_the_synthetic_values_and_chooses_on_the_users_data(capsys):
    data = squares([40, 50, 60, 70, 80])
    synthetic = run.stage_config(FasterRCNNConfig, _args(), _context("synthetic", data))
    assert synthetic.anchor_sizes == FasterRCNNConfig.anchor_sizes
    assert synthetic.input_scale == FasterRCNNConfig.input_scale
    photos = run.stage_config(FasterRCNNConfig, _args(), _context("coco:x.json", data))
    assert photos.anchor_sizes == (44, 60, 76) and photos.input_scale == 1.0
    assert "from the data: " in capsys.readouterr().out  # what was chosen, and why, printed
    given = run.stage_config(FasterRCNNConfig, _args(anchor_sizes=[8, 16, 32]),
                             _context("coco:x.json", data))
    assert given.anchor_sizes == (8, 16, 32)  # a value given wins
    asked = run.stage_config(FasterRCNNConfig, _args(anchor_sizes=["auto"]),
                             _context("synthetic", data))
    assert asked.anchor_sizes == (44, 60, 76)  # "auto" chooses on any data
    with pytest.raises(SystemExit, match="the word auto alone"):
        run.stage_config(FasterRCNNConfig, _args(anchor_sizes=["auto", 32]),
                         _context("synthetic", data))


def test_eval_only_keeps_what_the_checkpoint_trained_with(data_args, tmp_path, capsys):
    """A run trained with hand-picked anchors and size is evaluated with them, not with a fresh
    choice from the data (which would build a model other than the one trained)."""
    import torch

    from stages.faster_rcnn.__main__ import main as faster_rcnn_main

    out = tmp_path / "run"
    flags = data_args + ["--steps", "1", "--no-progress", "--device", "cpu", "--out", str(out)]
    faster_rcnn_main(flags + ["--anchor-sizes", "8", "16", "24", "--long-side", "96"])
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["config"]
    assert tuple(saved["anchor_sizes"]) == (8, 16, 24) and saved["long_side"] == 96
    capsys.readouterr()
    faster_rcnn_main(flags + ["--eval-only"])
    printed = capsys.readouterr().out
    assert "--long-side 96: the checkpoint's" in printed
    line = next(l for l in printed.splitlines() if "from the checkpoint:" in l)
    assert "anchor sizes 8 16 24" in line
    assert "from the data" not in printed
