"""The shared backbone: a small residual CNN that computes a feature map once per image.

Fast R-CNN's central change over R-CNN (Girshick 2015, sec. 2) is to run the CNN **once per
image** and cut each region's features out of the shared feature map, instead of warping every
region and running the CNN on each. All four stages use this backbone, so that the speed-up of
stage 2 over stage 1 measures the sharing and nothing else (as the paper compares VGG16 with VGG16):

    stage                    uses
    R-CNN (stage 1)          C3 of every 56 x 56 warped region, pooled to 7 x 7 (its "pool5")
    Fast R-CNN (stage 2)     C3, stride 8: one map, RoI pooling / SPP on it
    Faster R-CNN (stage 3)   C3: the RPN and the detection head share it (the paper's point)
    Mask R-CNN (stage 4)     C2..C5 through an FPN (stride 4..32), or C3 alone with --no-fpn

The papers use VGG16 / ResNet trained on ImageNet, with a stride-16 map on ~600-pixel images.
Ours is tiny and trained from scratch (no download, minutes on a CPU); our images are 128 px
with objects of 12-56 px, so the single-level map has stride 8 (a 16 x 16 map for a 128 image),
where stride 16 would leave the smallest objects under one cell.

Shape shorthand: N images, C channels, H x W the padded input size; level Ck has stride 2^k.

    image   (N, 3, H, W)
    stem    (N, c0, H/2, W/2)      two 3x3 convs, the second with stride 2
    C2      (N, c1, H/4, W/4)      each stage: a residual block with stride 2, then one more block
    C3      (N, c2, H/8, W/8)
    C4      (N, c3, H/16, W/16)
    C5      (N, c4, H/32, W/32)
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

# ImageNet statistics, the usual normalisation (our data is not ImageNet; any fixed values
# that centre the inputs do; these keep torchvision models and ours on the same footing)
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}
# the widths every stage uses: the stem (c0), then C2..C5; one place, so that all four stages
# (and the torchvision peers) run the same network unless a flag says otherwise
BACKBONE_CHANNELS = (32, 48, 96, 128, 160)


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet's basic block: y = relu(x' + conv-bn-relu-conv-bn(x)), x' = x or a 1x1 projection."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn_relu(c_in, c_out, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.shortcut(x) + self.conv2(self.conv1(x)))


class Backbone(nn.Module):
    """A 4-stage residual CNN returning the levels C2..C5 up to ``last_level``.

    ``channels = (c0, c1, c2, c3, c4)``: the stem's width, then one width per stage. Set
    ``last_level="C3"`` for the single-level stages: the deeper stages are then not built at all.
    ``out_channels`` is the width of the last level (what a single-level head sees).
    """

    def __init__(self, channels: tuple = BACKBONE_CHANNELS, last_level: str = "C3"):
        super().__init__()
        if last_level not in STRIDES:
            raise ValueError(f"last_level must be one of {list(STRIDES)}, not {last_level!r}")
        c0, *widths = channels
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(conv_bn_relu(3, c0), conv_bn_relu(c0, c0, stride=2))
        n_levels = list(STRIDES).index(last_level) + 1
        self.stages = nn.ModuleDict()
        c_in = c0
        for name, c_out in list(zip(STRIDES, widths))[:n_levels]:
            self.stages[name] = nn.Sequential(BasicBlock(c_in, c_out, stride=2), BasicBlock(c_out, c_out))
            c_in = c_out
        self.out_channels = c_in
        self.level_channels = {name: widths[i] for i, name in enumerate(self.stages)}
        self.last_level = last_level
        self.stride = STRIDES[last_level]

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """x (N, 3, H, W) in [0, 1] -> {"C2": (N, c1, H/4, W/4), ..., last_level: ...}."""
        return self.forward_normalized((x - self.pixel_mean) / self.pixel_std)

    def forward_normalized(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """The same, on inputs already normalised with PIXEL_MEAN and PIXEL_STD (R-CNN's warped
        regions are cut from the normalised image, so that the warp pads with the mean colour)."""
        x = self.stem(x)  # (N, c0, H/2, W/2)
        levels = OrderedDict()
        for name, stage in self.stages.items():
            x = stage(x)
            levels[name] = x
        return levels


def batch_images(images: list[torch.Tensor], size_divisible: int = 32) -> tuple[torch.Tensor, list]:
    """Pad a list of images [3, H_i, W_i] into one batch (N, 3, H, W), H and W multiples of
    ``size_divisible`` so every level's map is whole. Padding goes right and bottom, so boxes keep
    their coordinates. Returns the batch and the original sizes [(H_i, W_i)]."""
    sizes = [tuple(im.shape[-2:]) for im in images]
    H = max(h for h, _ in sizes)
    W = max(w for _, w in sizes)
    H, W = -(-H // size_divisible) * size_divisible, -(-W // size_divisible) * size_divisible
    batch = images[0].new_zeros((len(images), 3, H, W))
    for im, slot in zip(images, batch):
        slot[:, : im.shape[1], : im.shape[2]].copy_(im)
    return batch, sizes
