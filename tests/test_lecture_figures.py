"""The lecture figures of pooling and masks (04, 05, 08-11) draw what the code computes, and read
on a slide: the bins drawn are the n x n bins ``stages.ops.roi_pool`` max-pools (and RoIAlign's
equal bins), the lecture's RoIAlign example comes out of our op, masks get one colour per object,
the FPN figure needs a trained pyramid, and every figure is at most a slide wide with text of at
least 12 pt on the slide."""

from __future__ import annotations

import io

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.image import imread
from matplotlib.text import Text

from stages.figures import gallery
from stages.figures.common import Inputs, Skip
from stages.figures.draw import (BIN, PALETTE, SLIDE_WIDTH, draw_detections, exact_bins,
                                 figure_grid, roi_pool_bins)
from stages.figures.mask_rcnn import mask_path_figure, matched_colours, max_or_mean_example
from stages.ops import roi_align_sample_points, roi_pool
from stages.ops.roi_pool import quantise_rois


# ------------------------------------------------------------------------------------------------
# The geometry the pooling figures are drawn from
# ------------------------------------------------------------------------------------------------

def test_roi_pool_bins_by_hand_7_bins_over_13_cells():
    # spatial_scale 1: box x 2..14 -> cells 2..14 (the end cell included), 13 cells; bin j spans
    # floor(j 13 / 7) .. ceil((j + 1) 13 / 7) cells from cell 2, so neighbours share one cell
    bins = roi_pool_bins([2.0, 3.0, 14.0, 14.0], 1.0, 7, (20, 20))
    assert bins.shape == (7, 7, 4)
    columns = [(x0, x1) for x0, _, x1, _ in bins[0].tolist()]
    assert columns == [(2, 4), (3, 6), (5, 8), (7, 10), (9, 12), (11, 14), (13, 15)]
    rows = [(y0, y1) for _, y0, _, y1 in bins[:, 0].tolist()]  # 12 cells, 3..14, in 7 bins
    assert rows == [(3, 5), (4, 7), (6, 9), (8, 10), (9, 12), (11, 14), (13, 15)]


@pytest.mark.parametrize("box, scale, n", [([37.0, 20.0, 87.0, 67.0], 0.25, 7),  # fig. 04's kind
                                           ([51.0, 60.0, 70.0, 76.0], 0.25, 4),  # a small RoI, SPP
                                           ([51.0, 60.0, 70.0, 76.0], 0.25, 2),
                                           ([51.0, 60.0, 70.0, 76.0], 0.25, 1),
                                           ([3.3, 5.0, 9.0, 7.1], 1.0, 4)])  # fewer cells than bins
def test_roi_pool_bins_are_the_windows_roi_pool_max_pools(box, scale, n):
    H = W = 32
    bins = roi_pool_bins(box, scale, n, (H, W))
    assert bins.shape == (n, n, 4)
    x0, y0, x1, y1 = bins.unbind(-1)  # (n, n) each
    assert (x1 > x0).all() and (y1 > y0).all()  # n x n bins, none empty
    # together they cover the rounded RoI, each cell at least once, and nothing else
    cover = torch.zeros(H, W, dtype=torch.int64)
    for a, b, c, d in bins.reshape(-1, 4).tolist():
        cover[b:d, a:c] += 1
    rx, ry, rw, rh = (int(v) for v in quantise_rois(torch.tensor([[0.0, *box]]), scale))
    rounded = torch.zeros(H, W, dtype=torch.bool)
    rounded[ry:ry + rh, rx:rx + rw] = True
    assert torch.equal(cover > 0, rounded)
    # neighbours overlap by at most one cell: a gap of more than one cell parts them in the figure
    assert ((x1[:, :-1] - x0[:, 1:]) <= 1).all() and ((y1[:-1] - y0[1:]) <= 1).all()
    # and they are what roi_pool pools: the max (and, on -x, the min) of each window
    x = torch.randn(1, 1, H, W, generator=torch.Generator().manual_seed(0))
    for sign in (1, -1):
        pooled = roi_pool(sign * x, [torch.tensor([box])], n, scale)[0, 0]  # (n, n)
        for i in range(n):
            for j in range(n):
                a, b, c, d = bins[i, j].tolist()
                assert pooled[i, j] == (sign * x)[0, 0, b:d, a:c].max()


def test_exact_bins_tile_the_roi_without_overlap_and_hold_roi_aligns_points():
    box, scale, n = [37.0, 20.0, 87.0, 67.0], 0.25, 7
    bins = exact_bins(box, scale, n)  # (n, n, 4) in cells, cell c spanning [c, c + 1)
    x0, y0, x1, y1 = bins.unbind(-1)
    torch.testing.assert_close(x1[:, :-1], x0[:, 1:])  # each bin ends where the next begins
    torch.testing.assert_close(y1[:-1], y0[1:])
    torch.testing.assert_close(x1 - x0, torch.full((n, n), 50 / 4 / 7, dtype=x0.dtype))
    corners = [x0[0, 0], y0[0, 0], x1[-1, -1], y1[-1, -1]]
    assert [float(v) for v in corners] == pytest.approx([37 / 4, 20 / 4, 87 / 4, 67 / 4])
    # RoIAlign's sample points (cell-centre coordinates, + 0.5 -> cell units) lie in their bins
    points = roi_align_sample_points(box, n, scale, sampling_ratio=2, aligned=True) + 0.5
    px, py = points[..., 0].double(), points[..., 1].double()  # (n, n, 4) each
    assert ((px > x0[..., None]) & (px < x1[..., None])).all()
    assert ((py > y0[..., None]) & (py < y1[..., None])).all()


# ------------------------------------------------------------------------------------------------
# RoIAlign's reductions: the lecture's example
# ------------------------------------------------------------------------------------------------

def test_the_lectures_roi_align_example_comes_out_of_our_op():
    example = max_or_mean_example()
    torch.testing.assert_close(example["samples"], torch.tensor([0.14, 0.21, 0.51, 0.43]))
    assert example["max"] == pytest.approx(0.51)  # MAX(0.14, 0.21, 0.51, 0.43), the lecture's
    assert example["mean"] == pytest.approx(0.3225)  # (0.14 + 0.21 + 0.51 + 0.43) / 4, torchvision's
    # each sample is bilinear at a point where four cells meet: the mean of that 2 x 2 block
    blocks = example["map"].reshape(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4).mean(1)
    torch.testing.assert_close(example["samples"], blocks)
    assert example["points"].tolist() == [[0.5, 0.5], [2.5, 0.5], [0.5, 2.5], [2.5, 2.5]]


# ------------------------------------------------------------------------------------------------
# The figures: n x n bins drawn, a slide wide, 12 pt or more
# ------------------------------------------------------------------------------------------------

def make(name: str, src: Inputs):
    """The gallery's figure ``name``, made as the gallery makes it (its fonts), and drawn, as a PNG
    at 40 dpi: ``(figure, png pixels)``."""
    spec = gallery.BY_NAME[name]
    with matplotlib.rc_context(spec.fonts):
        fig = spec.make(src)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=40, bbox_inches="tight")
    buffer.seek(0)
    return fig, imread(buffer)


def smallest_point_size_on_a_slide(fig, pixels) -> float:
    """The smallest text of the figure in points once the PNG is shown a slide wide (13.33 in)."""
    texts = list(fig.texts)
    for ax in fig.axes:
        texts += [*ax.texts, ax.title, ax._left_title, ax._right_title]
        if ax.get_legend() is not None:
            texts += ax.get_legend().get_texts()
        if ax.axison:
            texts += [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label, ax.yaxis.label]
    sizes = [t.get_fontsize() for t in texts
             if isinstance(t, Text) and t.get_visible() and t.get_text().strip()]
    width_inches = pixels.shape[1] / 40  # as saved, bbox_inches="tight"
    return min(sizes) * SLIDE_WIDTH / width_inches


def assert_slide_ready(fig, pixels):
    assert fig.get_figwidth() <= SLIDE_WIDTH + 1e-6  # a point drawn is a point on the slide
    assert smallest_point_size_on_a_slide(fig, pixels) >= 12


def bins_drawn(ax) -> int:
    return sum(patch.get_gid() == BIN for patch in ax.patches)


@pytest.fixture(scope="module")
def src(data_args, tmp_path_factory):
    return Inputs(data_args[1], data_args[3], runs=tmp_path_factory.mktemp("no_runs"))


def test_roi_pool_figure_draws_7_x_7_bins_and_its_output(src):
    fig, pixels = make("roi_pool", src)
    rounded, bins, pooled = fig.axes
    assert bins_drawn(bins) == 49 and bins_drawn(rounded) == 0
    assert pooled.images[0].get_array().shape[:2] == (7, 7)  # one max per bin
    assert "7 x 7" in fig.get_suptitle()
    assert_slide_ready(fig, pixels)


def test_spp_figure_draws_16_4_and_1_bins_per_roi(src):
    fig, pixels = make("spp", src)
    assert [bins_drawn(ax) for ax in fig.axes] == [16, 4, 1, 16, 4, 1]
    assert "21 bins" in fig.get_suptitle()
    assert_slide_ready(fig, pixels)


def test_roi_align_figure_draws_both_grids_and_the_lectures_max_and_mean(src):
    fig, pixels = make("roi_align", src)
    pool, align, example = fig.axes
    assert bins_drawn(pool) == bins_drawn(align) == 49
    assert len(align.collections[0].get_offsets()) == 49 * 4  # 2 x 2 sample points per bin
    words = " ".join(t.get_text() for t in example.texts)
    assert "max(0.14, 0.21, 0.51, 0.43)" in words and "= 0.51" in words and "0.3225" in words
    assert 'reduce="max"' in words and 'reduce="mean"' in words and "torchvision" in words
    assert_slide_ready(fig, pixels)


# ------------------------------------------------------------------------------------------------
# Masks: one colour per object
# ------------------------------------------------------------------------------------------------

def overlay_colours(ax) -> set:
    rgba = ax.images[-1].get_array().reshape(-1, 4)
    return {tuple(c) for c in np.round(rgba[rgba[:, 3] > 0, :3], 3)}


def test_masks_are_coloured_per_object_and_boxes_alone_per_class():
    boxes = torch.tensor([[2.0, 2.0, 10.0, 10.0], [12.0, 2.0, 20.0, 10.0]])
    labels = torch.tensor([1, 1])  # two objects of one class
    masks = torch.zeros(2, 24, 24)
    masks[0, 2:10, 2:10] = masks[1, 2:10, 12:20] = 1
    fig, (with_masks, boxes_only) = figure_grid(2)
    draw_detections(with_masks, torch.zeros(3, 24, 24), boxes, labels, masks=masks)
    assert len(overlay_colours(with_masks)) == 2
    assert with_masks.patches[0].get_edgecolor() != with_masks.patches[1].get_edgecolor()
    draw_detections(boxes_only, torch.zeros(3, 24, 24), boxes, labels)  # detection: by class
    assert boxes_only.patches[0].get_edgecolor() == boxes_only.patches[1].get_edgecolor()


def test_a_prediction_takes_the_colour_of_the_object_it_finds():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    predictions = torch.tensor([[21.0, 21.0, 30.0, 30.0],  # object 1 (IoU 0.81)
                                [40.0, 40.0, 50.0, 50.0],  # no object: a colour of its own
                                [0.0, 0.0, 10.0, 9.0],  # object 0 (IoU 0.9)
                                [0.0, 0.0, 10.0, 10.0]])  # object 0 again: taken, a new colour
    assert matched_colours(predictions, gt) == [PALETTE[1], PALETTE[2], PALETTE[0], PALETTE[3]]
    assert matched_colours(predictions[:1], gt[:0]) == [PALETTE[0]]  # an image without objects


# ------------------------------------------------------------------------------------------------
# The figures of trained runs
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(data_args, trained_runs):
    """The trained runs (their Mask R-CNN has the pyramid, --fpn)."""
    return Inputs(data_args[1], data_args[3], runs=trained_runs)


def test_fpn_figure_without_a_pyramid_run_is_skipped_naming_the_command(src, tmp_path,
                                                                       trained_runs, data_args):
    with pytest.raises(Skip) as no_run:
        make("fpn", src)
    message = str(no_run.value)
    assert message.startswith("no trained run") and "\n" not in message
    assert "python -m stages.mask_rcnn" in message and "--fpn" in message
    # a run of another stage where the pyramid's run goes: said, and the command again
    (tmp_path / "mask_rcnn").mkdir()
    (tmp_path / "mask_rcnn" / "checkpoint.pt").write_bytes(
        (trained_runs / "faster_rcnn" / "checkpoint.pt").read_bytes())
    other = Inputs(data_args[1], data_args[3], runs=tmp_path)
    with pytest.raises(Skip, match="written by stage 'faster_rcnn'.*--fpn"):
        make("fpn", other)
    assert other.used == []


def test_fpn_figure_draws_the_trained_pyramid_and_its_rpn_proposals(trained):
    from stages.figures.common import trained_model
    fig, pixels = make("fpn", trained)
    assert trained.used and "mask_rcnn" in trained.used[0]
    model, _ = trained_model(trained, "mask_rcnn", ("mask_rcnn",))
    with torch.no_grad():
        features, sizes = model.features([trained.image])
        proposals, _, _ = model.proposer(features, sizes, [trained.image])
    image_ax = fig.axes[0]
    assert f"the RPN's {len(proposals[0])} proposals" in image_ax.get_title()
    counts = [int(t.get_text().split(":")[1].split(",")[0]) for t in image_ax.get_legend().get_texts()]
    assert sum(counts) == len(proposals[0])  # every proposal pooled from one of P2..P5
    assert_slide_ready(fig, pixels)


def test_masks_figure_puts_the_ground_truth_above_the_predictions(trained):
    fig, pixels = make("masks", trained)
    n = min(4, len(trained.val))
    top, bottom = fig.axes[:n], fig.axes[n:]
    assert len(bottom) == n
    assert [t.get_text() for t in top[0].texts][-1] == "ground truth"  # the row's label
    assert [t.get_text() for t in bottom[0].texts][-1].startswith("predicted")
    for i, ax in enumerate(top):
        assert ax.get_title() == f"image {i}: {len(trained.val[i][1]['boxes'])} objects"
        masks = trained.val[i][1]["masks"].bool()  # (G, H, W); a later object covers an earlier
        owner = (masks * torch.arange(1, len(masks) + 1)[:, None, None]).amax(0)  # (H, W), 0: none
        seen = len(set(owner.unique().tolist()) - {0})  # the objects with a pixel in sight
        assert len(overlay_colours(ax)) == min(seen, 10)  # one colour per object
    for ax in bottom:  # a briefly trained model may find nothing over 0.5: its best, said so
        assert ax.get_title().endswith(" detections") or ax.get_title().startswith("none >= 0.5")
    assert_slide_ready(fig, pixels)


def test_mask_path_figure_is_slide_shaped_with_the_ground_truth(trained):
    fig, pixels = make("mask_path", trained)
    H, W = pixels.shape[:2]
    assert 1.5 <= W / H <= 2.0, (W, H)  # about 16:9 (1.78), not a sliver (it was 4.6)
    assert len(fig.axes) == 8
    assert fig.axes[6].get_title().startswith("7. ground truth: ")  # the object under the box
    assert fig.axes[7].get_title().startswith("8. mask IoU ")
    assert_slide_ready(fig, pixels)
    # notebook 04 draws it without the ground truth: the two panels say so
    from stages.figures.common import trained_model
    model, _ = trained_model(trained, "mask_rcnn", ("mask_rcnn",))
    without = mask_path_figure(model, trained.image, trained.class_names)
    assert [t.get_text() for t in without.axes[6].texts] == ["no ground truth given"]
