"""Faster R-CNN's proposals against selective search (recall, time, the benchmark command), and the
pictures of notebook 03: anchors, anchor labels, objectness, recall curves."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stages.training.checkpoint import save_checkpoint
from stages.data.sources import CocoDataset
from stages.figures.draw import (draw_anchor_labels, draw_anchors, draw_objectness, figure_grid,
                         plot_recall_curves)
from stages.faster_rcnn import (FasterRCNNConfig, anchor_shapes, assign_anchors, build_faster_rcnn,
                                grid_anchors)
from stages.faster_rcnn.rpn_vs_selective_search import (RPN, SS, TOP_N, compare_proposals,
                                                    format_proposal_comparison, speedups)
from stages.files import save_figure
from stages.selective_search import CACHE_DIR, ProposalCache

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rpn_proposals.py"


def _png_pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def val(tiny_synthetic):
    return CocoDataset(tiny_synthetic / "val.json", tiny_synthetic / "images")


@pytest.fixture(scope="module")
def model(val):
    torch.manual_seed(0)  # untrained: its proposals are poor, but every number is still defined
    return build_faster_rcnn(FasterRCNNConfig(), val.num_classes).eval()


@pytest.fixture(scope="module")
def comparison(model, val, data_root):
    cache = ProposalCache(data_root / CACHE_DIR)  # shared with the other stages' tests
    return compare_proposals(model, val, cache, n=3)


def test_comparison_reports_recall_proposals_and_time(comparison, val, data_root):
    assert set(comparison) == {SS, RPN}
    n_objects = sum(len(val[i][1]["boxes"]) for i in range(3))
    for report in comparison.values():
        assert report["n_images"] == 3 and report["n_objects"] == n_objects
        assert report["ms_per_image"] > 0 and report["mean_proposals"] > 0
        for iou in (0.5, 0.7):
            recall = [report["recall"][iou][n] for n in TOP_N]
            assert all(0.0 <= r <= 1.0 for r in recall)
            assert recall == sorted(recall), "more proposals never recall fewer objects"
        # a stricter IoU never recalls more
        assert all(report["recall"][0.7][n] <= report["recall"][0.5][n] for n in TOP_N)
    rpn = comparison[RPN]
    assert rpn["mean_proposals"] <= FasterRCNNConfig().rpn_post_nms_test
    assert rpn["ms_with_backbone"] > rpn["ms_per_image"]  # the backbone pass is not free
    # selective search is charged what the cache recorded when it computed the boxes
    cache = ProposalCache(data_root / CACHE_DIR)
    recorded = [cache.get(val[i][0])[1] for i in range(3)]
    assert comparison[SS]["ms_per_image"] == pytest.approx(1000 * np.mean(recorded))


def test_format_prints_table_ratio_and_verdict(comparison):
    text = format_proposal_comparison(comparison)
    marginal, total = speedups(comparison)
    assert marginal > total > 0
    assert f"{marginal:.0f}x faster" in text and "with the backbone" in text
    assert "selective search" in text and "RPN" in text
    assert ("target" in text) and ("met" in text)
    assert len([line for line in text.splitlines() if line.strip().startswith("300")]) == 1


def test_recall_curves_plot_one_line_per_method(comparison, tmp_path):
    fig, (ax,) = figure_grid(1, cell=4)
    plot_recall_curves(ax, comparison, iou=0.5)
    assert len(ax.lines) == 2
    assert list(ax.lines[1].get_xdata()) == list(TOP_N)
    assert list(ax.lines[1].get_ydata()) == [comparison[RPN]["recall"][0.5][n] for n in TOP_N]
    path = save_figure(fig, tmp_path / "recall.png")
    assert _png_pixels(path).std() > 10


def test_benchmark_without_checkpoint_says_what_to_run(tmp_path):
    bench = _load_bench()
    with pytest.raises(SystemExit, match="python -m stages.faster_rcnn"):
        bench.main(["--run", str(tmp_path / "nothing"), "--n", "1"])


def test_benchmark_loads_a_run_prints_and_saves_the_figure(tiny_synthetic, data_root, tmp_path,
                                                           capsys):
    torch.manual_seed(0)
    cfg = FasterRCNNConfig(anchor_sizes=(16, 32))  # a non-default field: must be read back
    spec = f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"  # val = image 4
    data = CocoDataset(tiny_synthetic / "val.json", tiny_synthetic / "images")
    model = build_faster_rcnn(cfg, data.num_classes)
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint.pt", stage="faster_rcnn", class_names=data.class_names,
                    config={"data": spec, "data_root": str(data_root), "anchor_sizes": [16, 32]},
                    model=model)
    _load_bench().main(["--run", str(run), "--n", "1"])
    out = capsys.readouterr().out
    assert "recall after the first n proposals" in out and "x faster" in out
    assert _png_pixels(run / "proposal_recall.png").std() > 10


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_rpn_proposals", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------------
# The pictures of notebook 03
# ------------------------------------------------------------------------------------------------

def test_draw_anchors_one_box_per_anchor_coloured_by_shape(tmp_path):
    base = anchor_shapes()  # (9, 4)
    anchors = grid_anchors((2, 2), 8, base) + 32  # 4 locations x 9 shapes, inside a 64 px image
    fig, (ax,) = figure_grid(1, cell=4)
    draw_anchors(ax, torch.rand(3, 64, 64), anchors, num_shapes=9, centres=torch.rand(4, 2) * 64)
    assert len(ax.patches) == 36
    colours = [p.get_edgecolor() for p in ax.patches]
    assert colours[0] == colours[9] and colours[0] != colours[1]  # same shape, same colour
    assert ax.get_xlim()[0] < 0  # the 64 px anchors reach past the left border: still shown
    assert _png_pixels(save_figure(fig, tmp_path / "anchors.png")).std() > 10


def test_draw_anchor_labels_counts_in_legend(tmp_path):
    anchors = grid_anchors((8, 8), 8, anchor_shapes())  # (576, 4) on a 64 px image
    gt = torch.tensor([[10., 12., 40., 44.]])
    labels, _ = assign_anchors(anchors, gt)
    fig, (ax,) = figure_grid(1, cell=4)
    draw_anchor_labels(ax, torch.rand(3, 64, 64), anchors, labels, gt, n_negatives=5, n_ignored=3)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    n_pos, n_neg, n_ign = (int((labels == v).sum()) for v in (1, 0, -1))
    assert n_ign > 3 and n_neg > 5
    assert legend[:3] == [f"positive ({n_pos})", f"ignored ({n_ign}; 3 shown)",
                          f"negative ({n_neg}; 5 shown)"]
    assert len(ax.patches) == n_pos + 3 + 5 + 1  # every positive, the samples, the ground truth
    assert _png_pixels(save_figure(fig, tmp_path / "labels.png")).std() > 10


def test_draw_objectness_puts_each_location_on_its_anchor_centre(tmp_path):
    objectness = torch.zeros(9, 4, 4)  # (A, H, W), stride 8: a 32 px image
    objectness[5, 2, 3] = 0.9  # location row 2, column 3: anchors centred on pixel (24, 16)
    fig, (ax,) = figure_grid(1, cell=4)
    artist = draw_objectness(ax, torch.rand(3, 32, 32), objectness, stride=8)
    heat = np.asarray(artist.get_array())
    assert heat.shape == (4, 4) and heat[2, 3] == pytest.approx(0.9)
    assert heat.sum() == pytest.approx(0.9)  # the max over anchors, nothing else lit
    left, right, bottom, top = artist.get_extent()
    # cell (2, 3) spans [left + 3 * 8, left + 4 * 8): its centre is pixel x = 24
    assert left + 3 * 8 + 4 == 24 and top + 2 * 8 + 4 == 16 and (right - left) == 32
    assert _png_pixels(save_figure(fig, tmp_path / "objectness.png")).std() > 10
