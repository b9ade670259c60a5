"""Selective search, three ways (``stages.selective_search``): the package, OpenCV fast and quality.

Worked examples: a red block on a grey image is proposed as exactly its box by both OpenCV modes;
the package gives, box for box, what the code before the OpenCV modes gave (the package called
directly); the default config keeps its cache folder; plain opencv-python (no ``cv2.ximgproc``)
is a one-line error that names the package to install.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import pytest
import torch

from stages.ops import clip_boxes_to_image, remove_small_boxes, unique_boxes
from stages.rcnn import RCNNConfig
from stages.selective_search import (ProposalCache, SelectiveSearchConfig, selective_search,
                                     to_uint8_hwc)

OPENCV = ("opencv_fast", "opencv_quality")


def red_block_image() -> torch.Tensor:
    """float [3, 64, 80]: grey, with a red block over columns 20-49 and rows 10-29, so its box is
    (x1, y1, x2, y2) = (20, 10, 50, 30) (x2 = last column + 1)."""
    image = torch.full((3, 64, 80), 0.2)
    image[:, 10:30, 20:50] = torch.tensor([0.8, 0.2, 0.2])[:, None, None]
    return image


def shapes_image(seed: int = 0) -> torch.Tensor:
    """float [3, 128, 128]: a textured background and six coloured rectangles, like our shapes."""
    g = torch.Generator().manual_seed(seed)
    image = 0.4 + 0.1 * torch.rand(3, 128, 128, generator=g)
    for _ in range(6):
        x, y = torch.randint(0, 100, (2,), generator=g).tolist()
        w, h = torch.randint(12, 40, (2,), generator=g).tolist()
        image[:, y:y + h, x:x + w] = torch.rand(3, 1, 1, generator=g)
    return image.clamp(0, 1)


@pytest.mark.parametrize("method", OPENCV)
def test_each_opencv_mode_proposes_valid_boxes_and_finds_the_block(method):
    image = red_block_image()
    H, W = image.shape[-2:]
    cfg = SelectiveSearchConfig(ss_method=method)
    boxes = selective_search(image, cfg)
    assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(boxes) >= 2
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
    assert ((boxes[:, 2:] - boxes[:, :2]) >= cfg.ss_min_box).all()  # small boxes removed
    assert len(torch.unique(boxes, dim=0)) == len(boxes)  # no duplicates
    as_lists = boxes.tolist()
    assert [20, 10, 50, 30] in as_lists  # the block, with x2 = x + w (cv::boundingRect's w)
    assert [0, 0, 80, 64] in as_lists  # the top of every hierarchy: the whole image
    assert torch.equal(boxes, selective_search(image, cfg))  # the same boxes in the same order
    capped = selective_search(image, SelectiveSearchConfig(ss_method=method, ss_max_boxes=1))
    assert torch.equal(capped, boxes[:1])  # a cap keeps the first of the ranking


def test_the_package_gives_exactly_the_boxes_it_gave_before():
    import selectivesearch

    image = shapes_image()
    ours = selective_search(image)  # the default config: the package, scale 100, min_size 10
    with warnings.catch_warnings():  # the code before the OpenCV modes, line for line
        warnings.simplefilter("ignore")
        _, regions = selectivesearch.selective_search(to_uint8_hwc(image), scale=100.0, sigma=0.8,
                                                      min_size=10)
    rects = [r["rect"] for r in regions]
    before = torch.tensor([[x, y, x + w + 1, y + h + 1] for x, y, w, h in rects],
                          dtype=torch.float32).reshape(-1, 4)
    before = clip_boxes_to_image(before, (128, 128))
    before = unique_boxes(before[remove_small_boxes(before, 4.0)])
    assert len(ours) > 20
    assert torch.equal(ours, before)


def test_the_default_config_keeps_its_cache_key():
    old = {"scale": 100.0, "sigma": 0.8, "min_size": 10, "min_box": 4.0}  # the fields before (no ss_)
    old_key = "ss-" + hashlib.sha1(json.dumps(old, sort_keys=True).encode()).hexdigest()[:10]
    assert SelectiveSearchConfig().key == old_key == "ss-51d0e1deb5"
    assert RCNNConfig().selective_search().key == old_key  # ss_method None: the package
    assert SelectiveSearchConfig(ss_max_boxes=50).key == old_key  # a cap reads the same entries
    fast = SelectiveSearchConfig(ss_method="opencv_fast")
    assert fast.key != old_key and fast.key != SelectiveSearchConfig(ss_method="opencv_quality").key
    assert SelectiveSearchConfig(ss_method="opencv_fast", ss_scale=300.0).key == fast.key  # not read
    with pytest.raises(ValueError, match="--ss-method 'edge_boxes': expected one of package"):
        SelectiveSearchConfig(ss_method="edge_boxes")


def test_a_capped_config_reads_the_whole_cached_entry(tmp_path):
    image = red_block_image()
    full, seconds = ProposalCache(tmp_path, SelectiveSearchConfig(ss_method="opencv_fast")).get(image)
    capped = ProposalCache(tmp_path, SelectiveSearchConfig(ss_method="opencv_fast", ss_max_boxes=2))
    boxes, cached_seconds = capped.get(image)
    assert capped.hits == 1 and capped.misses == 0  # read, not computed again
    assert torch.equal(boxes, full[:2]) and cached_seconds == seconds


def test_without_ximgproc_the_error_is_one_line_naming_the_package(monkeypatch):
    import cv2

    monkeypatch.delattr(cv2, "ximgproc")  # as plain opencv-python installs it
    with pytest.raises(ImportError) as error:
        selective_search(red_block_image(), SelectiveSearchConfig(ss_method="opencv_quality"))
    message = str(error.value)
    assert len(message.splitlines()) == 1
    assert "pip install opencv-contrib-python-headless" in message and "opencv_quality" in message


def test_the_report_has_every_method_and_scores_each_on_its_own_images():
    from stages.rcnn.proposers import proposal_report, report_methods

    rows = report_methods(RCNNConfig(ss_method="opencv_fast", ss_max_boxes=300))
    assert list(rows) == ["sliding_window", "selective_search package",
                          "selective_search opencv_fast (this run)",
                          "selective_search opencv_quality"]
    assert rows["selective_search opencv_fast (this run)"].selective_search().ss_max_boxes == 300
    assert rows["selective_search opencv_quality"].selective_search().ss_max_boxes is None
    # two images with one object each; "few" was run on the first image only, and found its object
    gt = [torch.tensor([[0., 0., 10., 10.]]), torch.tensor([[20., 20., 40., 40.]])]
    report = proposal_report(gt, {"all": ([gt[0], torch.zeros(0, 4)], [0.1, 0.3]),
                                  "few": ([gt[0]], [0.2])}, top_n=(1,))
    assert report["all"]["recall_all"][0.5] == 0.5 and report["all"]["images"] == 2
    assert report["few"]["recall_all"][0.5] == 1.0 and report["few"]["images"] == 1
    assert report["few"]["ms_per_image"] == pytest.approx(200.0)
