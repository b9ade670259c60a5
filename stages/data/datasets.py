"""The shared item and the datasets that read it from disk: every stage reads the same
``(image, target)``, whatever the source.

The item (torchvision's detection convention, so torchvision models read it too)::

    image   float32 [3, H, W] in [0, 1]
    target  boxes    float32 [N, 4]  (x1, y1, x2, y2), absolute pixels
            labels   int64   [N]     1..K (0 is background, never a target label)
            masks    uint8   [N, H, W]
            area     float32 [N]     pixels in the mask (COCO's small/medium/large use it)
            iscrowd  int64   [N]     1 = a crowd region: ignored by evaluation, never a training target
            image_id int

    DetectionDataset     the base: a subset of records, the transforms applied last
    CocoDataset          any COCO instances JSON and its image folder (the synthetic set is one)
    PennFudanDataset     the Penn-Fudan layout of the torchvision detection tutorial

Which dataset a ``--data`` spec string names, and the train / validation split, are
``stages.data.sources``'s job (``load_dataset``).

Bad input never surfaces as a traceback from deep inside a library: it raises ``DatasetError``,
whose message names the file and the problem, and what a file's problems are is said all at once
(``problems_message``: up to 10 lines, then a count). What is checked, and where:

    reading an annotation file   malformed JSON; an image entry without id / file_name, with a
    (CocoDataset.__init__)       file_name that escapes the image folder, or a width / height that
                                 is not a positive number; an annotation with an unknown image or
                                 category, a bbox that is not [x, y, w, h] in numbers, or a
                                 segmentation that is neither polygons nor RLE (``segmentation_problem``)
    every image, before training missing, unreadable or not an image, a mode PIL cannot turn into
    (stages.data.checks)         RGB, a size other than the file's width / height, an RLE mask of
                                 another size; Penn-Fudan's mask file missing, unreadable or of
                                 another size; a training or validation set with no annotation
    each item (load)             the same, for a file that changed since it was checked

What is mended, counted, and said once per file (a ``DatasetWarning``, kept in ``CocoDataset.notes``
for ``stages.data.checks``), never silently: a box of zero or negative width or height, or entirely
outside its image, is dropped; a box partly outside is clipped to the image (``clip_bbox``); a
polygon of fewer than 3 points is dropped (``keep_polygons``), and an annotation left without one
keeps its box as its mask.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Callable

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image


class DatasetError(ValueError):
    """A problem with the user's data. The message names the file and what is wrong with it."""


class DatasetWarning(UserWarning):
    """A change made to the user's data on reading it (a box clipped or dropped, a polygon
    dropped): counted and said once per file."""


MAX_PROBLEM_LINES = 10  # a file's problems are listed up to this many lines, then counted


def problems_message(problems: list[str], summary: str, max_lines: int = MAX_PROBLEM_LINES) -> str:
    """One message for many problems: up to ``max_lines`` lines, then the count line.

    >>> print(problems_message(["a.png: image file not found"], "1 problem"))
    a.png: image file not found
    >>> print(problems_message([f"{i}.png: bad" for i in range(3)], "3 problems in 3 images", 2))
    0.png: bad
    1.png: bad
    ... and 1 more; 3 problems in 3 images
    """
    if len(problems) == 1:
        return problems[0]
    shown, hidden = problems[:max_lines], len(problems) - max_lines
    return "\n".join(shown + [f"... and {hidden} more; {summary}" if hidden > 0 else summary])


# What PIL raises on a file it cannot read: a missing file, not an image (UnidentifiedImageError,
# an OSError), a truncated one (OSError), a damaged header (SyntaxError, ValueError), or one over
# PIL's pixel limit (DecompressionBombError).
PIL_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3) (``to_rgb8``: 16-bit images too); a ``DatasetError`` naming the file if
    it is missing or unreadable. The pixels as stored: a camera's EXIF orientation is not applied
    here (annotations refer to the stored pixels), where ``stages.predict.read_photo`` applies it to
    a user's photo, to show it upright."""
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            return to_rgb8(im)
    except PIL_ERRORS as e:
        raise DatasetError(f"{path}: cannot read the image ({e})") from None


def read_header(path: Path) -> tuple[int, int, str]:
    """``(H, W, mode)`` of an image file from its header alone (``Image.open`` decodes no pixel),
    with ``read_image``'s errors: a check of thousands of images takes seconds."""
    if not path.is_file():
        raise DatasetError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            W, H = im.size
            return H, W, im.mode
    except PIL_ERRORS as e:
        raise DatasetError(f"{path}: cannot read the image ({e})") from None


@functools.cache
def convertible(mode: str) -> bool:
    """Whether ``to_rgb8`` reads an image of PIL mode ``mode`` (tried on a 1 x 1 image of it).

    >>> convertible("I;16"), convertible("CMYK"), convertible("BGR;15")
    (True, True, False)
    """
    try:
        to_rgb8(Image.new(mode, (1, 1)))
    except PIL_ERRORS:
        return False
    return True


def to_rgb8(im: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> RGB uint8 (H, W, 3). Grey and palette images become three
    equal channels; an alpha channel is dropped; 16- and 32-bit grey (PNG mode I;16, TIFF I and F)
    are stretched from their darkest to their brightest value onto 0..255, where
    ``convert("RGB")`` would clip every value above 255 to white."""
    if im.mode == "F" or im.mode.startswith("I"):  # I;16, I;16B, I (32-bit int), F (float)
        grey = np.asarray(im, dtype=np.float64)  # (H, W), the values as stored
        lo, hi = float(np.nanmin(grey)), float(np.nanmax(grey))
        grey = (grey - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(grey)
        grey = np.nan_to_num(grey).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)  # (H, W) -> (H, W, 3)
    if im.mode == "La":  # grey with premultiplied alpha: PIL converts it only to LA
        im = im.convert("LA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in im.info:
        return np.asarray(im.convert("RGBA"))[..., :3].copy()  # (H, W, 4) -> (H, W, 3)
    return np.array(im.convert("RGB"))  # a copy: writable, as torch.from_numpy wants


def boxes_from_masks(masks: np.ndarray) -> np.ndarray:
    """Tight boxes (N, 4) in (x1, y1, x2, y2) around binary masks (N, H, W); x2 = last column + 1."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        if len(xs):
            boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    return boxes


def make_item(image: np.ndarray, boxes, labels, masks, iscrowd, image_id: int):
    """Pack NumPy arrays into the shared ``(image, target)`` item (see the module docstring)."""
    H, W = image.shape[:2]
    masks = np.asarray(masks, np.uint8).reshape(-1, H, W)
    target = {
        "boxes": torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4)),
        "labels": torch.as_tensor(np.asarray(labels, np.int64).reshape(-1)),
        "masks": torch.from_numpy(masks),
        "area": torch.from_numpy(masks.sum(axis=(1, 2)).astype(np.float32)),
        "iscrowd": torch.as_tensor(np.asarray(iscrowd, np.int64).reshape(-1)),
        "image_id": int(image_id),
    }
    image_t = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 255  # (3, H, W)
    return image_t, target


class DetectionDataset(torch.utils.data.Dataset):
    """Base of the sources: ``indices`` select a subset, ``transforms(image, target)`` are applied last."""

    class_names: list[str]  # class_names[0] == "background"; label k is class_names[k]

    def __init__(self, indices: list[int] | None, transforms: Callable | None):
        self.indices = list(range(self.num_records())) if indices is None else list(indices)
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background not counted)."""
        return len(self.class_names) - 1

    def num_records(self) -> int:
        raise NotImplementedError

    def load(self, record: int):
        raise NotImplementedError

    def record_file(self, record: int) -> str:
        """The image file of ``record``, relative to the source's image folder."""
        return str(record)

    def record_boxes(self, record: int):
        """``(H, W, boxes [N, 4])`` of ``record`` as stored, before any transform; sources that
        can answer from their annotations alone do so without decoding the image."""
        image, target = self.load(record)
        return int(image.shape[-2]), int(image.shape[-1]), target["boxes"].numpy()

    def file_name(self, i: int) -> str:
        """The image file of item ``i`` (as its source names it): results files carry it."""
        return self.record_file(self.indices[i])

    def subset(self, indices: list[int], transforms: Callable | None = None, **attrs):
        """A view of the same source with other record ``indices``, ``transforms`` (and attributes)."""
        view = copy.copy(self)
        view.indices, view.transforms = list(indices), transforms
        for name, value in attrs.items():
            setattr(view, name, value)
        return view

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        image, target = self.load(self.indices[i])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


# --------------------------------------------------------------------------------------------
# COCO-format instances
# --------------------------------------------------------------------------------------------

def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path}: annotation file not found")
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text file, cannot be COCO JSON") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: malformed JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a COCO object with 'images', 'annotations' and "
                           f"'categories', found a JSON {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: missing the list '{key}' that COCO instances files have")
    return data


def _is_number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def clip_bbox(bbox: list, H: float, W: float) -> list | None:
    """A COCO box ``[x, y, w, h]`` (pixels) cut to its image ``[0, W] x [0, H]``, or None when
    nothing of it is left; a box inside the image comes back as it was.

    >>> clip_bbox([-5, 10, 20, 10], H=32, W=32)  # 5 px left of the image: x1 = 0, x2 = 15
    [0, 10, 15, 10]
    >>> clip_bbox([40, 0, 5, 5], H=32, W=32) is None  # wholly right of the image
    True
    """
    x, y, w, h = bbox
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x2 <= x1 or y2 <= y1:
        return None
    if (x1, y1, x2, y2) == (x, y, x + w, y + h):
        return list(bbox)
    return [x1, y1, x2 - x1, y2 - y1]


def keep_polygons(polygons: list) -> list:
    """The COCO polygons ``[[x1, y1, x2, y2, ...], ...]`` that have an area: 3 points or more
    (6 numbers, an even count). pycocotools fails on one point, reads 4 numbers as a box
    [x, y, w, h], and gives an empty mask for an odd count.

    >>> keep_polygons([[0, 0, 9, 0, 9, 9], [1, 1], [1, 1, 5, 5], [0, 0, 4, 0, 4]])
    [[0, 0, 9, 0, 9, 9]]
    """
    return [p for p in polygons if len(p) >= 6 and len(p) % 2 == 0]


def segmentation_problem(seg) -> str | None:
    """What is wrong with a COCO ``segmentation``, or None. It may be empty (no mask: the box
    stands in), polygons ``[[x1, y1, x2, y2, ...], ...]`` of numbers, or RLE ``{"size": [h, w],
    "counts": ...}``, its counts a list of run lengths covering h * w pixels (pycocotools reads
    other memory for a shorter list) or COCO's compressed string."""
    if not seg:
        return None
    if isinstance(seg, list):
        if all(isinstance(p, list) and all(map(_is_number, p)) for p in seg):
            return None
        return "polygons that are not lists of numbers [[x1, y1, x2, y2, ...], ...]"
    if not isinstance(seg, dict):
        return f"a segmentation that is neither polygons nor RLE (a {type(seg).__name__})"
    size, counts = seg.get("size"), seg.get("counts")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size)):
        return f"an RLE segmentation without a valid 'size' [height, width]: {size!r}"
    if isinstance(counts, (str, bytes)):
        return None
    if not (isinstance(counts, list) and all(isinstance(v, int) and v >= 0 for v in counts)):
        return "an RLE segmentation whose 'counts' is neither run lengths nor a compressed string"
    if sum(counts) != size[0] * size[1]:
        return (f"an RLE segmentation whose counts cover {sum(counts)} pixels, where its size "
                f"{size[1]}x{size[0]} has {size[0] * size[1]}")
    return None


@dataclass
class BoxFixes:
    """What reading one annotation file did to its boxes: counted, said in one note."""
    zero: int = 0  # dropped: a box of zero or negative width or height
    outside: int = 0  # dropped: a box entirely outside its image
    clipped: int = 0  # cut to the image
    first_dropped: object = None  # an annotation id of each kind, to find one in the file
    first_clipped: object = None

    def count(self, kind: str, ann_id) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if kind == "clipped":
            self.first_clipped = ann_id if self.first_clipped is None else self.first_clipped
        else:
            self.first_dropped = ann_id if self.first_dropped is None else self.first_dropped

    def add(self, other: "BoxFixes") -> "BoxFixes":
        """The two counts together (a new object; the first ids of ``self`` first)."""
        return BoxFixes(self.zero + other.zero, self.outside + other.outside,
                        self.clipped + other.clipped,
                        self.first_dropped if self.first_dropped is not None else other.first_dropped,
                        self.first_clipped if self.first_clipped is not None else other.first_clipped)

    def note(self, where: str) -> str | None:
        """``"ann.json: dropped 2 annotation(s) with a box of zero or negative width or height
        (first: annotation id 4); clipped 3 box(es) to their image (first: annotation id 1)"``."""
        parts = []
        if self.zero or self.outside:
            why = {(True, False): "of zero or negative width or height",
                   (False, True): "entirely outside its image",
                   (True, True): f"of zero or negative width or height ({self.zero}) or entirely "
                                 f"outside its image ({self.outside})"}[bool(self.zero), bool(self.outside)]
            parts.append(f"dropped {self.zero + self.outside} annotation(s) with a box {why} "
                         f"(first: annotation id {self.first_dropped})")
        if self.clipped:
            parts.append(f"clipped {self.clipped} box(es) to their image "
                         f"(first: annotation id {self.first_clipped})")
        return f"{where}: {'; '.join(parts)}" if parts else None


def clip_annotation(ann: dict, H: float, W: float, fixes: BoxFixes) -> dict | None:
    """``ann`` with its box cut to its ``H x W`` image (a copy, if cut), or None when nothing of
    the box is left; either is counted in ``fixes``."""
    bbox = clip_bbox(ann["bbox"], H, W)
    if bbox is None:
        fixes.count("outside", ann.get("id"))
        return None
    if bbox != ann["bbox"]:
        fixes.count("clipped", ann.get("id"))
        return {**ann, "bbox": bbox}
    return ann


def _image_entry_problem(im, image_dir: Path) -> str | None:
    """What is wrong with one entry of a COCO file's ``images``, or None."""
    if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
        return f"an image entry lacks 'id' or 'file_name': {im}"
    root = image_dir.resolve()
    if root not in (image_dir / im["file_name"]).resolve().parents:
        return (f"image {im['id']} has file_name {im['file_name']!r}, which points outside the "
                f"image folder {image_dir}")
    for key in ("width", "height"):
        if key in im and not (_is_number(im[key]) and im[key] > 0):
            return f"image {im['id']} has {key} {im[key]!r}, not a number of pixels"
    return None


class CocoDataset(DetectionDataset):
    """Any COCO instances JSON and its image folder.

    - categories, sorted by id, become labels 1..K; ``class_names`` keeps their names;
    - segmentation as polygons, compressed RLE or uncompressed RLE (pycocotools decodes all three);
      an annotation without segmentation (or whose every polygon was dropped) gets its box as mask;
    - boxes are cut to their image, and dropped when nothing is left (``clip_bbox``): where the
      file gives the image's width and height, on reading the file; else on reading the image;
    - ``iscrowd`` regions are kept (flagged) when ``keep_crowd``; training sets drop them;
    - images without annotations are kept: they are the negatives.

    ``notes`` are what reading the file mended (boxes, polygons), each also warned once
    (``DatasetWarning``); ``box_fixes`` counts the boxes.
    """

    def __init__(self, ann_file, image_dir, indices=None, transforms=None, keep_crowd: bool = True):
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        data = _load_json(self.ann_file)
        where = str(self.ann_file)
        problems = []  # every problem of the file, said together in one DatasetError

        cats = data["categories"]
        bad = [c for c in cats if not (isinstance(c, dict) and isinstance(c.get("id"), (int, str)))]
        if bad or len({type(c["id"]) for c in cats}) > 1:
            raise DatasetError(f"{where}: every category needs an 'id', all numbers (or all "
                               f"strings): {(bad or cats)[:3]}")
        cats = sorted(cats, key=lambda c: c["id"])
        self.cat_to_label = {c["id"]: k + 1 for k, c in enumerate(cats)}
        self.label_to_cat = {k: c for c, k in self.cat_to_label.items()}
        self.class_names = ["background"] + [str(c.get("name", c["id"])) for c in cats]

        images = []
        for im in data["images"]:
            problem = _image_entry_problem(im, self.image_dir)
            if problem:
                problems.append(f"{where}: {problem}")
            else:
                images.append(im)
        self.images = sorted(images, key=lambda im: im["file_name"])
        sizes = {im["id"]: (im["height"], im["width"]) for im in self.images
                 if "height" in im and "width" in im}  # (H, W) where the file gives them

        image_ids = {im["id"] for im in images}
        per_image = defaultdict(list)
        fixes, polygons_dropped, first_polygon, left_without = BoxFixes(), 0, None, 0
        for ann in data["annotations"]:
            aid = ann.get("id") if isinstance(ann, dict) else None
            problem = self._annotation_problem(ann, image_ids)
            if problem:
                problems.append(f"{where}: annotation {aid} {problem}")
                continue
            if ann["bbox"][2] <= 0 or ann["bbox"][3] <= 0:
                fixes.count("zero", aid)
                continue
            if ann["image_id"] in sizes:
                ann = clip_annotation(ann, *sizes[ann["image_id"]], fixes)
                if ann is None:
                    continue
            seg = ann.get("segmentation")
            if seg and isinstance(seg, list) and len(keep_polygons(seg)) < len(seg):
                kept = keep_polygons(seg)
                polygons_dropped += len(seg) - len(kept)
                first_polygon = aid if first_polygon is None else first_polygon
                left_without += not kept
                ann = {**ann, "segmentation": kept}
            per_image[ann["image_id"]].append(ann)
        if problems:
            raise DatasetError(problems_message(problems, f"{len(problems)} problems in {where}"))

        polygon_note = polygons_dropped and (
            f"{where}: dropped {polygons_dropped} polygon(s) of fewer than 3 points (first: "
            f"annotation id {first_polygon})" + (f"; {left_without} annotation(s) left without a "
                                                 f"polygon keep their box as mask" if left_without else ""))
        self.box_fixes = fixes
        self.notes = [n for n in (fixes.note(where), polygon_note) if n]
        for note in self.notes:
            warnings.warn(note, DatasetWarning, stacklevel=2)
        self.keep_crowd = keep_crowd
        self.annotations_per_image = [per_image[im["id"]] for im in self.images]
        super().__init__(indices, transforms)

    def _annotation_problem(self, ann, image_ids: set) -> str | None:
        """What is wrong with one entry of ``annotations`` (after "annotation <id> "), or None."""
        if not isinstance(ann, dict):
            return f"is not an object: {ann!r}"
        if ann.get("image_id") not in image_ids:
            return f"refers to image_id {ann.get('image_id')}, which is not in 'images'"
        if ann.get("category_id") not in self.cat_to_label:
            return f"has category_id {ann.get('category_id')}, which is not in 'categories'"
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            return f"has no valid 'bbox' [x, y, width, height]: {bbox!r}"
        problem = segmentation_problem(ann.get("segmentation"))
        return f"has {problem}" if problem else None

    @property
    def num_dropped(self) -> int:
        """Annotations dropped on reading the file: no box left (zero size, or outside the image)."""
        return self.box_fixes.zero + self.box_fixes.outside

    def num_records(self) -> int:
        return len(self.images)

    def image_path(self, record: int) -> Path:
        return self.image_dir / self.images[record]["file_name"]

    def record_file(self, record: int) -> str:
        return str(self.images[record]["file_name"])

    def declared_size(self, record: int) -> tuple[int, int] | None:
        """``(H, W)`` as the annotation file gives it, or None where it does not."""
        info = self.images[record]
        return (int(info["height"]), int(info["width"])) if "height" in info and "width" in info else None

    def record_annotations(self, record: int, H: int, W: int, fixes: BoxFixes | None = None) -> list:
        """The annotations of ``record`` (crowd regions only when ``keep_crowd``), each box cut
        to the ``H x W`` image (a no-op where the file gave the size: its boxes were cut on
        reading it); what is cut or dropped here is counted in ``fixes``."""
        fixes = BoxFixes() if fixes is None else fixes
        anns = (clip_annotation(a, H, W, fixes) for a in self.annotations_per_image[record]
                if self.keep_crowd or not a.get("iscrowd", 0))
        return [a for a in anns if a is not None]

    def record_boxes(self, record: int):
        """From the annotations, and the image's header where the file gives no size."""
        H, W = self.declared_size(record) or read_header(self.image_path(record))[:2]
        anns = self.record_annotations(record, H, W)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                         np.float32).reshape(-1, 4)
        return H, W, boxes

    def load(self, record: int):
        info = self.images[record]
        path = self.image_path(record)
        image = read_image(path)
        H, W = image.shape[:2]
        if self.declared_size(record) not in (None, (H, W)):
            raise DatasetError(f"{path}: the annotations ({self.ann_file.name}) say "
                               f"{info.get('width')}x{info.get('height')}, the image is {W}x{H}")
        anns = self.record_annotations(record, H, W)
        masks = np.zeros((len(anns), H, W), np.uint8)
        for j, ann in enumerate(anns):
            masks[j] = self._mask(ann, H, W, path)
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                         np.float32)
        labels = [self.cat_to_label[a["category_id"]] for a in anns]
        iscrowd = [int(a.get("iscrowd", 0)) for a in anns]
        return make_item(image, boxes, labels, masks, iscrowd, info["id"])

    def _mask(self, ann: dict, H: int, W: int, path: Path) -> np.ndarray:
        seg = ann.get("segmentation")
        if not seg:  # no mask: the box (cut to the image) stands in for it
            x, y, w, h = ann["bbox"]
            m = np.zeros((H, W), np.uint8)
            m[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = 1
            return m
        if isinstance(seg, dict) and list(seg.get("size", [H, W])) != [H, W]:
            raise DatasetError(f"{path}: the mask of annotation {ann.get('id')} is "
                               f"{seg['size'][1]}x{seg['size'][0]}, the image is {W}x{H}")
        try:
            if isinstance(seg, list):  # polygons [[x1, y1, x2, y2, ...], ...] of 3 points or more
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, H, W))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, H, W)
            else:  # compressed RLE
                rle = {"size": seg["size"], "counts": seg["counts"]}
                if isinstance(rle["counts"], str):
                    rle["counts"] = rle["counts"].encode("ascii")
            return mask_utils.decode(rle).astype(np.uint8)
        except Exception as e:  # pycocotools raises bare Exceptions too: "input type is not supported"
            raise DatasetError(f"{self.ann_file}: annotation {ann.get('id')} has a segmentation "
                               f"that pycocotools cannot decode ({e})") from None


# --------------------------------------------------------------------------------------------
# Penn-Fudan pedestrians
# --------------------------------------------------------------------------------------------

class PennFudanDataset(DetectionDataset):
    """The Penn-Fudan layout: ``PNGImages/X.png`` and ``PedMasks/X_mask.png``.

    In a mask PNG, 0 is background and each pedestrian is one value 1, 2, ...; each value
    becomes one instance of the single class "person", its box the tight box of its pixels.
    """

    class_names = ["background", "person"]

    def __init__(self, root, indices=None, transforms=None):
        self.root = Path(root)
        image_dir, mask_dir = self.root / "PNGImages", self.root / "PedMasks"
        for d in (image_dir, mask_dir):
            if not d.is_dir():
                raise DatasetError(f"{d}: folder not found (the Penn-Fudan layout has "
                                   f"PNGImages/ and PedMasks/ under {self.root})")
        self.image_files = sorted(image_dir.glob("*.png"))
        if not self.image_files:
            raise DatasetError(f"{image_dir}: no PNG images found")
        super().__init__(indices, transforms)

    def num_records(self) -> int:
        return len(self.image_files)

    def record_file(self, record: int) -> str:
        return self.image_files[record].name

    def record_boxes(self, record: int):
        """From the mask file alone (its size is the image's)."""
        ids_map = self.ids_map(record)
        ids = np.unique(ids_map)
        masks = ids_map[None] == ids[ids != 0][:, None, None]  # (N, H, W)
        return ids_map.shape[0], ids_map.shape[1], boxes_from_masks(masks)

    def mask_path(self, record: int) -> Path:
        return self.root / "PedMasks" / f"{self.image_files[record].stem}_mask.png"

    def ids_map(self, record: int) -> np.ndarray:
        """The mask PNG of ``record``: (H, W) instance ids, 0 = background."""
        mask_path = self.mask_path(record)
        if not mask_path.is_file():
            raise DatasetError(f"{mask_path}: mask file not found for image {self.image_files[record].name}")
        try:
            with Image.open(mask_path) as im:
                ids_map = np.asarray(im)
        except PIL_ERRORS as e:
            raise DatasetError(f"{mask_path}: cannot read the mask ({e})") from None
        return ids_map[..., 0] if ids_map.ndim == 3 else ids_map

    def load(self, record: int):
        path, mask_path = self.image_files[record], self.mask_path(record)
        image = read_image(path)
        ids_map = self.ids_map(record)  # (H, W) instance ids, 0 = background
        if ids_map.shape[:2] != image.shape[:2]:
            raise DatasetError(f"{mask_path}: mask is {ids_map.shape[1]}x{ids_map.shape[0]}, "
                               f"image {path.name} is {image.shape[1]}x{image.shape[0]}")
        ids = np.unique(ids_map)
        ids = ids[ids != 0]
        masks = (ids_map[None] == ids[:, None, None]).astype(np.uint8)  # (N, H, W)
        boxes = boxes_from_masks(masks)
        n = len(ids)
        return make_item(image, boxes, np.ones(n), masks, np.zeros(n), record + 1)
