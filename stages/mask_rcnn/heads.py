"""Mask R-CNN's RoI features and its mask branch (He et al. 2017, sec. 3).

Shape shorthand: N images, C channels of each map, R RoIs (all images), K object classes,
S the pooled size (7 for the box head, 14 for the mask head), m = 28 the mask size.

    features (P2..P5, or C3 alone), rois list of N [R_i, 4]
      -> MultiLevelPooler      (R, C, S, S)   each RoI from its FPN level (Eq. 1), RoIAlign or RoIPool
    mask branch (Figure 4, right):
      -> 4 x (3x3 conv + ReLU) (R, c, 14, 14)
      -> 2x2 deconv, stride 2  (R, c, 28, 28)
      -> 1x1 conv              (R, K, 28, 28)  one mask per class (sigmoid), or K + 1 (softmax ablation)
    mask_targets: each positive RoI's gt mask, cropped to the RoI and resized to m x m with RoIAlign
    mask_loss:    binary cross-entropy on the RoI's gt class channel only (masks don't compete)
    paste_masks:  m x m probabilities back into the image, inside each detected box
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from stages.mask_rcnn.fpn import assign_levels, level_of_stride
from stages.ops import kernels
from stages.ops.roi_pool import rois_with_batch_index  # list of N [R_i, 4] -> [R, 5]


class MultiLevelPooler(nn.Module):
    """Pool every RoI from the level FPN Eq. 1 assigns it, with RoIAlign (or RoIPool, the ablation).

    ``strides``: of the maps the pooler will get, finest first (4, 8, 16, 32 for P2..P5; (8,) for
    C3 alone, where every RoI reads the one map). ``flatten``: (R, C S^2) for a fc head, else
    (R, C, S, S) for a conv head.
    """

    def __init__(self, channels: int, output_size: int, strides: tuple, pool: str = "align",
                 kernel: str = "torchvision", sampling_ratio: int = 2, reduce: str = "mean",
                 k0: int = 4, canonical: float = 224.0, flatten: bool = True):
        super().__init__()
        ops = kernels(kernel)
        if pool == "align":
            if reduce != "mean" and kernel != "ours":
                raise ValueError(f"RoIAlign with reduce={reduce!r} exists only in our kernel: "
                                 f"use --pool-kernel ours")
            extra = {"reduce": reduce} if kernel == "ours" else {}
            self.pool = functools.partial(ops.roi_align, sampling_ratio=sampling_ratio, aligned=True,
                                          **extra)
        elif pool == "roi":
            self.pool = ops.roi_pool
        else:
            raise ValueError(f"--pool {pool!r}: expected 'align' or 'roi'")
        self.output_size, self.strides, self.flatten = output_size, tuple(strides), flatten
        self.k_min, self.k_max = level_of_stride(self.strides[0]), level_of_stride(self.strides[-1])
        self.k0, self.canonical = k0, canonical
        self.out_dim = channels * output_size * output_size

    def levels(self, boxes: torch.Tensor) -> torch.Tensor:
        """Index (0 = finest map) of the map each RoI [R, 4] is pooled from."""
        if len(self.strides) == 1:
            return torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
        return assign_levels(boxes, self.k_min, self.k_max, self.k0, self.canonical) - self.k_min

    def forward(self, features: list[torch.Tensor], rois: list[torch.Tensor]) -> torch.Tensor:
        boxes = rois_with_batch_index(rois)  # (R, 5)
        levels = self.levels(boxes[:, 1:])
        S = self.output_size
        out = features[0].new_zeros((len(boxes), features[0].shape[1], S, S))
        for level, (feature, stride) in enumerate(zip(features, self.strides)):
            idx = torch.nonzero(levels == level).flatten()
            if len(idx):
                out[idx] = self.pool(feature, boxes[idx], S, 1.0 / stride)
        return out.flatten(1) if self.flatten else out


class MaskHead(nn.Module):
    """The FCN mask branch: pooled (R, C, 14, 14) -> mask logits (R, outputs, 28, 28)."""

    def __init__(self, pooler: MultiLevelPooler, in_channels: int, outputs: int,
                 channels: int = 64, convs: int = 4):
        super().__init__()
        self.pooler = pooler
        layers, c = [], in_channels
        for _ in range(convs):
            layers += [nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(inplace=True)]
            c = channels
        self.convs = nn.Sequential(*layers)
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2)  # 14 -> 28
        self.predictor = nn.Conv2d(channels, outputs, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, features, rois: list[torch.Tensor]) -> torch.Tensor:
        x = self.convs(self.pooler(features, rois))  # (R, c, 14, 14)
        return self.predictor(F.relu(self.upsample(x)))  # (R, outputs, 28, 28)


def mask_targets(gt_masks: torch.Tensor, rois: torch.Tensor, gt_index: torch.Tensor,
                 size: int = 28, kernel: str = "torchvision") -> torch.Tensor:
    """The m x m training target of each RoI [P, 4] (sec. 3): its matched instance's mask
    (``gt_masks[gt_index]``, [G, H, W] uint8) cropped to the RoI and resized with RoIAlign,
    then binarised at 0.5 -> float {0, 1} [P, m, m]."""
    if len(rois) == 0:
        return gt_masks.new_zeros((0, size, size), dtype=torch.float32)
    boxes = torch.cat([gt_index[:, None].to(rois.dtype), rois], dim=1)  # each RoI reads its own gt
    resized = kernels(kernel).roi_align(gt_masks[:, None].float(), boxes, size, 1.0,
                                        sampling_ratio=2, aligned=True)  # (P, 1, m, m)
    return (resized[:, 0] >= 0.5).float()


def mask_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor,
              mode: str = "sigmoid") -> torch.Tensor:
    """logits (P, K or K + 1, m, m) of positive RoIs, labels (P,) in 1..K, targets (P, m, m).

    sigmoid (the paper): "L_mask is defined only on the k-th mask" of a RoI whose gt class is k,
    average binary cross-entropy over its m^2 pixels; the other K - 1 masks get no gradient, so the
    classes do not compete (sec. 3, Table 2b).
    softmax (the ablation): a per-pixel softmax over K + 1 channels (background = channel 0), the
    target class k inside the mask and background outside: the classes compete for each pixel.
    """
    if len(labels) == 0:
        return logits.sum() * 0.0  # no positive RoI: zero, but still part of the graph
    if mode == "sigmoid":
        own = logits[torch.arange(len(labels), device=labels.device), labels - 1]  # (P, m, m)
        return F.binary_cross_entropy_with_logits(own, targets)
    if mode == "softmax":
        pixel_class = targets.long() * labels[:, None, None]  # (P, m, m): k inside, 0 outside
        return F.cross_entropy(logits, pixel_class)
    raise ValueError(f"--mask-loss {mode!r}: expected 'sigmoid' or 'softmax'")


def mask_probabilities(logits: torch.Tensor, labels: torch.Tensor, mode: str = "sigmoid"):
    """The predicted class's m x m mask probabilities of each detection: (D, m, m)."""
    rows = torch.arange(len(labels), device=labels.device)
    if mode == "sigmoid":
        return torch.sigmoid(logits[rows, labels - 1])
    return F.softmax(logits, dim=1)[rows, labels]  # softmax: channel k is class k


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Paste m x m masks [D, m, m] into the image inside their boxes [D, 4]: [D, H, W] probabilities.

    Every image pixel (its centre x + 0.5, y + 0.5) inside a box is looked up in that box's mask
    by bilinear interpolation (the m x m grid stretched over the box); pixels outside read 0.
    """
    H, W = image_size
    D = len(masks)
    if D == 0:
        return masks.new_zeros((0, H, W))
    xs = torch.arange(W, device=masks.device, dtype=masks.dtype) + 0.5  # pixel centres
    ys = torch.arange(H, device=masks.device, dtype=masks.dtype) + 0.5
    x1, y1, x2, y2 = boxes.to(masks.dtype).unbind(1)
    # normalised coordinates in [-1, 1] across each box (grid_sample's convention)
    u = 2 * (xs[None, :] - x1[:, None]) / (x2 - x1).clamp(min=1e-6)[:, None] - 1  # (D, W)
    v = 2 * (ys[None, :] - y1[:, None]) / (y2 - y1).clamp(min=1e-6)[:, None] - 1  # (D, H)
    grid = torch.stack([u[:, None, :].expand(D, H, W), v[:, :, None].expand(D, H, W)], dim=-1)
    pasted = F.grid_sample(masks[:, None], grid, mode="bilinear", padding_mode="border",
                           align_corners=False)  # (D, 1, H, W)
    inside = (u[:, None, :].abs() <= 1) & (v[:, :, None].abs() <= 1)  # (D, H, W)
    return pasted[:, 0] * inside
