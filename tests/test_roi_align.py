"""RoIAlign: worked examples, the max variant, and equality with torchvision.ops.roi_align."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from stages.figures.draw import draw_roi_align_points, figure_grid
from stages.files import save_figure
from stages.ops import kernels, roi_align, roi_align_sample_points


def test_hand_computed_2x2_on_a_5x5_arange_grid():
    # value 5 y + x at cell (y, x): linear, so bilinear sampling is exact and a mean of points is
    # the value at their centre. Box x, y 1..3 (aligned=False: no shift) -> bins of 1 x 1 cell;
    # sampling_ratio 2 puts the points of bin (0, 0) at x, y in {1.25, 1.75}
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    box = torch.tensor([[0, 1.0, 1.0, 3.0, 3.0]])
    mean = roi_align(x, box, 2, 1.0, sampling_ratio=2, aligned=False)
    assert mean[0, 0].tolist() == [[9, 10], [14, 15]]  # 5 * 1.5 + 1.5 = 9 at bin (0, 0)'s centre
    top = roi_align(x, box, 2, 1.0, sampling_ratio=2, aligned=False, reduce="max")
    assert top[0, 0].tolist() == [[10.5, 11.5], [15.5, 16.5]]  # 5 * 1.75 + 1.75, the bottom-right point
    # aligned=True shifts the box by -0.5 cell: every value drops by 0.5 * (5 + 1)
    shifted = roi_align(x, box, 2, 1.0, sampling_ratio=2, aligned=True)
    assert shifted[0, 0].tolist() == [[6, 7], [11, 12]]


def test_max_of_four_bilinear_points_by_hand():
    # a 4 x 4 map with two bumps, so that the four points differ and max != mean
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 8.0
    x[0, 0, 2, 2] = 4.0
    # box (1, 1, 4, 4) px, aligned: (0.5, 0.5) + 3 x 3 cells, one bin, 2 x 2 points at 0.5 + 0.75 and
    # 0.5 + 2.25: x, y in {1.25, 2.75}
    box = torch.tensor([[0, 1.0, 1.0, 4.0, 4.0]])
    points = roi_align_sample_points(box[0, 1:], 1, 1.0, sampling_ratio=2, aligned=True)
    assert points.tolist() == [[[[1.25, 1.25], [2.75, 1.25], [1.25, 2.75], [2.75, 2.75]]]]
    # bilinear, F(y, x) = sum of (1 - |y - i|)(1 - |x - j|) F[i, j] over the four nearest cells
    p11 = 0.75 * 0.75 * 8 + 0.25 * 0.25 * 4  # (x, y) = (1.25, 1.25): 4.5 + 0.25 = 4.75
    p21 = 0.25 * 0.25 * 4  # (2.75, 1.25): cell (2, 2) is the only non-zero neighbour
    p12 = 0.25 * 0.25 * 4  # (1.25, 2.75)
    p22 = 0.25 * 0.25 * 4  # (2.75, 2.75)
    top = roi_align(x, box, 1, 1.0, sampling_ratio=2, aligned=True, reduce="max")
    assert top.item() == max(p11, p21, p12, p22) == 4.75
    mean = roi_align(x, box, 1, 1.0, sampling_ratio=2, aligned=True)
    assert mean.item() == (p11 + p21 + p12 + p22) / 4 == 1.375
    assert torchvision.ops.roi_align(x, box, 1, 1.0, 2, True).item() == 1.375


def test_sample_points_are_where_roi_align_samples():
    # inside the map, grid_sample (align_corners=True: cell j's value at x = j) is an independent
    # bilinear interpolation; the mean of its values at our points must be roi_align's output
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 3, 8, 8, generator=gen)
    box = [5.0, 3.0, 27.0, 20.0]  # px, stride 4, aligned: (0.75, 0.25) .. (6.25, 4.5) on the 8 x 8 map
    points = roi_align_sample_points(box, (2, 3), 0.25, sampling_ratio=3, aligned=True)  # (2, 3, 9, 2)
    assert points.shape == (2, 3, 9, 2)
    grid = points / torch.tensor([7.0, 7.0]) * 2 - 1  # (x, y) -> [-1, 1] over cell centres 0..7
    sampled = F.grid_sample(x, grid[None].reshape(1, 2, 27, 2), align_corners=True)  # (1, 3, 2, 27)
    expected = sampled.reshape(1, 3, 2, 3, 9).mean(-1)
    torch.testing.assert_close(roi_align(x, torch.tensor([[0.0, *box]]), (2, 3), 0.25, 3, True), expected)


def test_adaptive_sampling_counts_points_per_roi():
    # sampling_ratio <= 0: ceil(bin size in cells) points per bin along each axis
    points = roi_align_sample_points([0.0, 0.0, 50.0, 20.0], 2, 0.25, sampling_ratio=0, aligned=False)
    assert points.shape == (2, 2, 7 * 3, 2)  # bins of 6.25 x 2.5 cells -> 7 x 3 points
    empty = roi_align_sample_points([8.0, 8.0, 8.0, 8.0], 2, 0.25, sampling_ratio=-1, aligned=True)
    assert empty.shape == (2, 2, 0, 2)  # a zero-size aligned RoI has no points (and pools to 0)


def _random_rois(gen, n_images, R, extent, dtype):
    """RoIs [R, 5] in an image of ``extent`` pixels: some on the border, partly or wholly outside, empty."""
    b = torch.rand(R, 4, generator=gen) * 1.8 * extent - 0.4 * extent  # 40% of the image beyond each side
    boxes = torch.stack([b[:, 0].min(b[:, 2]), b[:, 1].min(b[:, 3]),
                         b[:, 0].max(b[:, 2]), b[:, 1].max(b[:, 3])], 1)
    boxes[::3] = boxes[::3].round()  # on pixel edges
    boxes[:3, 2:] = boxes[:3, :2]  # zero-size boxes
    boxes[3] = torch.tensor([0.0, 0.0, extent, extent])  # the whole image, on the border
    boxes[4] = torch.tensor([-0.3, 0.2, 0.4, 1.3]) * extent  # partly outside, over the top-left corner
    boxes[5] = torch.tensor([1.1, 1.2, 1.3, 1.5]) * extent  # wholly outside
    index = torch.randint(0, n_images, (R, 1), generator=gen)
    return torch.cat([index, boxes], 1).to(dtype)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3])
@pytest.mark.parametrize("spatial_scale, output_size", [(1.0, 2), (0.5, (3, 5)), (0.25, 7), (1 / 8, 4)])
def test_equals_torchvision_values_and_gradients(aligned, sampling_ratio, spatial_scale, output_size):
    gen = torch.Generator().manual_seed(sampling_ratio + 10 * int(aligned) + int(100 * spatial_scale))
    H, W = 12, 16
    for _ in range(3):
        x = torch.randn(2, 4, H, W, generator=gen, requires_grad=True)
        rois = _random_rois(gen, 2, 24, W / spatial_scale, torch.float32)
        ours = roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
        ref = torchvision.ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        g = torch.randn(ref.shape, generator=gen)
        (g_ref,) = torch.autograd.grad(ref, x, g)
        (g_ours,) = torch.autograd.grad(ours, x, g)
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-5)
        assert g_ref.abs().sum() > 0


def test_points_on_the_border_rules_of_torchvision():
    # one point per RoI (1 x 1 output, sampling_ratio 1) at y = the RoI's centre; the map is 4 x 4.
    # y = -1 and y = H still read the edge row; a hair beyond, the point reads 0
    x = torch.arange(16, dtype=torch.float64).reshape(1, 1, 4, 4) + 1  # 1..16, no zero cells
    centres = [-1.0, -1.001, -0.5, 0.0, 3.0, 3.5, 4.0, 4.001]
    rois = torch.tensor([[0, 1.0, c - 0.5, 2.0, c + 0.5] for c in centres], dtype=torch.float64)
    ours = roi_align(x, rois, 1, 1.0, sampling_ratio=1, aligned=False).flatten()
    # x = 1.5 (column 1.5 -> 2.5 on row 0, 14.5 on row 3)
    assert ours.tolist() == [2.5, 0.0, 2.5, 2.5, 14.5, 14.5, 14.5, 0.0]
    torch.testing.assert_close(ours, torchvision.ops.roi_align(x, rois, 1, 1.0, 1, False).flatten())


def test_box_formats_several_images_and_empty_input():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 10, 10, generator=gen)
    boxes = [torch.tensor([[0.0, 0.0, 20.0, 20.0]]),
             torch.zeros(0, 4),  # an image without RoIs
             torch.tensor([[4.0, 4.0, 30.0, 12.0], [0.0, 0.0, 1.0, 1.0], [-8.0, 30.0, 50.0, 44.0]])]
    as_list = roi_align(x, boxes, (2, 3), 0.25, 2, True)
    rois = torch.cat([torch.tensor([[0.0]] + [[2.0]] * 3), torch.cat(boxes)], 1)  # Tensor[4, 5]
    as_tensor = roi_align(x, rois, (2, 3), 0.25, 2, True)
    assert as_list.shape == (4, 5, 2, 3)
    torch.testing.assert_close(as_list, as_tensor)
    torch.testing.assert_close(as_list, torchvision.ops.roi_align(x, boxes, (2, 3), 0.25, 2, True))
    # RoIs of image 2 read image 2: the same box on image 0 gives something else
    moved = rois.clone()
    moved[1:, 0] = 0
    assert not torch.allclose(roi_align(x, moved, (2, 3), 0.25, 2, True)[1], as_tensor[1])
    for reduce in ("mean", "max"):
        assert roi_align(x, torch.zeros(0, 5), 7, 0.25, reduce=reduce).shape == (0, 5, 7, 7)
        # only zero-size aligned RoIs: adaptive sampling puts no point in any bin, and they pool to 0
        empty = roi_align(x, torch.tensor([[0, 8.0, 8.0, 8.0, 8.0]]), 7, 0.25, -1, True, reduce=reduce)
        assert empty.shape == (1, 5, 7, 7) and not empty.any()
        assert roi_align(x, [torch.zeros(0, 4)] * 3, 7, 0.25, reduce=reduce).shape == (0, 5, 7, 7)
    with pytest.raises(ValueError, match=r"\[R, 5\]"):
        roi_align(x, torch.zeros(3, 4), 7)
    with pytest.raises(ValueError, match="reduce"):
        roi_align(x, rois, 7, reduce="sum")


@pytest.mark.parametrize("sampling_ratio, aligned", [(-1, False), (2, True), (3, False), (0, True)])
def test_max_is_at_least_the_mean(sampling_ratio, aligned):
    gen = torch.Generator().manual_seed(sampling_ratio + 7)
    x = torch.randn(2, 4, 16, 16, generator=gen)
    rois = _random_rois(gen, 2, 24, 64.0, torch.float32)
    mean = roi_align(x, rois, 3, 0.25, sampling_ratio, aligned)
    top = roi_align(x, rois, 3, 0.25, sampling_ratio, aligned, reduce="max")
    assert top.shape == mean.shape == (24, 4, 3, 3)
    assert (top >= mean - 1e-6).all()
    # and strictly above in most bins on the map (off it, or with one point per bin, they are equal)
    assert (top > mean + 1e-3).float().mean() > 0.25
    # one point per bin: its value is both the max and the mean
    torch.testing.assert_close(roi_align(x, rois, 3, 0.25, 1, aligned, reduce="max"),
                               roi_align(x, rois, 3, 0.25, 1, aligned))


@pytest.mark.parametrize("reduce", ["mean", "max"])
def test_gradcheck_in_double(reduce):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 5, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 1.3, 0.7, 4.6, 3.9], [1, -1.2, 2.0, 3.1, 6.4], [1, 0.0, 0.0, 6.0, 5.0]],
                        dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda t: roi_align(t, rois, 2, 1.0, sampling_ratio=2, aligned=True, reduce=reduce), (x,))
    (g,) = torch.autograd.grad(roi_align(x, rois, 2, 1.0, 2, True, reduce=reduce).sum(), x)
    assert g.abs().sum() > 0
    if reduce == "max":  # each output's gradient goes to the (up to 4) cells around its best point
        (g_mean,) = torch.autograd.grad(roi_align(x, rois, 2, 1.0, 2, True).sum(), x)
        assert (g != 0).sum() < (g_mean != 0).sum()


def test_kernel_switch_includes_roi_align():
    assert kernels("ours").roi_align is roi_align
    assert kernels("torchvision").roi_align is torchvision.ops.roi_align
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    rois = _random_rois(gen, 2, 12, 128.0, torch.float32)
    torch.testing.assert_close(kernels("ours").roi_align(x, rois, 7, 0.125, 2, True),
                               kernels("torchvision").roi_align(x, rois, 7, 0.125, 2, True))


def test_draw_roi_align_points_is_a_png(tmp_path):
    gen = torch.Generator().manual_seed(0)
    feature = torch.rand(16, 16, generator=gen)
    fig, (ax,) = figure_grid(1)
    ax.imshow(feature.numpy(), cmap="gray")
    draw_roi_align_points(ax, [37.0, 20.0, 90.0, 61.0], spatial_scale=1 / 8, output_size=2,
                          map_size=(16, 16), sampling_ratio=2, aligned=True)
    drawn = ax.collections[-1].get_offsets()  # the sample points, (x, y)
    assert len(drawn) == 2 * 2 * 4
    points = roi_align_sample_points([37.0, 20.0, 90.0, 61.0], 2, 1 / 8, 2, True)  # (2, 2, 4, 2)
    assert np.allclose(drawn, points.reshape(-1, 2))
    assert len(ax.patches) == 1 + 2 * 2  # the RoI and its bins
    path = save_figure(fig, tmp_path / "roi_align.png")
    assert path.stat().st_size > 0
    with Image.open(path) as im:
        assert np.asarray(im.convert("RGB")).std() > 10, "the picture should not be blank"
