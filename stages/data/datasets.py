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

Bad input never surfaces as a traceback from deep inside a library: a missing or unreadable
image, malformed JSON, a ``file_name`` that escapes the image folder, a mask whose size differs
from its image each raise ``DatasetError`` naming the file and the problem; boxes of zero or
negative size are dropped, counted, and reported in one warning per file.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import pycocotools.mask as mask_utils
import torch
from PIL import Image, UnidentifiedImageError


class DatasetError(ValueError):
    """A problem with the user's data. The message names the file and what is wrong with it."""


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
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise DatasetError(f"{path}: cannot read the image ({e})") from None


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
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
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


class CocoDataset(DetectionDataset):
    """Any COCO instances JSON and its image folder.

    - categories, sorted by id, become labels 1..K; ``class_names`` keeps their names;
    - segmentation as polygons, compressed RLE or uncompressed RLE (pycocotools decodes all three);
      an annotation without segmentation gets its box as mask;
    - ``iscrowd`` regions are kept (flagged) when ``keep_crowd``; training sets drop them;
    - images without annotations are kept: they are the negatives.
    """

    def __init__(self, ann_file, image_dir, indices=None, transforms=None, keep_crowd: bool = True):
        self.ann_file, self.image_dir = Path(ann_file), Path(image_dir)
        data = _load_json(self.ann_file)
        where = str(self.ann_file)

        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.cat_to_label = {c["id"]: k + 1 for k, c in enumerate(cats)}
        self.label_to_cat = {k: c for c, k in self.cat_to_label.items()}
        self.class_names = ["background"] + [str(c.get("name", c["id"])) for c in cats]

        root = self.image_dir.resolve()
        self.images = sorted(data["images"], key=lambda im: str(im.get("file_name", "")))
        for im in self.images:
            if "id" not in im or "file_name" not in im:
                raise DatasetError(f"{where}: an image entry lacks 'id' or 'file_name': {im}")
            path = (self.image_dir / im["file_name"]).resolve()
            if root not in path.parents:
                raise DatasetError(f"{where}: image {im['id']} has file_name {im['file_name']!r}, "
                                   f"which points outside the image folder {self.image_dir}")
        ids = {im["id"] for im in self.images}

        per_image = defaultdict(list)
        dropped, first_dropped = 0, None
        for ann in data["annotations"]:
            if ann.get("image_id") not in ids:
                raise DatasetError(f"{where}: annotation {ann.get('id')} refers to image_id "
                                   f"{ann.get('image_id')}, which is not in 'images'")
            if ann.get("category_id") not in self.cat_to_label:
                raise DatasetError(f"{where}: annotation {ann.get('id')} has category_id "
                                   f"{ann.get('category_id')}, which is not in 'categories'")
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise DatasetError(f"{where}: annotation {ann.get('id')} has no valid 'bbox' "
                                   f"[x, y, width, height]: {bbox!r}")
            if bbox[2] <= 0 or bbox[3] <= 0:
                dropped += 1
                first_dropped = first_dropped or ann.get("id")
                continue
            per_image[ann["image_id"]].append(ann)
        if dropped:
            warnings.warn(f"{where}: dropped {dropped} annotation(s) with a box of zero or negative "
                          f"width or height (first: annotation id {first_dropped})", stacklevel=2)
        self.num_dropped = dropped
        self.keep_crowd = keep_crowd
        self.annotations_per_image = [per_image[im["id"]] for im in self.images]
        super().__init__(indices, transforms)

    def num_records(self) -> int:
        return len(self.images)

    def image_path(self, record: int) -> Path:
        return self.image_dir / self.images[record]["file_name"]

    def record_file(self, record: int) -> str:
        return str(self.images[record]["file_name"])

    def record_boxes(self, record: int):
        info, anns = self.images[record], self.annotations_per_image[record]
        if "height" in info and "width" in info:
            H, W = int(info["height"]), int(info["width"])
        else:  # read the size from the file's header, not its pixels
            path = self.image_path(record)
            try:
                with Image.open(path) as im:
                    W, H = im.size
            except (OSError, UnidentifiedImageError) as e:
                raise DatasetError(f"{path}: cannot read the image ({e})") from None
        anns = [a for a in anns if self.keep_crowd or not a.get("iscrowd", 0)]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                         np.float32).reshape(-1, 4)
        return H, W, boxes

    def load(self, record: int):
        info, anns = self.images[record], self.annotations_per_image[record]
        if not self.keep_crowd:
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        path = self.image_path(record)
        image = read_image(path)
        H, W = image.shape[:2]
        if (info.get("height", H), info.get("width", W)) != (H, W):
            raise DatasetError(f"{path}: the annotations ({self.ann_file.name}) say "
                               f"{info.get('width')}x{info.get('height')}, the image is {W}x{H}")
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
        if not seg:  # no mask: the box stands in for it
            x, y, w, h = ann["bbox"]
            m = np.zeros((H, W), np.uint8)
            m[int(y):int(np.ceil(y + h)), int(x):int(np.ceil(x + w))] = 1
            return m
        if isinstance(seg, dict) and list(seg.get("size", [H, W])) != [H, W]:
            raise DatasetError(f"{path}: the mask of annotation {ann.get('id')} is "
                               f"{seg['size'][1]}x{seg['size'][0]}, the image is {W}x{H}")
        try:
            if isinstance(seg, list):  # polygons [[x1, y1, x2, y2, ...], ...]
                rle = mask_utils.merge(mask_utils.frPyObjects(seg, H, W))
            elif isinstance(seg.get("counts"), list):  # uncompressed RLE
                rle = mask_utils.frPyObjects(seg, H, W)
            else:  # compressed RLE
                rle = {"size": seg["size"], "counts": seg["counts"]}
                if isinstance(rle["counts"], str):
                    rle["counts"] = rle["counts"].encode("ascii")
            return mask_utils.decode(rle).astype(np.uint8)
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise DatasetError(f"{self.ann_file}: annotation {ann.get('id')} has a segmentation "
                               f"that is neither polygons nor RLE ({e})") from None


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
        ids_map = self._ids_map(record)
        ids = np.unique(ids_map)
        masks = ids_map[None] == ids[ids != 0][:, None, None]  # (N, H, W)
        return ids_map.shape[0], ids_map.shape[1], boxes_from_masks(masks)

    def _ids_map(self, record: int) -> np.ndarray:
        """The mask PNG of ``record``: (H, W) instance ids, 0 = background."""
        path = self.image_files[record]
        mask_path = self.root / "PedMasks" / f"{path.stem}_mask.png"
        if not mask_path.is_file():
            raise DatasetError(f"{mask_path}: mask file not found for image {path.name}")
        try:
            with Image.open(mask_path) as im:
                ids_map = np.asarray(im)
        except (UnidentifiedImageError, OSError) as e:
            raise DatasetError(f"{mask_path}: cannot read the mask ({e})") from None
        return ids_map[..., 0] if ids_map.ndim == 3 else ids_map

    def load(self, record: int):
        path = self.image_files[record]
        mask_path = self.root / "PedMasks" / f"{path.stem}_mask.png"
        image = read_image(path)
        ids_map = self._ids_map(record)  # (H, W) instance ids, 0 = background
        if ids_map.shape[:2] != image.shape[:2]:
            raise DatasetError(f"{mask_path}: mask is {ids_map.shape[1]}x{ids_map.shape[0]}, "
                               f"image {path.name} is {image.shape[1]}x{image.shape[0]}")
        ids = np.unique(ids_map)
        ids = ids[ids != 0]
        masks = (ids_map[None] == ids[:, None, None]).astype(np.uint8)  # (N, H, W)
        boxes = boxes_from_masks(masks)
        n = len(ids)
        return make_item(image, boxes, np.ones(n), masks, np.zeros(n), record + 1)
