"""Region proposals before learning them: selective search, with a disk cache.

R-CNN (Girshick et al. 2014, sec. 2.1) scores ~2000 class-independent *region proposals* per image
instead of every window: "selective search" (Uijlings et al. 2013) greedily merges a
Felzenszwalb over-segmentation by colour, texture, size and fill similarity, and proposes the box
of every region formed along the way. Its alternative, and the baseline it beat, is the exhaustive
*sliding window*: every box of a few sizes and shapes at a fixed stride (R-CNN's baseline only,
so it lives with R-CNN: ``stages.rcnn.sliding_windows``).

Both return boxes float [P, 4] in (x1, y1, x2, y2) absolute pixels (x2 = last column + 1), inside
the image, without duplicates. Fast R-CNN (stage 2) reuses exactly these selective-search
proposals through the same cache; Faster R-CNN (stage 3) replaces them with a learned network.

Selective search is slow (~150 ms for a 128 x 128 image here, 1.5-2 s for a VOC image in the
papers), so ``ProposalCache`` stores each image's boxes on disk, keyed by the image's pixels and
by the parameters, *together with the seconds its computation took*: a cached run reports the proposal
time that was measured, not the ~0 ms of reading a file. A damaged entry is recomputed.

How well the proposals cover the ground truth, the first lesson of the stage, is measured by
``stages.evaluation.recall.proposal_recall``.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from stages.training import io
from stages.ops import clip_boxes_to_image, remove_small_boxes, unique_boxes


# ------------------------------------------------------------------------------------------------
# Selective search (the ``selectivesearch`` package)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SelectiveSearchConfig:
    """Parameters of ``selectivesearch.selective_search`` and of our clean-up.

    ``scale`` and ``sigma`` go to the Felzenszwalb segmentation that seeds the merging: a larger
    scale gives larger initial regions and so fewer proposals; sigma is the Gaussian smoothing
    before segmenting. Its ``min_size`` merges initial regions smaller than that many pixels. On
    our 128 x 128 images, scale 100 gives ~100-150 distinct boxes in ~150 ms (the paper's "fast
    mode" gives ~2000 on 500 x 375 VOC images).
    """

    scale: float = 100.0  # Felzenszwalb scale: larger -> bigger initial regions, fewer boxes
    sigma: float = 0.8  # Gaussian smoothing before the segmentation
    min_size: int = 10  # pixels, for the initial segmentation
    min_box: float = 4.0  # drop proposals narrower or shorter than this, pixels

    @property
    def key(self) -> str:
        return "ss-" + hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """float [3, H, W] in [0, 1] -> uint8 (H, W, 3), the layout scikit-image expects."""
    return (image.detach().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def selective_search(image: torch.Tensor, cfg: SelectiveSearchConfig = SelectiveSearchConfig()):
    """Selective-search proposals of one image float [3, H, W]: float [P, 4] (x1, y1, x2, y2)."""
    import selectivesearch  # imported here: it pulls in scikit-image, slow to import

    H, W = image.shape[-2:]
    with warnings.catch_warnings():  # the package calls a scikit-image API that warns
        warnings.simplefilter("ignore")
        _, regions = selectivesearch.selective_search(to_uint8_hwc(image), scale=cfg.scale,
                                                      sigma=cfg.sigma, min_size=cfg.min_size)
    # rect = (min_x, min_y, max_x - min_x, max_y - min_y) over pixel indices: x2 = x + w + 1
    rects = [r["rect"] for r in regions]
    boxes = torch.tensor([[x, y, x + w + 1, y + h + 1] for x, y, w, h in rects],
                         dtype=torch.float32).reshape(-1, 4)
    boxes = clip_boxes_to_image(boxes, (H, W))
    boxes = boxes[remove_small_boxes(boxes, cfg.min_box)]
    return unique_boxes(boxes)


CACHE_DIR = "proposals"  # under --data-root: <data_root>/proposals/<ss-params>/<pixels-hash>.npz


def image_key(image: torch.Tensor) -> str:
    """A content hash of an image as the model sees it (uint8 pixels and shape)."""
    pixels = to_uint8_hwc(image)
    return hashlib.sha1(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


class ProposalCache:
    """Selective-search boxes on disk, one file per image, with the seconds each one took.

    Entries are keyed by the *pixels* (``image_key``), not by a dataset's ids: the model call at
    test time sees only images, a resized image is another image, and two datasets never collide.
    A horizontally flipped training image finds its unflipped twin's entry and mirrors the boxes
    (selective search is not exactly flip-symmetric, but close; recomputing would double its cost).

    Layout: ``<root>/<cfg.key>/<key[:2]>/<key>.npz`` holding ``boxes`` float32 [P, 4] and
    ``seconds``. Entries are written atomically; one that fails to load is recomputed.
    """

    def __init__(self, root, cfg: SelectiveSearchConfig = SelectiveSearchConfig()):
        self.cfg = cfg
        self.folder = Path(root) / cfg.key
        self.hits = self.misses = 0

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def _read(self, key: str):
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                boxes, seconds = torch.from_numpy(f["boxes"]), float(f["seconds"])
        except (OSError, ValueError, KeyError, EOFError):
            return None  # damaged: the caller recomputes and overwrites it
        return (boxes, seconds) if boxes.ndim == 2 and boxes.shape[1] == 4 else None

    def get(self, image: torch.Tensor) -> tuple[torch.Tensor, float]:
        """``(boxes [P, 4], seconds)`` for one image float [3, H, W]: from disk, or computed and stored.

        ``seconds`` is the time selective search took when it ran, so timings stay honest."""
        key = image_key(image)
        found = self._read(key)
        if found is not None:
            self.hits += 1
            return found
        mirror = self._read(image_key(image.flip(-1)))
        if mirror is not None:  # the unflipped twin is cached: x1' = W - x2, x2' = W - x1
            self.hits += 1
            boxes, seconds = mirror
            W = image.shape[-1]
            return torch.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]], 1), seconds
        t0 = time.perf_counter()
        boxes = selective_search(image, self.cfg)
        seconds = time.perf_counter() - t0
        self.misses += 1

        def write(f):
            np.savez(f, boxes=boxes.numpy().astype(np.float32), seconds=np.float64(seconds))
        io.atomic_write(self.path(key), write)
        return boxes, seconds


def fill_cache(cache: ProposalCache, dataset, progress: bool = True, desc: str = "selective search"):
    """Compute (or find) the proposals of every image of ``dataset`` once, before training.

    Returns ``(n_computed, seconds)``: how many images ran selective search now, and how long."""
    from tqdm.auto import tqdm

    misses, t0 = cache.misses, time.perf_counter()
    for i in tqdm(range(len(dataset)), desc=desc, disable=not progress, leave=False):
        cache.get(dataset[i][0])
    return cache.misses - misses, time.perf_counter() - t0
