"""Settings from the data: image size, image scale and anchors chosen from the training boxes.

Faster R-CNN's anchors are fixed numbers: box areas 128^2, 256^2 and 512^2 at ratios 1:2, 1:1 and
2:1 (sec. 3.1.1), chosen for PASCAL VOC's objects on images whose shorter side is 600 px. An
anchor becomes a positive only when its IoU with a ground-truth box reaches 0.7 (sec. 3.1.2), so
objects whose size or shape no anchor matches get few positives or none, and the RPN never learns
to propose them. Our stages' defaults (16, 32, 64 px; enlarge the image 2x) were measured on the
built-in 128-px shapes; pedestrians on a 256-px photo are 40-150 px tall and about 2.5 times as
tall as wide. So, for the user's data (``coco:`` and ``pennfudan:``), the stage commands choose
these settings from the training boxes (``--anchor-sizes auto`` ..., their default there), and
print what they chose and why. The synthetic set keeps its measured values.

    gather(dataset)            -> BoxStats of the training boxes, in the pixels of the images as
                                  stored (no image is decoded where the annotations suffice)
    BoxStats.resized(long)     the same boxes once the images are resized to ``long`` px
    choose_long_side(stats)    None (keep) or a long side for large images
    choose_input_scale(stats)  the enlargement before the backbone (stage 2's sec. 5.2 idea)
    choose_anchor_sizes(stats), choose_anchor_ratios(stats), choose_fpn_anchor_sizes(stats)

Shape shorthand: B boxes over all sampled images; sizes are sqrt(area) of a box (the "size" of
an anchor, ``stages.faster_rcnn.anchors``), ratios height / width (the anchors' convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stages.data.transforms import MAX_SIDE

# The images sampled for the statistics: enough for stable quantiles, and seconds on a COCO file
# of any size (spread evenly over the training set).
MAX_IMAGES = 500
# Large photos are resized so that their longer side is this many pixels: the size at which
# stage 4 was measured on Penn-Fudan (box / mask AP 54.3 / 44.9 in 300 s on 2 CPU cores; at the
# photos' own size, ~300-900 px, a step costs several times as much). Unless objects would then
# be smaller than MIN_OBJECT px (median sqrt(area)): then the long side stays large enough.
LONG_SIDE = 256
MIN_OBJECT = 32.0
MAX_LONG_SIDE = 800  # the Mask R-CNN paper's scale: no automatic choice goes above it
# The median object size the backbone should see, px: our synthetic objects (12-56 px, median
# ~30) enlarged 2x, the scale measured best for them (FastRCNNConfig.input_scale).
TARGET_OBJECT = 64.0
QUANTILES = (0.1, 0.5, 0.9)  # three anchor sizes and three ratios, as the paper's 3 x 3


@dataclass(frozen=True)
class BoxStats:
    """The training boxes' sizes and shapes, and the images' long sides."""
    sizes: np.ndarray  # (B,) sqrt(w * h) of every box, px
    ratios: np.ndarray  # (B,) h / w of every box
    long_sides: np.ndarray  # (I,) max(H, W) of every sampled image, px
    box_long_sides: np.ndarray  # (B,) max(H, W) of each box's image, px
    scales: np.ndarray  # (B,) the factor each box's image is resized by (1: as stored)

    @property
    def n_boxes(self) -> int:
        return len(self.sizes)

    def median_size(self) -> float:
        return float(np.median(self.sizes * self.scales)) if self.n_boxes else math.nan

    def resized(self, long_side: int | None) -> "BoxStats":
        """The same boxes after ``Resize(long_side)`` (every image's longer side to ``long_side``):
        sizes scale with their image, ratios do not change. None or 0 (no resize): as they are,
        but those of images longer than ``transforms.MAX_SIDE``, which the pipeline shrinks to it."""
        if not long_side:
            if not len(self.box_long_sides) or self.box_long_sides.max() <= MAX_SIDE:
                return self
            return BoxStats(self.sizes, self.ratios, self.long_sides, self.box_long_sides,
                            np.minimum(1.0, MAX_SIDE / self.box_long_sides))
        return BoxStats(self.sizes, self.ratios, self.long_sides, self.box_long_sides,
                        long_side / self.box_long_sides)

    def size_quantiles(self, q=QUANTILES) -> np.ndarray:
        return np.quantile(self.sizes * self.scales, q)

    def ratio_quantiles(self, q=QUANTILES) -> np.ndarray:
        return np.quantile(self.ratios, q)


def gather(dataset, max_images: int = MAX_IMAGES) -> BoxStats:
    """The boxes of up to ``max_images`` training images of ``dataset`` (evenly spread), read by
    the dataset's ``record_boxes(record) -> (H, W, boxes [N, 4])`` (annotations only where the
    source allows it), without crowd regions and without the dataset's transforms."""
    records = list(dataset.indices)
    if len(records) > max_images:
        records = [records[i] for i in np.linspace(0, len(records) - 1, max_images).round().astype(int)]
    sizes, ratios, long_sides, per_box = [], [], [], []
    for record in records:
        H, W, boxes = dataset.record_boxes(record)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = (w > 0) & (h > 0)
        w, h = w[keep], h[keep]
        sizes.append(np.sqrt(w * h))
        ratios.append(h / w)
        long_sides.append(max(H, W))
        per_box.append(np.full(len(w), max(H, W), np.float64))
    cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)  # noqa: E731
    return BoxStats(cat(sizes), cat(ratios), np.asarray(long_sides, np.float64), cat(per_box),
                    np.ones(sum(map(len, sizes))))


def choose_long_side(stats: BoxStats) -> int | None:
    """None (keep the images as they are) unless the median image is larger than ``LONG_SIDE``
    by a quarter: then ``LONG_SIDE``, or more if the median object would fall below ``MIN_OBJECT``
    px (never more than the images' own median size, nor ``MAX_LONG_SIDE``)."""
    if not len(stats.long_sides):
        return None
    median_long = float(np.median(stats.long_sides))
    if median_long <= 1.25 * LONG_SIDE:
        return None
    long_side = LONG_SIDE
    at_long = stats.resized(long_side).median_size()
    if stats.n_boxes and at_long < MIN_OBJECT:  # small objects: shrink less
        long_side = math.ceil(long_side * MIN_OBJECT / at_long / 32) * 32
    long_side = min(long_side, MAX_LONG_SIDE)
    return None if long_side >= median_long else int(long_side)


def choose_input_scale(stats: BoxStats) -> float:
    """How much to enlarge the image before the backbone (Fast R-CNN sec. 5.2's single scale):
    ``TARGET_OBJECT`` / the median object size, in steps of 0.5 from 1 (never shrink: that is
    ``--long-side``'s job) to 2 (the synthetic set's measured value; 4x the pixels already)."""
    if not stats.n_boxes:
        return 1.0
    return float(min(2.0, max(1.0, round(2 * TARGET_OBJECT / stats.median_size()) / 2)))


def choose_anchor_sizes(stats: BoxStats) -> tuple:
    """Three sizes (sqrt of the anchor's area, px): the 10 %, 50 % and 90 % quantiles of the
    training boxes' sizes, rounded to whole pixels; distinct and increasing."""
    q = [max(2, int(round(v))) for v in stats.size_quantiles()]
    for i in range(1, len(q)):
        q[i] = max(q[i], q[i - 1] + 1)
    return tuple(q)


def choose_anchor_ratios(stats: BoxStats) -> tuple:
    """Three ratios (height / width): the 10 %, 50 % and 90 % quantiles of the boxes' ratios,
    rounded to 0.1 (pedestrians: about 2 to 3; the paper's VOC: 0.5, 1, 2); distinct."""
    q = [max(0.1, round(float(v), 1)) for v in stats.ratio_quantiles()]
    for i in range(1, len(q)):
        q[i] = max(q[i], round(q[i - 1] + 0.1, 1))
    return tuple(q)


def choose_fpn_anchor_sizes(stats: BoxStats, levels: int = 5) -> tuple:
    """One size per pyramid level P2..P6, doubling from level to level as the stride does (FPN
    sec. 4.1: 32^2 .. 512^2), the smallest the 5 % quantile of the boxes' sizes."""
    smallest = max(2, int(round(float(np.quantile(stats.sizes * stats.scales, 0.05)))))
    return tuple(smallest * 2 ** k for k in range(levels))
