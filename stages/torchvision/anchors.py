"""Anchors in torchvision's convention, for the fine-tuned Mask R-CNN and the peers alike.

torchvision's ``AnchorGenerator`` takes, per feature level, a tuple of sizes and a tuple of aspect
ratios r = h / w: an anchor of size s has h = s * sqrt(r), w = s / sqrt(r) (so w * h = s^2), and
r = 2.0 is TALL (pedestrians: 2 to 3). Faster R-CNN's sec. 3.1.1 uses 3 scales x 3 ratios = 9
anchors per location on one map; FPN (sec. 4.1) one size per level P2..P6 and 3 ratios.

Shape shorthand: A anchors per location = len(sizes of a level) * len(ratios of a level).
"""

from __future__ import annotations

from torchvision.models.detection.anchor_utils import AnchorGenerator

# Anchors for 128-px images with objects of 12-56 px. FPN: one size per level P2..P6 (stride
# 4..64), anchor = 4 x stride; the FPN paper (sec. 4.1) uses 8 x stride (32^2 on P2) for ~800-px
# COCO images, whose objects are larger. 3 ratios per location, as in both papers.
FPN_ANCHOR_SIZES = ((16,), (32,), (64,), (128,), (256,))
SINGLE_LEVEL_ANCHOR_SIZES = ((16, 32, 64),)  # 3 sizes x 3 ratios on C3 (stride 8): Faster R-CNN's 9
ASPECT_RATIOS = (0.5, 1.0, 2.0)  # h / w, Faster R-CNN sec. 3.1.1
# Penn-Fudan pedestrians are about 2.5 times taller than wide. Still 3 ratios per location, so a
# COCO RPN head keeps its shape and loads whole (its output channels then mean other ratios at
# first; fine-tuning adapts them). A 4th ratio would replace the RPN's two output layers.
PEDESTRIAN_ASPECT_RATIOS = (1.0, 2.0, 3.0)


def make_anchor_generator(sizes, aspect_ratios, n_levels: int) -> AnchorGenerator:
    """An ``AnchorGenerator`` for ``n_levels`` feature maps, from flat or per-level tuples.

    sizes: per level ``((16,), (32,), ...)``; or flat ``(16, 32, 64, 128, 256)``, which means one
    size per level when there are several levels, and all sizes on the one level otherwise.
    aspect_ratios: r = h / w (2.0 is tall); flat ``(0.5, 1.0, 2.0)`` is used on every level.
    A = len(sizes of a level) * len(ratios of a level) anchors per location.
    """
    sizes, aspect_ratios = tuple(sizes), tuple(aspect_ratios)
    if not isinstance(sizes[0], (tuple, list)):  # flat
        sizes = tuple((s,) for s in sizes) if n_levels > 1 else (sizes,)
    if not isinstance(aspect_ratios[0], (tuple, list)):
        aspect_ratios = (aspect_ratios,) * n_levels
    if len(sizes) != n_levels or len(aspect_ratios) != n_levels:
        raise ValueError(f"anchors for {n_levels} feature levels, got {len(sizes)} levels of sizes "
                         f"{sizes} and {len(aspect_ratios)} of aspect ratios")
    return AnchorGenerator(tuple(tuple(int(s) for s in level) for level in sizes),
                           tuple(tuple(float(r) for r in level) for level in aspect_ratios))
