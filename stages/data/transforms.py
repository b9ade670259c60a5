"""Transforms that move an image and its boxes and masks together.

Each transform is a callable ``(image, target) -> (image, target)`` on the shared item
(``stages.data.sources``): image float [3, H, W], boxes [N, 4] in (x1, y1, x2, y2) absolute pixels,
masks uint8 [N, H, W]. Whatever happens to the pixels happens to the boxes and masks too.

- ``Resize(long_side)``: scale so that the longer side is ``long_side`` pixels (aspect kept).
  The papers resize by the shorter side (600 px in Fast/Faster R-CNN, 800 in Mask R-CNN); our
  images are small, so we cap the longer side, which bounds the cost per image on a CPU.
- ``ShrinkToMaxSide(max_side)``: without a ``Resize``, an image whose longer side exceeds
  ``MAX_SIDE`` = 1333 px is shrunk to it (never enlarged), as torchvision's detection models cap
  theirs. Measured (Faster R-CNN, CPU, input scale 2, one 4000 x 3000 photo among 64-px images):
  at its own size the first steps exhausted 23 GB of memory; shrunk to 1333 px, the run peaked
  at 7.5 GB.
- ``HorizontalFlip(p)``: the only augmentation of Fast R-CNN (sec. 2.3, p = 0.5).

Randomness comes from torch's global generator, which ``stages.devices.seed_everything`` seeds:
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


# torchvision's GeneralizedRCNNTransform max_size (min_size 800, max_size 1333: Detectron's
# 800-px scale, whose longer side stays under 1333 for the aspect ratios of COCO's photos).
# torchvision also enlarges small images to min_size; we only shrink (our images are small).
MAX_SIDE = 1333


class ShrinkToMaxSide:
    """An image whose longer side exceeds ``max_side`` is resized (``Resize``) to ``max_side``;
    a smaller one passes untouched: the cap on the cost of one image when no ``--long-side`` is given."""

    def __init__(self, max_side: int = MAX_SIDE):
        self.max_side = int(max_side)

    def __call__(self, image, target):
        if max(image.shape[-2:]) <= self.max_side:
            return image, target
        return Resize(self.max_side)(image, target)

    def __repr__(self) -> str:
        return f"ShrinkToMaxSide(max_side={self.max_side})"


def size_step(long_side: int | None):
    """``Resize(long_side)``, or, with none (None or 0), ``ShrinkToMaxSide(MAX_SIDE)``."""
    return Resize(long_side) if long_side else ShrinkToMaxSide(MAX_SIDE)


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
    """The training pipeline every stage uses: the resize (``size_step``: to ``long_side``, or
    images over ``MAX_SIDE`` shrunk to it), then a random horizontal flip."""
    return Compose([size_step(long_side), HorizontalFlip(flip)])


def val_transforms(long_side: int | None = None) -> Compose:
    """The evaluation pipeline: the same resize, no randomness."""
    return Compose([size_step(long_side)])
