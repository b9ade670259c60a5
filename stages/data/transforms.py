"""Transforms that move an image and its boxes and masks together.

Each transform is a callable ``(image, target) -> (image, target)`` on the shared item
(``stages.data.sources``): image float [3, H, W], boxes [N, 4] in (x1, y1, x2, y2) absolute pixels,
masks uint8 [N, H, W]. Whatever happens to the pixels happens to the boxes and masks too.

- ``Resize(long_side)``: scale so that the longer side is ``long_side`` pixels (aspect kept).
  The papers resize by the shorter side (600 px in Fast/Faster R-CNN, 800 in Mask R-CNN); our
  images are small, so we cap the longer side, which bounds the cost per image on a CPU.
- ``HorizontalFlip(p)``: the only augmentation of Fast R-CNN (sec. 2.3, p = 0.5).

Randomness comes from torch's global generator, which ``stages.training.device.seed_everything`` seeds:
with the loader in the main process the same seed gives the same flips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms})"


class Resize:
    """Scale the image so that its longer side is ``long_side``; boxes scale, masks follow (nearest)."""

    def __init__(self, long_side: int):
        self.long_side = int(long_side)

    def __call__(self, image, target):
        _, H, W = image.shape
        scale = self.long_side / max(H, W)
        if scale == 1.0:
            return image, target
        new_h, new_w = max(1, round(H * scale)), max(1, round(W * scale))
        image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear",
                              align_corners=False, antialias=scale < 1)[0].clamp(0, 1)
        target = dict(target)
        sx, sy = new_w / W, new_h / H
        target["boxes"] = target["boxes"] * torch.tensor([sx, sy, sx, sy])
        masks = target["masks"]
        if len(masks):
            masks = F.interpolate(masks[None].float(), size=(new_h, new_w), mode="nearest")[0]
        else:
            masks = masks.new_zeros((0, new_h, new_w))
        target["masks"] = masks.to(torch.uint8)
        target["area"] = target["masks"].flatten(1).sum(1).float()
        return image, target

    def __repr__(self) -> str:
        return f"Resize(long_side={self.long_side})"


class HorizontalFlip:
    """Mirror left-right with probability ``p``: x1' = W - x2, x2' = W - x1."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, target):
        if torch.rand(()) >= self.p:
            return image, target
        W = image.shape[-1]
        target = dict(target)
        x1, y1, x2, y2 = target["boxes"].unbind(-1)
        target["boxes"] = torch.stack([W - x2, y1, W - x1, y2], dim=-1)
        target["masks"] = target["masks"].flip(-1)
        return image.flip(-1), target

    def __repr__(self) -> str:
        return f"HorizontalFlip(p={self.p})"


def train_transforms(long_side: int | None = None, flip: float = 0.5) -> Compose:
    """The training pipeline every stage uses: optional resize, then a random horizontal flip."""
    return Compose(([Resize(long_side)] if long_side else []) + [HorizontalFlip(flip)])


def val_transforms(long_side: int | None = None) -> Compose:
    """The evaluation pipeline: the same resize, no randomness."""
    return Compose([Resize(long_side)] if long_side else [])
