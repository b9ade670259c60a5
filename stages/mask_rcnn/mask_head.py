"""Mask R-CNN's mask branch (He et al. 2017, sec. 3): a small FCN, one binary mask per class.

Shape shorthand: N images, C channels of each map, R RoIs (all images), P positive RoIs,
D detections, K object classes, m = 28 the mask size.
Naming: ``pred_*`` the branch's outputs, ``gt_*`` the targets from the ground truth.

    features (P2..P5, or C3 alone), rois list of N [R_i, 4]
      -> pooler                (R, C, 14, 14) RoIAlign (``pooling.py``), or RoIPool for Table 2c
    mask branch (Figure 4, right):
      -> 4 x (3x3 conv + ReLU) (R, c, 14, 14)
      -> 2x2 deconv, stride 2  (R, c, 28, 28)
      -> 1x1 conv              (R, K, 28, 28)  one mask per class (sigmoid), or K + 1 (softmax ablation)
    class_channel: which output channel is class k's mask (sigmoid: k - 1, softmax: k)
    mask_targets: each positive RoI's gt mask, cropped to the RoI and resized to m x m with RoIAlign
    mask_loss:    binary cross-entropy on the RoI's gt class channel only (masks don't compete)
    paste_masks:  m x m probabilities back into the image, inside each detected box
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from stages.ops import kernels


class MaskHead(nn.Module):
    """The FCN mask branch: pooled (R, C, 14, 14) -> mask logits (R, outputs, 28, 28)."""

    def __init__(self, pooler: nn.Module, in_channels: int, outputs: int,
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
    """The m x m training target of each RoI [P, 4] (sec. 3.1): its matched instance's mask
    (``gt_masks[gt_index]``, [G, H, W] uint8) cropped to the RoI and resized with RoIAlign,
    then binarised at 0.5 -> float {0, 1} [P, m, m]."""
    if len(rois) == 0:
        return gt_masks.new_zeros((0, size, size), dtype=torch.float32)
    boxes = torch.cat([gt_index[:, None].to(rois.dtype), rois], dim=1)  # each RoI reads its own gt
    resized = kernels(kernel).roi_align(gt_masks[:, None].float(), boxes, size, 1.0,
                                        sampling_ratio=2, aligned=True)  # (P, 1, m, m)
    return (resized[:, 0] >= 0.5).float()


def class_channel(labels: torch.Tensor, mode: str = "sigmoid") -> torch.Tensor:
    """Which of the branch's output channels is class k's mask, for labels (P,) in 1..K.

    sigmoid (the paper): K channels, no background mask, so class k is channel k - 1;
    softmax (the ablation): K + 1 channels, background = channel 0, so class k is channel k.
    Both the loss and the test-time mask read through here."""
    if mode == "sigmoid":
        return labels - 1
    if mode == "softmax":
        return labels
    raise ValueError(f"--mask-loss {mode!r}: expected 'sigmoid' or 'softmax'")


def mask_loss(pred_mask_logits: torch.Tensor, gt_labels: torch.Tensor, gt_masks: torch.Tensor,
              mode: str = "sigmoid") -> torch.Tensor:
    """L_mask of the positive RoIs: pred_mask_logits (P, K or K + 1, m, m), gt_labels (P,) in 1..K,
    gt_masks (P, m, m) in {0, 1} (``mask_targets``).

    sigmoid (the paper): "L_mask is defined only on the k-th mask" of a RoI whose gt class is k,
    average binary cross-entropy over its m^2 pixels; the other K - 1 masks get no gradient, so the
    classes do not compete (sec. 3, Table 2b).
    softmax (the ablation): a per-pixel softmax over K + 1 channels (background = channel 0), the
    target class k inside the mask and background outside: the classes compete for each pixel.
    """
    if len(gt_labels) == 0:
        return pred_mask_logits.sum() * 0.0  # no positive RoI: zero, but still part of the graph
    channel = class_channel(gt_labels, mode)  # (P,)
    if mode == "sigmoid":
        own = pred_mask_logits[torch.arange(len(gt_labels), device=gt_labels.device), channel]  # (P, m, m)
        # L_mask = -1/m^2 sum_ij [y_ij log sigmoid(x_ij) + (1 - y_ij) log(1 - sigmoid(x_ij))], mask k only
        return F.binary_cross_entropy_with_logits(own, gt_masks)
    pixel_class = gt_masks.long() * channel[:, None, None]  # (P, m, m): channel k inside, 0 outside
    # -1/m^2 sum_ij log softmax(x_ij)[class of pixel ij]: the K + 1 channels compete per pixel
    return F.cross_entropy(pred_mask_logits, pixel_class)


def mask_probabilities(pred_mask_logits: torch.Tensor, pred_labels: torch.Tensor, mode: str = "sigmoid"):
    """The predicted class's m x m mask probabilities of each detection: (D, m, m)."""
    rows = torch.arange(len(pred_labels), device=pred_labels.device)
    channel = class_channel(pred_labels, mode)  # (D,)
    if mode == "sigmoid":
        return torch.sigmoid(pred_mask_logits[rows, channel])
    return F.softmax(pred_mask_logits, dim=1)[rows, channel]


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
