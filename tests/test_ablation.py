"""Mask R-CNN's ablations: the table's deltas by hand, the script end to end on the tiny set (two
variants, then read back), and the notebook's pictures of the FPN levels and the per-class masks."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stages.flags import dataclass_from_dict
from stages.figures.draw import draw_fpn_levels, draw_mask_channels, figure_grid
from stages.evaluation import Result
from stages.files import save_figure
from stages.mask_rcnn import MaskRCNNConfig
from stages.mask_rcnn.ablation import (VARIANTS, ablation_markdown, ablation_table, baseline_of,
                                       load_results)

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _result(box_ap: float, mask_ap: float, ms: float) -> Result:
    box = {"AP": box_ap, "AP50": box_ap + 20, "AP75": box_ap - 5, "APs": -1, "APm": -1, "APl": -1}
    mask = {"AP": mask_ap, "AP50": mask_ap + 20, "AP75": mask_ap - 5, "APs": -1, "APm": -1, "APl": -1}
    return Result(stage="mask_rcnn", variant="", data="synthetic", box=box, mask=mask,
                  train_time_s=150.0, ms_per_image=ms, ms_proposals=1.0, ms_network=ms - 1,
                  timing_ms={}, params=1000, n_train=400, n_val=100, device="cpu", seed=0)


def test_table_deltas_against_each_rows_baseline():
    results = {"align": _result(50.0, 40.0, 20.0), "roi_pool": _result(45.5, 33.0, 18.0),
               "align_ours": _result(49.0, 39.0, 60.0), "align_max": _result(48.0, 39.5, 70.0)}
    table = ablation_table(results)
    lines = table.splitlines()
    roi = next(line for line in lines if line.startswith("2c") and "RoIPool" in line)
    # 45.5 - 50.0 box AP; 33.0 - 40.0 mask AP; 28.0 - 35.0 mask AP75; 18 - 20 ms
    for cell in ("45.5 (-4.5)", "33.0 (-7.0)", "28.0 (-7.0)", "18.0 (-2.0)"):
        assert cell in roi, (cell, roi)
    # the max is compared with the mean computed by the same (our) kernel, not with the default
    assert baseline_of("align_max", results) == "align_ours"
    maximum = next(line for line in lines if "(max)" in line)
    assert "48.0 (-1.0)" in maximum and "39.5 (+0.5)" in maximum and "70.0 (+10.0)" in maximum
    default = next(line for line in lines if "default" in line)
    assert "(" not in default.replace("(mean)", "")  # the default row has no deltas
    assert "not comparable" in table
    # without its own baseline, the max falls back to the default
    del results["align_ours"]
    assert baseline_of("align_max", results) == "align"
    markdown = ablation_markdown(results)
    assert markdown.splitlines()[0].startswith("| table | variant | box AP")
    assert sum(line.startswith("| 2c") for line in markdown.splitlines()) == 2


def test_script_trains_two_variants_then_reads_them_back(tiny_synthetic, data_root, tmp_path, capsys):
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    script = importlib.import_module("ablate_mask_rcnn")
    runs, markdown = tmp_path / "ablation", tmp_path / "table.md"
    argv = ["--data", f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}",
            "--data-root", str(data_root), "--runs", str(runs), "--variants", "align", "roi_pool",
            "--budget", "2", "--epochs", "1", "--markdown", str(markdown),
            "--device", "cpu", "--no-progress"]  # the last two go to python -m stages.mask_rcnn
    table = script.main(argv)
    assert (runs / "align" / "metrics.json").exists() and (runs / "roi_pool" / "metrics.json").exists()
    rows = [line for line in table.splitlines() if line.startswith(("-  ", "2c "))]
    assert len(rows) == 2 and VARIANTS["roi_pool"].label in rows[1]
    assert rows[1].count("(+") + rows[1].count("(-") == 7  # 6 APs and the ms, each with its delta
    assert markdown.read_text().count("| 2c |") == 1
    assert set(load_results(runs)) == {"align", "roi_pool"}
    capsys.readouterr()
    assert script.main(argv) == table  # read back, not trained again
    assert capsys.readouterr().out.count("reused") == 2


def test_fpn_levels_and_mask_channels_draw_non_empty_pngs(tmp_path):
    torch.manual_seed(0)
    pyramid = {f"P{k}": torch.rand(1, 8, 64 // 2 ** k, 64 // 2 ** k) for k in range(2, 7)}
    fig, axes = figure_grid(5, cols=5)
    artists = draw_fpn_levels(axes, pyramid)
    assert len(artists) == 5
    assert artists[0].get_extent() == [0, 64, 64, 0]  # P2 (16 x 16, stride 4) covers the image
    path = save_figure(fig, tmp_path / "fpn.png")

    fig, axes = figure_grid(3, cols=3)
    draw_mask_channels(axes, torch.rand(3, 28, 28), chosen=2, class_names=["bg", "a", "b", "c"])
    assert [ax.get_title() for ax in axes] == ["a", "b (chosen)", "c"]
    assert axes[1].spines["left"].get_visible() and not axes[0].spines["left"].get_visible()
    path2 = save_figure(fig, tmp_path / "masks.png")
    for p in (path, path2):
        with Image.open(p) as im:
            pixels = np.asarray(im.convert("RGB"))
        assert p.stat().st_size > 1000 and pixels.std() > 10


def test_config_from_a_checkpoints_saved_flags():
    saved = {"fpn": False, "anchor_ratios": [1.0, 2.0, 3.0], "data": "synthetic", "seed": 0}
    cfg = dataclass_from_dict(MaskRCNNConfig, saved)
    assert cfg.fpn is False and cfg.anchor_ratios == (1.0, 2.0, 3.0)
    assert cfg.pool == MaskRCNNConfig().pool  # absent: the default
