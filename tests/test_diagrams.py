"""The lecture figures drawn from the code: the architecture diagrams' shapes are those of a real
forward pass (checked here against the models' outputs, computed by hand without hooks); the
selective-search figure pictures the package's own segmentation and merges; fig 01 charges both
proposal methods a CNN cost measured while it is drawn."""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
import pytest
import torch

from stages.figures.common import Inputs
from stages.figures.diagrams import (DIAGRAMS, STAGES, Node, ShapeRecorder, check_shorthand,
                                     diagram_figure, draw_diagram, evaluate_shorthand, record,
                                     record_shapes, shape_labels, shape_text)


@pytest.fixture(scope="module")
def src(tiny_synthetic, data_root) -> Inputs:
    """Validation image 0 of the tiny synthetic set, read as the figures read any data."""
    return Inputs(f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}", data_root)


@pytest.fixture(scope="module")
def recordings(src) -> dict:
    return {stage: record(stage, src.image, len(src.class_names) - 1, src.data_root)
            for stage in STAGES}


def seeded(build):
    """``build()`` with the seed ``record`` builds with: the same untrained weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build().eval()


# ------------------------------------------------------------------------------------------------
# The shorthand and the recorder, worked examples
# ------------------------------------------------------------------------------------------------

def test_the_shorthand_is_evaluated_with_the_sizes_and_a_wrong_one_is_refused():
    sizes = {"N": 1, "A": 9, "H": 128, "W": 128, "R": 5, "K": 3}
    assert evaluate_shorthand("(N, 4A, H/4, W/4)", sizes) == (1, 36, 32, 32)
    assert evaluate_shorthand("(R, 4(K+1))", sizes) == (5, 16)
    check_shorthand("(R, K+1)", sizes, (5, 4), "cls_score")  # right: passes
    with pytest.raises(ValueError, match=r"cls_score: the diagram says \(R, K\) = \(5, 3\)"):
        check_shorthand("(R, K)", sizes, (5, 4), "cls_score")
    assert shape_text((118, 40, 7, 7)) == "(118, 40, 7, 7)"


def test_the_recorder_keeps_each_modules_shape_and_stacks_batches():
    layer = torch.nn.Linear(4, 3)
    recorder = ShapeRecorder()
    recorder.output("out", layer)
    recorder.input("in", layer)
    with recorder:
        layer(torch.zeros(2, 4))
        layer(torch.zeros(5, 4))  # a second batch of the same regions
    layer(torch.zeros(7, 4))  # after the block: not recorded, the hooks are gone
    assert recorder.shapes == {"out": (7, 3), "in": (7, 4)}


def test_a_diagram_whose_shorthand_disagrees_with_the_forward_pass_is_not_drawn(recordings):
    wrong = DIAGRAMS["fast_rcnn"]
    nodes = tuple(Node(n.keys, n.title, ("(R, C, 14, 14)",), n.xy, n.kind)
                  if n.id == "roi_pool" else n for n in wrong.nodes)
    with pytest.raises(ValueError, match="roi_pool"):
        draw_diagram(dataclasses.replace(wrong, nodes=nodes), recordings["fast_rcnn"], "")


# ------------------------------------------------------------------------------------------------
# record_shapes against each model's outputs, computed by hand (no hooks)
# ------------------------------------------------------------------------------------------------

def test_rcnn_shapes_are_its_process_run_by_hand(src, recordings):
    from stages.rcnn.config import RCNNConfig
    from stages.rcnn.model import build_region_cnn
    from stages.rcnn.regions import crop_regions, normalize

    cfg, K = RCNNConfig(pretrained="none"), len(src.class_names) - 1
    cnn = seeded(lambda: build_region_cnn(cfg, K))
    proposals, _ = src.selective_search
    with torch.no_grad():
        regions = crop_regions(normalize(src.image), proposals, cfg.warp_size,
                               cfg.context_pad_pixels)
        conv = cnn.body.forward_normalized(regions)["C3"]
        pool5 = cnn.pool5(conv)
        fc7 = cnn.fc(pool5.flatten(1))
    shapes, R = recordings["rcnn"].shapes, len(proposals)
    assert shapes["image"] == (3, 128, 128) and shapes["proposals"] == (R, 4)
    assert shapes["regions"] == tuple(regions.shape) == (R, 3, 96, 96)
    assert shapes["C3"] == tuple(conv.shape) == (R, 40, 12, 12)
    assert shapes["pool5"] == tuple(pool5.shape) == (R, 40, 7, 7)
    assert shapes["fc7"] == tuple(fc7.shape) == (R, cfg.fc_dim) == (R, 256)
    assert shapes["svm_scores"] == (R, K)
    D = shapes["boxes"][0]
    assert shapes["nms"] == shapes["boxes"] == (D, 4) and 0 < D <= cfg.detections_per_image


def _head_by_hand(model, image, proposals):
    """Stages 2-4's shared map and box head, called part by part."""
    features, _ = model.features([image])
    pooled = model.head.pooler(features, [proposals])
    cls_score, bbox_pred = model.head(features, [proposals])
    return features, pooled, cls_score, bbox_pred


def test_fast_rcnn_shapes_are_its_parts_run_by_hand(src, recordings):
    from stages.fast_rcnn.config import FastRCNNConfig
    from stages.fast_rcnn.model import build_fast_rcnn
    from stages.rcnn.config import RCNNConfig
    from stages.selective_search import CACHE_DIR, ProposalCache

    K = len(src.class_names) - 1
    cache = ProposalCache(src.data_root / CACHE_DIR, RCNNConfig().selective_search())
    model = seeded(lambda: build_fast_rcnn(FastRCNNConfig(pretrained="none"), K, cache))
    proposals, _ = cache.get(src.image)
    with torch.no_grad():
        features, pooled, cls_score, bbox_pred = _head_by_hand(model, src.image, proposals)
    shapes, R = recordings["fast_rcnn"].shapes, len(proposals)
    assert shapes["input"] == (1, 3, 256, 256)  # the 128-px image enlarged 2x
    assert shapes["C3"] == tuple(features.shape) == (1, 40, 32, 32)
    assert shapes["proposals"] == (R, 4)
    assert shapes["roi_pool"] == tuple(pooled.shape) == (R, 40, 7, 7)
    assert shapes["fc7"] == (R, FastRCNNConfig().fc_dim) == (R, 1024)  # torchvision's width (stages 2-4)
    assert shapes["cls_score"] == tuple(cls_score.shape) == (R, K + 1)
    assert shapes["bbox_pred"] == tuple(bbox_pred.shape) == (R, 4 * (K + 1))


def test_faster_rcnn_shapes_are_its_rpn_and_head_run_by_hand(src, recordings):
    from stages.faster_rcnn.config import FasterRCNNConfig
    from stages.faster_rcnn.model import build_faster_rcnn

    K = len(src.class_names) - 1
    model = seeded(lambda: build_faster_rcnn(FasterRCNNConfig(pretrained="none"), K))
    with torch.no_grad():
        features, sizes = model.features([src.image])
        objectness, deltas = model.proposer.head(features)
        proposals = model.proposer(features, sizes)[0][0]
        _, pooled, cls_score, bbox_pred = _head_by_hand(model, src.image, proposals)
    shapes, R = recordings["faster_rcnn"].shapes, len(proposals)
    assert shapes["rpn_conv"] == shapes["C3"] == tuple(features.shape) == (1, 40, 32, 32)
    assert shapes["objectness"] == tuple(objectness.shape) == (1, 9, 32, 32)  # A = 3 x 3
    assert shapes["deltas"] == tuple(deltas.shape) == (1, 36, 32, 32)
    assert shapes["proposals"] == (R, 4) and 0 < R <= 300
    assert shapes["roi_pool"] == tuple(pooled.shape) == (R, 40, 7, 7)
    assert shapes["cls_score"] == tuple(cls_score.shape) and shapes["bbox_pred"] == tuple(
        bbox_pred.shape) == (R, 4 * (K + 1))
    assert recordings["faster_rcnn"].sizes["A"] == 9


def test_mask_rcnn_shapes_are_its_heads_run_by_hand(src, recordings):
    from stages.mask_rcnn.config import MaskRCNNConfig
    from stages.mask_rcnn.model import build_mask_rcnn

    K = len(src.class_names) - 1
    model = seeded(lambda: build_mask_rcnn(MaskRCNNConfig(pretrained="none"), K))
    with torch.no_grad():
        detections = model([src.image])[0]
        features, _ = model.features([src.image])
        pooled = model.mask_head.pooler(features, [detections["boxes"]])
        convs = model.mask_head.convs(pooled)
        logits = model.mask_head(features, [detections["boxes"]])
    shapes, D = recordings["mask_rcnn"].shapes, len(detections["boxes"])
    assert D > 0  # the mask head ran on something
    assert shapes["mask_pool"] == tuple(pooled.shape) == (D, 40, 14, 14)
    assert shapes["mask_convs"] == tuple(convs.shape) == (D, 32, 14, 14)
    assert shapes["deconv"] == (D, 32, 28, 28)
    assert shapes["mask_logits"] == tuple(logits.shape) == (D, K, 28, 28)
    assert shapes["masks"] == tuple(detections["masks"].shape) == (D, 1, 128, 128)
    assert shapes["roi_pool"][1:] == (40, 7, 7)  # RoIAlign for the box head


def test_fpn_shapes_are_the_pyramid_computed_by_hand(src, recordings):
    from stages.mask_rcnn.config import MaskRCNNConfig
    from stages.mask_rcnn.model import build_mask_rcnn

    K = len(src.class_names) - 1
    model = seeded(lambda: build_mask_rcnn(
        MaskRCNNConfig(pretrained="none", fpn=True, input_scale=1.0), K))
    with torch.no_grad():
        levels = model.backbone(src.image[None])  # C2..C5
        pyramid = model.fpn(levels)  # P2..P6
    shapes = recordings["fpn"].shapes
    for k, channels in zip((2, 3, 4, 5), (24, 40, 112, 320)):
        side = 128 // 2 ** k
        assert shapes[f"C{k}"] == tuple(levels[f"C{k}"].shape) == (1, channels, side, side)
        lateral = model.fpn.lateral[f"C{k}"](levels[f"C{k}"])
        assert shapes[f"lateral{k}"] == tuple(lateral.shape) == (1, 64, side, side)
        assert shapes[f"sum{k}"] == shapes[f"P{k}"] == tuple(pyramid[f"P{k}"].shape)
    assert shapes["P6"] == tuple(pyramid["P6"].shape) == (1, 64, 2, 2)


# ------------------------------------------------------------------------------------------------
# The figures show those shapes
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("stage", STAGES)
def test_every_box_of_a_diagram_shows_the_shape_record_shapes_gives(stage, src):
    fig = diagram_figure(stage, src)
    shapes = record_shapes(stage, src.image, len(src.class_names) - 1, src.data_root)
    labels = shape_labels(fig)
    drawn = {key for n in DIAGRAMS[stage].nodes for key in n.keys}
    assert set(labels) == drawn and drawn <= set(shapes)
    for key in drawn:
        assert labels[key] == "= " + shape_text(shapes[key]), key
    # readable on a slide: 12.8 in wide (1920 px at 150 dpi), no text under 12 pt
    assert tuple(fig.get_size_inches()) == (12.8, 7.2)
    assert min(t.get_fontsize() for ax in fig.axes for t in ax.texts) >= 12


def test_record_shapes_leaves_the_random_state_alone(src):
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    record_shapes("fast_rcnn", src.image, len(src.class_names) - 1, src.data_root)
    assert torch.equal(torch.rand(3), before)


# ------------------------------------------------------------------------------------------------
# Selective search, step by step: the package's own run
# ------------------------------------------------------------------------------------------------

def test_selective_search_steps_are_the_packages_segmentation_and_merges(src):
    import selectivesearch
    from selectivesearch.selectivesearch import _calc_sim, _extract_neighbours, _extract_regions

    from stages.figures.rcnn import selective_search_steps
    from stages.rcnn.config import RCNNConfig
    from stages.selective_search import to_uint8_hwc

    cfg = RCNNConfig().selective_search()
    steps = selective_search_steps(src.image, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img, regions = selectivesearch.selective_search(to_uint8_hwc(src.image), scale=cfg.ss_scale,
                                                        sigma=cfg.ss_sigma, min_size=cfg.ss_min_size)
    n, M = steps.n_initial, len(steps.pairs)
    assert n == len(np.unique(img[:, :, 3]))  # the initial regions: the label image's segments
    assert np.array_equal(steps.labels, img[:, :, 3].astype(np.int64))
    assert [r["rect"] for r in steps.regions] == [r["rect"] for r in regions]
    assert M == len(regions) - n > 0
    for j, (a, b) in enumerate(steps.pairs):  # each merge joins two earlier regions, all of them
        assert a < b < n + j
        assert sorted(steps.regions[n + j]["labels"]) == sorted(
            steps.regions[a]["labels"] + steps.regions[b]["labels"])
        sim = steps.similarity[j]
        assert sim["s"] == pytest.approx(sim["colour"] + sim["texture"] + sim["size"] + sim["fill"])
    # the first merge is the most similar pair of neighbouring segments, as the package ranks them
    with warnings.catch_warnings():  # the package calls a scikit-image API that warns
        warnings.simplefilter("ignore")
        features = _extract_regions(img)
    first = max(_calc_sim(ra, rb, img[:, :, 3].size)
                for (_, ra), (_, rb) in _extract_neighbours(features))
    assert steps.similarity[0]["s"] == pytest.approx(first)
    # after m merges, n - m regions
    assert len(np.unique(steps.partition(0))) == n
    assert len(np.unique(steps.partition(M))) == n - M


def test_the_selective_search_figure_states_the_packages_counts(src):
    from matplotlib.figure import Figure

    from stages.figures.rcnn import fig_selective_search, selective_search_steps
    from stages.rcnn.config import RCNNConfig

    steps = selective_search_steps(src.image, RCNNConfig().selective_search())
    n, M = steps.n_initial, len(steps.pairs)
    fig = fig_selective_search(src)
    assert isinstance(fig, Figure)
    text = " ".join(ax.get_title() + " " + ax.get_xlabel() for ax in fig.axes)
    assert f"{n} initial regions" in text and f"merge 1 of {M}: {n - 1} regions left" in text
    assert f"all {n + M} regions" in text and f"-> {len(src.selective_search[0])} after" in text


# ------------------------------------------------------------------------------------------------
# Fig 01: the CNN's cost, charged to both proposal methods
# ------------------------------------------------------------------------------------------------

def test_fig01_charges_both_methods_a_measured_cnn_cost(src):
    from stages.figures.rcnn import fig_proposals
    from stages.rcnn.config import RCNNConfig
    from stages.rcnn.sliding_windows import sliding_windows

    fig = fig_proposals(src)
    costs = {t.get_gid()[len("cost:"):]: t.get_text() for ax in fig.axes for t in ax.texts
             if (t.get_gid() or "").startswith("cost:")}
    assert set(costs) == {"sliding windows", "selective search"}
    counts = {"sliding windows": len(sliding_windows(tuple(src.image.shape[-2:]),
                                                     RCNNConfig().sliding_window())),
              "selective search": len(src.selective_search[0])}
    per_box = set()
    for name, text in costs.items():  # "1.2 ms + 1080 boxes x 2.91 ms = 3144 ms"
        made, n, ms, total = re.fullmatch(r"([\d.]+) ms \+ (\d+) boxes x ([\d.]+) ms = (\d+) ms",
                                          text).groups()
        assert int(n) == counts[name] and float(ms) > 0
        assert int(total) == pytest.approx(float(made) + int(n) * float(ms), abs=1 + int(n) * 0.005)
        per_box.add(ms)
    assert len(per_box) == 1  # the same network: the same cost per box


def test_cnn_ms_per_region_is_a_positive_time(src):
    from stages.figures.rcnn import cnn_ms_per_region
    from stages.rcnn.config import RCNNConfig

    boxes, _ = src.selective_search
    ms = cnn_ms_per_region(src.image, boxes[:16], RCNNConfig(pretrained="none"),
                           len(src.class_names) - 1, repeats=1)
    assert 0 < ms < 10_000


def test_what_a_hard_negative_crop_shows():
    from stages.figures.rcnn import what_it_shows

    target = {"boxes": torch.tensor([[0.0, 0.0, 10.0, 10.0]]), "labels": torch.tensor([1])}
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [50.0, 50.0, 60.0, 60.0]])
    assert what_it_shows(boxes, target, ["background", "circle"]) == [
        "on circle, IoU 0.50", "on background"]
