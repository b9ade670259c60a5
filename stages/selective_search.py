"""Region proposals before learning them: selective search, three ways, with a disk cache.

R-CNN (Girshick et al. 2014, sec. 2.1) scores ~2000 class-independent *region proposals* per image
instead of every window: "selective search" (Uijlings et al. 2013) greedily merges a
Felzenszwalb over-segmentation by colour, texture, size and fill similarity, and proposes the box
of every region formed along the way (its sec. 3.1). Its alternative, and the baseline it beat, is
the exhaustive *sliding window*: every box of a few sizes and shapes at a fixed stride (R-CNN's
baseline only, so it lives with R-CNN: ``stages.rcnn.sliding_windows``).

One call, ``selective_search(image, cfg)``, three implementations (``cfg.ss_method``):

    package          the pure-Python ``selectivesearch`` package: *one* hierarchy (one colour
                     space, one Felzenszwalb k, one similarity: colour + texture + size + fill).
                     The readable version, the one notebook 01 walks through. Made for our 128-px
                     synthetic shapes: ~110 boxes, recall 0.95 / 0.79 at IoU 0.5 / 0.7, ~100 ms.
    opencv_fast      OpenCV's C++ implementation (``cv2.ximgproc``, in opencv-contrib-python) of
                     the paper's *diversified* search (sec. 3.2): many hierarchies, from several
                     colour spaces, Felzenszwalb k values and similarity sums, their boxes pooled
                     and ranked (sec. 3.3). Fast: 2 colour spaces (HSV, Lab) x 3 k x 2 similarity
                     sums = 12 hierarchies. R-CNN uses the fast mode (sec. 2.1).
    opencv_quality   the same, "quality": 5 colour spaces x 5 k x 4 similarity sums = 100
                     hierarchies: more boxes, more recall, ~3.4x the time

On real photos one hierarchy is not enough: on Penn-Fudan's pedestrians (34 validation photos at
256 px) the package finds 0.52 of them at IoU 0.5, OpenCV's fast mode 0.87, its quality mode 0.95
(``benchmarks/bench_proposals.py`` prints the table). The synthetic set keeps the package.

All three return boxes float [P, 4] in (x1, y1, x2, y2) absolute pixels (x2 = last column + 1),
inside the image, without duplicates, in the method's own ranking order (``ss_max_boxes`` keeps the
first ones). Fast R-CNN (stage 2) reuses exactly these proposals through the same cache; Faster
R-CNN (stage 3) replaces them with a learned network.

Shape shorthand: P proposals of one image; an image is float [3, H, W] in [0, 1].

Map of this module:

    SelectiveSearchConfig      the method, the package's parameters, our clean-up, a cap
    package_boxes              the package's regions (one hierarchy), in its order
    opencv_boxes               OpenCV's regions (12 or 100 hierarchies), large ones first
    selective_search           one call for the three: clip, drop small boxes, unique, cap
    ProposalCache, fill_cache  the disk cache

Selective search is slow (~100 ms for a 128 x 128 image with the package, 0.2-1 s for a 256-px
photo with OpenCV, 1.5-2 s for a VOC image in the papers), so ``ProposalCache`` stores each
image's boxes on disk, keyed by the image's pixels and by the parameters, *together with the
seconds its computation took*: a cached run reports the proposal time that was measured, not the
~0 ms of reading a file. A damaged entry is recomputed.

How well the proposals cover the ground truth, the first lesson of the stage, is measured by
``stages.evaluation.recall.proposal_recall``.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from stages import files
from stages.flags import check_choices, param
from stages.ops import clip_boxes_to_image, remove_small_boxes, unique_boxes


# ------------------------------------------------------------------------------------------------
# The settings
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SelectiveSearchConfig:
    """Which selective search, the package's parameters, and our clean-up.

    ``ss_scale`` and ``ss_sigma`` go to the package's Felzenszwalb segmentation that seeds the merging:
    a larger scale gives larger initial regions and so fewer proposals; sigma is the Gaussian
    smoothing before segmenting. Its ``ss_min_size`` merges initial regions smaller than that many
    pixels. On our 128 x 128 images, scale 100 gives ~100-150 distinct boxes in ~100 ms (the
    paper's "fast mode" gives ~2000 on 500 x 375 VOC images). The OpenCV modes ignore these three:
    they run their own k values (fast: 150, 300, 450; quality: 150 to 750) with sigma 0.8.

    The package's settings stay in pixels whatever the image size. Scaling them with the image
    area, area = H * W / (128 * 128) (2.0 to 3.9 for Penn-Fudan's photos at 256 px; 1 for our
    shapes, which keep their boxes), was measured on the 34 Penn-Fudan validation photos at
    256 px: recall at IoU 0.5 / 0.7, boxes and ms per image (a busy 2-core machine):

        scale 100, min_size 10 (as they are)         0.523 / 0.116   481 boxes   689 ms
        min_size x area                               0.477 / 0.128   337 boxes   437 ms
        scale and min_size x area                     0.500 / 0.105   141 boxes   201 ms
        scale x sqrt(area), min_size x area           0.453 / 0.140   224 boxes   243 ms
        scale 50 (finer, the other way)               0.419 / 0.081   796 boxes  1539 ms

    None helps recall at 0.5: the package's one hierarchy, not its segmentation's granularity,
    is what misses the pedestrians, and the paper's answer to that is diversification (sec. 3.2),
    the OpenCV modes. So no scaling: the package gives the same boxes as before on every image.
    """

    ss_method: Literal["package", "opencv_fast", "opencv_quality"] = param(
        "package", paper="fast mode (R-CNN sec. 2.1)", measured="section 17",
        help=("package: the pure-Python package, one hierarchy, the readable one, made for the synthetic shapes | opencv_fast /"
              " opencv_quality: OpenCV's diversified search (12 / 100 hierarchies), for photos"))
    ss_scale: float = param(100.0, help="package: Felzenszwalb scale: larger -> bigger initial regions, fewer boxes")
    ss_sigma: float = param(0.8, help="package: Gaussian smoothing before the segmentation")
    ss_min_size: int = param(10, help="package: pixels, for the initial segmentation")
    ss_min_box: float = param(4.0, help="drop proposals narrower or shorter than this, pixels")
    ss_max_boxes: int | None = param(None,
                                     help=("keep the first this many proposals of the method's ranking (none: all); for "
                                           "OpenCV's modes, whose ranking puts large regions first (see opencv_boxes)"))

    def __post_init__(self):  # a method outside the three: one clear line
        check_choices(self)

    @property
    def key(self) -> str:
        """The cache folder's name: a hash of the settings that shape the cached boxes.

        Left out of it: ``ss_max_boxes`` (the cache keeps every box, ``ProposalCache.get``
        returns the first ``ss_max_boxes``); ``ss_method`` when it is "package", so that the key,
        and the caches written before the OpenCV modes existed, stay what they were; and the
        package's Felzenszwalb settings when OpenCV runs, which does not read them. The hash
        reads the names without their ``ss_`` prefix (``scale``, ``min_box``...): the names
        the fields had when the caches under ``data/proposals`` were written."""
        fields = {name.removeprefix("ss_"): value for name, value in asdict(self).items()}
        del fields["max_boxes"]
        if self.ss_method == "package":
            del fields["method"]
        else:
            for name in ("scale", "sigma", "min_size"):
                del fields[name]
        return "ss-" + hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """float [3, H, W] in [0, 1] -> uint8 (H, W, 3) RGB, the layout scikit-image expects."""
    return (image.detach().cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


# ------------------------------------------------------------------------------------------------
# The package: one hierarchy, in readable Python
# ------------------------------------------------------------------------------------------------

def package_boxes(image: torch.Tensor, cfg: SelectiveSearchConfig) -> torch.Tensor:
    """The ``selectivesearch`` package's regions of one image [3, H, W]: float [P, 4] (x1, y1,
    x2, y2), in its order: the initial segments, then each merged region as it forms."""
    import selectivesearch  # imported here: it pulls in scikit-image, slow to import

    with warnings.catch_warnings():  # the package calls a scikit-image API that warns
        warnings.simplefilter("ignore")
        _, regions = selectivesearch.selective_search(to_uint8_hwc(image), scale=cfg.ss_scale,
                                                      sigma=cfg.ss_sigma, min_size=cfg.ss_min_size)
    # rect = (min_x, min_y, max_x - min_x, max_y - min_y) over pixel indices: x2 = x + w + 1
    rects = [r["rect"] for r in regions]
    return torch.tensor([[x, y, x + w + 1, y + h + 1] for x, y, w, h in rects],
                        dtype=torch.float32).reshape(-1, 4)  # (P, 4)


# ------------------------------------------------------------------------------------------------
# OpenCV: the paper's diversified search, in C++
# ------------------------------------------------------------------------------------------------

OPENCV_MODES = {"opencv_fast": "switchToSelectiveSearchFast",
                "opencv_quality": "switchToSelectiveSearchQuality"}
MISSING_XIMGPROC = ("selective search {method!r} needs cv2.ximgproc, which only the contrib build "
                    "of OpenCV has: pip uninstall -y opencv-python opencv-python-headless && pip "
                    "install opencv-contrib-python-headless (the builds share the cv2 module: "
                    "never install two of them together)")


class OpenCVContribMissing(ImportError):
    """The contrib build of OpenCV is not installed: the message says which package to install."""


def _ximgproc(method: str):
    """``cv2.ximgproc``, imported when first needed; a one-line error naming the package to
    install where plain opencv-python stands in for the contrib build."""
    try:
        import cv2
        return cv2.ximgproc
    except (ImportError, AttributeError):
        raise OpenCVContribMissing(MISSING_XIMGPROC.format(method=method)) from None


def _seed_c_rand(seed: int = 0) -> None:
    """Seed the C library's ``rand()``, from which OpenCV draws its ranking's random factor: the
    same image then gives the same boxes *in the same order* in every run (the set of boxes
    does not depend on it). Where the C library cannot be reached (Windows), the order varies."""
    try:
        ctypes.CDLL(None).srand(seed)
    except (OSError, AttributeError, TypeError):
        pass


def opencv_boxes(image: torch.Tensor, method: str) -> torch.Tensor:
    """OpenCV's selective search (``method``: "opencv_fast" or "opencv_quality") of one image
    [3, H, W]: float [P, 4] (x1, y1, x2, y2), large regions first.

    One OpenCV thread, restored afterwards. Its ``process()`` runs the hierarchies one after the
    other; only colour conversions and blurs can split over threads, and on our 2 cores a second
    thread bought nothing (256-px photos, interleaved: fast 307 ms with 1 thread, 315 with 2;
    quality 1146 and 1194). The callers already give each core its own image
    (``stages.rcnn.proposers.compute_proposals``' worker processes), where a second thread per
    process would only compete for the same cores. So ms per image are one core's, as the
    package's (pure Python) are.
    """
    ximgproc = _ximgproc(method)
    import cv2

    bgr = np.ascontiguousarray(to_uint8_hwc(image)[:, :, ::-1])  # (H, W, 3): OpenCV reads BGR
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        search = ximgproc.segmentation.createSelectiveSearchSegmentation()
        search.setBaseImage(bgr)
        getattr(search, OPENCV_MODES[method])()  # the colour spaces, k values, similarity sums
        _seed_c_rand(0)
        rects = search.process()  # int32 (P, 4) rows (x, y, w, h), duplicates removed
    finally:
        cv2.setNumThreads(threads)
    # rect = cv::boundingRect of the region's pixels: w = max_x - min_x + 1, so x2 = x + w
    boxes = torch.from_numpy(np.asarray(rects, dtype=np.float32).reshape(-1, 4))  # (P, 4) xywh
    boxes = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)  # (P, 4) x1, y1, x2, y2
    # The ranking (sec. 3.3): the paper gives the region at position i of a hierarchy (i = 1 at
    # its top, the whole image) the value v = RND * i and lists the pooled regions by increasing
    # v, so each hierarchy's large regions come first, shuffled between hierarchies. OpenCV
    # counts the level from the bottom instead (1 = an initial segment), so its increasing order
    # puts small regions first ("inverted from the paper", its code says). Reversed, large come
    # first again, and a cap keeps them: the first 500 boxes of fast mode find 0.85 of the
    # Penn-Fudan pedestrians at IoU 0.5 in this order, 0.79 in OpenCV's.
    return boxes.flip(0)  # (P, 4)


# ------------------------------------------------------------------------------------------------
# One call for the three
# ------------------------------------------------------------------------------------------------

def selective_search(image: torch.Tensor, cfg: SelectiveSearchConfig = SelectiveSearchConfig()):
    """Selective-search proposals of one image float [3, H, W]: float [P, 4] (x1, y1, x2, y2).

    ``cfg.ss_method`` chooses the implementation; the boxes are then clipped to the image, those
    narrower or shorter than ``cfg.ss_min_box`` dropped, duplicates removed (the first kept), all in
    the method's order, and the first ``cfg.ss_max_boxes`` returned (all if None)."""
    H, W = image.shape[-2:]
    if cfg.ss_method == "package":
        boxes = package_boxes(image, cfg)
    else:
        boxes = opencv_boxes(image, cfg.ss_method)
    boxes = clip_boxes_to_image(boxes, (H, W))
    boxes = boxes[remove_small_boxes(boxes, cfg.ss_min_box)]
    return unique_boxes(boxes)[:cfg.ss_max_boxes]  # (P, 4), P <= ss_max_boxes


# ------------------------------------------------------------------------------------------------
# The disk cache
# ------------------------------------------------------------------------------------------------

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

    Layout: ``<root>/<cfg.key>/<key[:2]>/<key>.npz`` holding ``boxes`` float32 [P, 4] (every
    box, in the method's order) and ``seconds``. ``get`` returns the first ``cfg.ss_max_boxes``, so
    caps of any size read the same entries. Entries are written atomically; one that fails to
    load is recomputed.
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
        cap = self.cfg.ss_max_boxes  # applied on the way out: the entry keeps every box
        key = image_key(image)
        found = self._read(key)
        if found is not None:
            self.hits += 1
            boxes, seconds = found
            return boxes[:cap], seconds
        mirror = self._read(image_key(image.flip(-1)))
        if mirror is not None:  # the unflipped twin is cached: x1' = W - x2, x2' = W - x1
            self.hits += 1
            boxes, seconds = mirror
            W = image.shape[-1]
            boxes = torch.stack([W - boxes[:, 2], boxes[:, 1], W - boxes[:, 0], boxes[:, 3]], 1)
            return boxes[:cap], seconds
        t0 = time.perf_counter()
        boxes = selective_search(image, replace(self.cfg, ss_max_boxes=None))
        seconds = time.perf_counter() - t0
        self.misses += 1

        def write(f):
            np.savez(f, boxes=boxes.numpy().astype(np.float32), seconds=np.float64(seconds))
        files.atomic_write(self.path(key), write)
        return boxes[:cap], seconds


def fill_cache(cache: ProposalCache, dataset, progress: bool = True, desc: str = "selective search"):
    """Compute (or find) the proposals of every image of ``dataset`` once, before training.

    Returns ``(n_computed, seconds)``: how many images ran selective search now, and how long."""
    from tqdm.auto import tqdm

    misses, t0 = cache.misses, time.perf_counter()
    for i in tqdm(range(len(dataset)), desc=desc, disable=not progress, leave=False):
        cache.get(dataset[i][0])
    return cache.misses - misses, time.perf_counter() - t0
