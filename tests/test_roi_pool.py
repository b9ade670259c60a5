"""RoI pooling and SPP pooling: worked examples, and equality with torchvision.ops.roi_pool."""

from __future__ import annotations

import pytest
import torch
import torchvision

from stages.ops import kernels, roi_pool, spp_output_dim, spp_pool


def test_hand_computed_2x2_pooling_on_a_5x5_grid():
    # values 0..24 row by row; the RoI covers cells x 0..3, y 0..3 (4 x 4 cells) -> 2 x 2 bins of 2 x 2
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    out = roi_pool(x, torch.tensor([[0, 0.0, 0.0, 3.0, 3.0]]), output_size=2, spatial_scale=1.0)
    assert out[0, 0].tolist() == [[6, 8], [16, 18]]  # the bottom-right cell of each 2 x 2 bin


def test_quantisation_rounds_the_roi_to_cells():
    # stride 2 (spatial_scale 0.5): x1 = 2.9 px -> 1.45 -> cell 1; x2 = 5.1 px -> 2.55 -> cell 3
    x = torch.arange(25, dtype=torch.float32).reshape(1, 1, 5, 5)
    out = roi_pool(x, torch.tensor([[0, 2.9, 0.0, 5.1, 0.0]]), output_size=1, spatial_scale=0.5)
    assert out.item() == 3  # the max of cells (row 0, columns 1..3) = 1, 2, 3
    # halves round away from zero, as the reference kernel's C round (torch.round gives 2, not 3)
    out = roi_pool(x, torch.tensor([[0, 0.0, 0.0, 5.0, 0.0]]), output_size=1, spatial_scale=0.5)
    assert out.item() == 3


def _random_rois(gen, n_images, R, extent, dtype):
    b = torch.rand(R, 4, generator=gen) * (extent + 80) - 40  # some outside the image
    boxes = torch.stack([b[:, 0].min(b[:, 2]), b[:, 1].min(b[:, 3]),
                         b[:, 0].max(b[:, 2]), b[:, 1].max(b[:, 3])], 1)
    boxes[::3] = boxes[::3].round()  # on the grid, where rounding ties happen
    boxes[:4, 2:] = boxes[:4, :2]  # zero-size boxes
    index = torch.randint(0, n_images, (R, 1), generator=gen)
    return torch.cat([index, boxes], 1).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("spatial_scale, output_size", [(0.125, 7), (0.25, (3, 5)), (1 / 16, 2), (1.0, 1)])
def test_equals_torchvision_values_and_gradients(dtype, spatial_scale, output_size):
    gen = torch.Generator().manual_seed(int(spatial_scale * 1000))
    for _ in range(5):
        x = torch.randn(2, 4, 16, 16, generator=gen, dtype=dtype, requires_grad=True)
        rois = _random_rois(gen, 2, 24, 128, dtype)
        ours = roi_pool(x, rois, output_size, spatial_scale)
        ref = torchvision.ops.roi_pool(x, rois, output_size, spatial_scale)
        assert torch.equal(ours, ref)
        g = torch.randn(ref.shape, generator=gen, dtype=dtype)
        (g_ref,) = torch.autograd.grad(ref, x, g)
        (g_ours,) = torch.autograd.grad(ours, x, g) if ours.requires_grad else (torch.zeros_like(x),)
        torch.testing.assert_close(g_ours, g_ref)
        assert g_ref.abs().sum() > 0


def test_list_of_boxes_and_empty_input():
    x = torch.randn(2, 3, 8, 8)
    boxes = [torch.tensor([[0., 0., 20., 20.]]), torch.tensor([[4., 4., 30., 12.], [0., 0., 1., 1.]])]
    torch.testing.assert_close(roi_pool(x, boxes, 2, 0.25), torchvision.ops.roi_pool(x, boxes, 2, 0.25))
    assert roi_pool(x, torch.zeros(0, 5), 7, 0.25).shape == (0, 3, 7, 7)
    with pytest.raises(ValueError, match=r"\[R, 5\]"):
        roi_pool(x, torch.zeros(3, 4), 7)


def test_kernel_switch_includes_roi_pool():
    assert kernels("ours").roi_pool is roi_pool
    assert kernels("torchvision").roi_pool is torchvision.ops.roi_pool


def test_spp_output_size_and_its_1x1_level_is_a_global_max():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 16, 16, generator=gen)
    rois = torch.tensor([[0, 8., 16., 72., 40.], [1, 0., 0., 127., 127.], [1, 50., 60., 58., 61.]])
    out = spp_pool(x, rois, levels=(4, 2, 1), spatial_scale=0.125)
    assert out.shape == (3, spp_output_dim(5, (4, 2, 1))) == (3, 5 * 21)
    one = out[:, -5:]  # the last level, 1 x 1: one max per channel over the RoI's cells
    # RoI 0: cells x round(1)..round(9) = 1..9, y round(2)..round(5) = 2..5
    torch.testing.assert_close(one[0], x[0, :, 2:6, 1:10].amax(dim=(1, 2)))
    torch.testing.assert_close(one[1], x[1].amax(dim=(1, 2)))  # the whole map
    torch.testing.assert_close(one[2], x[1, :, 8:9, 6:8].amax(dim=(1, 2)))
    # the first level is RoI pooling at 4 x 4, flattened channel by channel
    torch.testing.assert_close(out[:, : 5 * 16], roi_pool(x, rois, 4, 0.125).flatten(1))
    # torchvision's kernel gives the same vector
    torch.testing.assert_close(spp_pool(x, rois, (4, 2, 1), 0.125, pool=torchvision.ops.roi_pool), out)
