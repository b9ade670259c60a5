"""From a proposal to the CNN's input: context padding, then an anisotropic warp to S x S.

Paper: R-CNN sec. 2.1 and Appendix A. A CNN needs a fixed-size input, a proposal has any size and
shape. Of the transformations the paper compares, the best one is:

  1. *context padding*: dilate the box so that, after warping, the original box is surrounded by
     p pixels of image context (p = 16 at the paper's S = 227; ours p = 16 * S / 227);
  2. *anisotropic warp*: stretch the dilated box, whatever its aspect ratio, to S x S.

Step 1 as a formula: the original box must fill S - 2p of the S warped pixels, so every side of
the box grows by the factor S / (S - 2p) about its centre (227 / 195 = 1.16 in the paper).
Where the dilated box leaves the image, the paper fills the missing pixels with the image mean;
we normalise the image first (subtract the mean), then sample outside it as 0 = the mean.

Step 2 samples the image bilinearly at the centres of the S x S output pixels, one sample each
(the rcnn code resizes with ``imresize(..., 'bilinear', 'antialiasing', false)``). Pixel i covers
[i, i + 1) in our box format, so its centre is i + 0.5, and output pixel (u, v) of a box
(x1, y1, x2, y2) samples the image at

    x = x1 + (u + 0.5) * (x2 - x1) / S,      y = y1 + (v + 0.5) * (y2 - y1) / S

A box of exactly S x S pixels on integer coordinates therefore returns those very pixels (a test
checks it), and the result equals ``torchvision.ops.roi_align(..., aligned=True,
sampling_ratio=1)`` inside the image (another test).

Shape shorthand: R regions, S the warp size, H x W the image. Boxes (x1, y1, x2, y2), absolute
pixels. The IoU match that labels each region for fine-tuning (IoU >= 0.5), the SVMs (< 0.3)
and box regression (> 0.6) is ``stages.ops.match_to_ground_truth``, shared with every stage.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from stages.backbone import PIXEL_MEAN, PIXEL_STD


def normalize(image: Tensor) -> Tensor:
    """float [3, H, W] in [0, 1] -> zero-mean inputs; the mean colour becomes 0 (R-CNN subtracts
    the mean image; outside the image the warp then reads 0, i.e. the mean)."""
    mean = torch.tensor(PIXEL_MEAN, device=image.device)[:, None, None]  # (3, 1, 1)
    std = torch.tensor(PIXEL_STD, device=image.device)[:, None, None]
    return (image - mean) / std


def dilate_boxes(boxes: Tensor, warp_size: int, pad: float) -> Tensor:
    """Context padding (Appendix A): grow each box about its centre by S / (S - 2p).

    boxes [R, 4] -> [R, 4], not clipped (the warp pads outside the image). Example: S = 56,
    p = 3.95: a 20 x 10 box becomes 20 * 56 / 48.1 = 23.3 by 11.6 pixels.
    """
    scale = warp_size / (warp_size - 2 * pad)  # 227 / 195 = 1.164 in the paper
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # (R, 2)
    half = (boxes[:, 2:] - boxes[:, :2]) / 2 * scale  # (R, 2) half width, half height
    return torch.cat([centre - half, centre + half], dim=1)  # (R, 4)


def sampling_grid(boxes: Tensor, warp_size: int, image_size: tuple[int, int]) -> Tensor:
    """Where each output pixel samples the image, in ``grid_sample``'s coordinates.

    Returns [R, S, S, 2] with (x, y) in [-1, 1] (align_corners=False: -1 is the left edge of
    pixel 0, +1 the right edge of pixel W - 1, so x_pixels = (x + 1) * W / 2).
    """
    H, W = image_size
    S = warp_size
    steps = (torch.arange(S, dtype=boxes.dtype, device=boxes.device) + 0.5) / S  # (S,) u+0.5 / S
    x1, y1, x2, y2 = boxes.unbind(dim=1)  # 4 x (R,)
    xs = x1[:, None] + steps[None, :] * (x2 - x1)[:, None]  # (R, S) pixel x of each column
    ys = y1[:, None] + steps[None, :] * (y2 - y1)[:, None]  # (R, S) pixel y of each row
    gx = xs * (2 / W) - 1  # (R, S) in grid_sample's [-1, 1]
    gy = ys * (2 / H) - 1
    R = len(boxes)
    grid_x = gx[:, None, :].expand(R, S, S)  # (R, S rows, S cols): x varies along columns
    grid_y = gy[:, :, None].expand(R, S, S)  # y varies along rows
    return torch.stack([grid_x, grid_y], dim=-1)  # (R, S, S, 2)


def warp_regions(image: Tensor, boxes: Tensor, warp_size: int) -> Tensor:
    """Crop every box out of ``image`` [C, H, W] and stretch it to S x S: [R, C, S, S].

    Bilinear, one sample per output pixel; samples outside the image read 0 (pass a normalised
    image, so that 0 is the mean colour). No context padding here: ``dilate_boxes`` first.
    """
    C, H, W = image.shape
    R, S = len(boxes), warp_size
    if R == 0:
        return image.new_zeros((0, C, S, S))
    grid = sampling_grid(boxes.to(image.dtype), S, (H, W))  # (R, S, S, 2)
    grid = grid.reshape(1, R * S, S, 2)  # all regions stacked as one tall image: one call
    out = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=False)  # (1, C, R*S, S)
    return out.reshape(C, R, S, S).permute(1, 0, 2, 3)  # (1, C, R*S, S) -> (R, C, S, S)


def crop_regions(image: Tensor, boxes: Tensor, warp_size: int, context_pad: float) -> Tensor:
    """Sec. 2.1's region step on a *normalised* image [3, H, W] (``normalize``): dilate every
    box by the context, warp it to S x S. Returns [R, 3, S, S]."""
    return warp_regions(image, dilate_boxes(boxes, warp_size, context_pad), warp_size)


def warp_from_images(images: Tensor | list[Tensor], image_index: Tensor, boxes: Tensor,
                     warp_size: int, context_pad: float) -> Tensor:
    """``crop_regions`` for regions of many images at once (a training mini-batch).

    images: *normalised* images, a tensor [N, 3, H, W] when they share one size, else a list of
    [3, H_i, W_i]; image_index [R] which image each box [R, 4] is from. Returns [R, 3, S, S] in
    the order of the boxes. One ``grid_sample`` call for a tensor; one per image for a list
    (slower: 128 small calls for a mini-batch drawn from 128 images).
    """
    device = images.device if isinstance(images, Tensor) else images[0].device
    image_index = image_index.to(device)  # the boxes may be drawn on the CPU
    dilated = dilate_boxes(boxes.to(device), warp_size, context_pad)  # (R, 4)
    if isinstance(images, Tensor):
        grid = sampling_grid(dilated.to(images.dtype), warp_size, images.shape[-2:])  # (R, S, S, 2)
        return F.grid_sample(images[image_index], grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)  # (R, 3, S, S): region r from its own image
    out = dilated.new_zeros((len(boxes), 3, warp_size, warp_size))
    for i in image_index.unique().tolist():
        rows = torch.where(image_index == i)[0]  # (R_i,) the regions of image i
        out[rows] = warp_regions(images[i], dilated[rows], warp_size)
    return out
