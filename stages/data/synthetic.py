"""The built-in dataset: textured shapes on cluttered backgrounds, saved in COCO format.

Why synthetic data: every stage must train and be evaluated in minutes on a CPU laptop, with no
download. Why *not trivial* data: if the three classes differed by colour, or the background were
flat, selective search would find each object as one uniform region and every stage would score
100 AP. So (the project's targets):

- object colours are drawn from the same distribution as the background clutter, and every
  surface (background, clutter, objects) carries a texture (stripes, grain, a colour gradient);
- clutter (lines, arcs, irregular blobs that belong to no class) is painted under the objects, so a
  proposal method finds many regions that are not objects;
- objects overlap: a later object occludes an earlier one, and the hidden part is removed from
  the earlier object's mask (its box is the box of what stays visible, as in COCO).

Classes: 1 circle, 2 square (any rotation), 3 triangle (any rotation). Sizes span COCO's "small"
(area < 32^2) and "medium" ranges; a 128 x 128 image has no room for "large" (area > 96^2), so
APl is -1 (undefined) on this data, a lesson the evaluator explains.

Determinism: image ``i`` of split ``s`` is drawn from ``np.random.default_rng([seed, s, i])``, so
the same seed gives byte-identical annotations (and PNGs) on every machine with the same
NumPy/OpenCV, and one image does not depend on how many were drawn before it.

Layout on disk, generated on first use (``ensure_synthetic``)::

    data/shapes-s0-128px-400x100/
        images/train_000000.png ...   RGB PNGs
        train.json, val.json          COCO instances (masks as compressed RLE)
        manifest.json                 the config and the size of every file: written last, so
                                      a folder without a matching manifest is regenerated

The whole folder is written under a temporary name and renamed into place (atomic).
Run ``python -m stages.data.synthetic`` to generate it, ``python -m stages.figures.dataset_preview``
to generate it and save a preview grid.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from stages.data.coco_format import mask_to_rle
from stages.data.datasets import CocoDataset
from stages import files
from stages.flags import add_dataclass_args, command_parser, dataclass_from_args, param

CLASS_NAMES = ["background", "circle", "square", "triangle"]
SPLITS = {"train": 0, "val": 1}  # split name -> id mixed into the random seed


@dataclass(frozen=True)
class SyntheticConfig:
    """What the generator draws. Defaults: the project's built-in set (400 train / 100 val)."""

    seed: int = param(0, help="the same seed draws the same images, byte for byte")
    image_size: int = param(128, help="square images, pixels")
    n_train: int = param(400, help="training images")
    n_val: int = param(100, help="validation images")
    min_objects: int = param(1, help="objects per image, at least")
    max_objects: int = param(6, help="objects per image, at most")
    min_size: int = param(12, help="side of an object's bounding square before occlusion, pixels, at least")
    max_size: int = param(56, help="the same, at most")
    n_clutter: int = param(10, help="distractor strokes and blobs per image")
    min_visible: float = param(0.5, help="an object occluded to less than this fraction is redrawn elsewhere")

    @property
    def folder_name(self) -> str:
        name = f"shapes-s{self.seed}-{self.image_size}px-{self.n_train}x{self.n_val}"
        defaults = SyntheticConfig(seed=self.seed, image_size=self.image_size,
                                   n_train=self.n_train, n_val=self.n_val)
        if self != defaults:  # other knobs changed: keep their folder apart from the default one
            digest = hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
            name += f"-{digest[:8]}"
        return name


# --------------------------------------------------------------------------------------------
# Drawing: textures, clutter, shapes. All images are float32 (H, W, 3) in [0, 1].
# --------------------------------------------------------------------------------------------

def random_colour(rng: np.random.Generator) -> np.ndarray:
    """One colour law for background, clutter and objects alike, so colour tells no class."""
    return rng.uniform(0.05, 0.95, size=3).astype(np.float32)


def texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) texture: a smooth two-colour gradient field modulated by stripes or grain."""
    # low-frequency field: a random 4x4 grid of mixing weights, upsampled smoothly
    grid = rng.uniform(0, 1, size=(4, 4)).astype(np.float32)
    field = cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)[..., None]
    c1, c2 = random_colour(rng), random_colour(rng)
    tex = field * c1 + (1 - field) * c2  # (S, S, 3)
    kind = rng.integers(0, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 0:  # stripes at a random angle and period
        angle, period = rng.uniform(0, math.pi), rng.uniform(4, 14)
        wave = np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
        tex = tex * (1 + 0.25 * wave[..., None])
    elif kind == 1:  # grain
        tex = tex + rng.normal(0, 0.08, size=(size, size, 1)).astype(np.float32)
    # kind == 2: the smooth gradient alone
    return tex.clip(0, 1).astype(np.float32)


def shape_polygon(cls: str, cx: float, cy: float, side: float, angle: float) -> np.ndarray:
    """Vertices (V, 2) in (x, y) of a square or an equilateral triangle, rotated by ``angle``."""
    if cls == "square":
        radius, start = side / math.sqrt(2), math.pi / 4
        n = 4
    elif cls == "triangle":
        radius, start = side / math.sqrt(3), -math.pi / 2  # side length = radius * sqrt(3)
        n = 3
    else:
        raise ValueError(f"no polygon for class {cls!r}")
    t = start + angle + 2 * math.pi * np.arange(n) / n
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def shape_mask(cls: str, size: int, cx: float, cy: float, side: float, angle: float) -> np.ndarray:
    """Binary (size, size) uint8 mask of one full (un-occluded) object."""
    mask = np.zeros((size, size), np.uint8)
    shift = 4  # cv2 draws with sub-pixel precision when coordinates are given in 1/16 pixels
    if cls == "circle":
        centre = (int(round(cx * 16)), int(round(cy * 16)))
        cv2.circle(mask, centre, int(round(side / 2 * 16)), 1, thickness=-1, lineType=cv2.LINE_8,
                   shift=shift)
    else:
        pts = np.round(shape_polygon(cls, cx, cy, side, angle) * 16).astype(np.int32)
        cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=shift)
    return mask


def draw_clutter(rng: np.random.Generator, image: np.ndarray, n: int) -> None:
    """Paint ``n`` distractors in place: lines, arcs and irregular blobs of no class."""
    size = image.shape[0]
    for _ in range(n):
        colour = tuple(float(c) for c in random_colour(rng))
        kind = rng.integers(0, 3)
        if kind == 0:  # a straight stroke
            p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
            cv2.line(image, tuple(int(v) for v in p1), tuple(int(v) for v in p2), colour,
                     int(rng.integers(1, 4)))
        elif kind == 1:  # an open arc (a circle's outline is not a circle object)
            centre = tuple(int(v) for v in rng.integers(0, size, 2))
            axes = tuple(int(v) for v in rng.integers(6, 30, 2))
            start = float(rng.uniform(0, 360))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), start,
                        start + float(rng.uniform(60, 250)), colour, int(rng.integers(1, 4)))
        else:  # an irregular blob: 5 to 8 vertices at random radii
            k = int(rng.integers(5, 9))
            t = np.sort(rng.uniform(0, 2 * math.pi, k))
            r = rng.uniform(3, 14, k)
            c = rng.uniform(0, size, 2)
            pts = np.stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)], 1).round().astype(np.int32)
            cv2.fillPoly(image, [pts], colour)


def draw_image(cfg: SyntheticConfig, split: str, index: int):
    """Draw image ``index`` of ``split``: returns (image uint8 (S, S, 3), objects).

    ``objects`` is a list of (class_id, visible_mask, full_mask) in drawing order, masks uint8
    (S, S): the full mask is the whole shape, the visible mask what later objects leave of it.
    """
    rng = np.random.default_rng([cfg.seed, SPLITS[split], index])
    S = cfg.image_size
    image = texture(rng, S)
    draw_clutter(rng, image, cfg.n_clutter)

    n_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    full_masks: list[np.ndarray] = []
    classes: list[int] = []
    for _ in range(n_objects):
        cls_id = int(rng.integers(1, len(CLASS_NAMES)))
        for _attempt in range(20):  # redraw until every object stays visible enough
            side = float(rng.uniform(cfg.min_size, cfg.max_size))
            cx, cy = rng.uniform(side / 2, S - side / 2, size=2)
            mask = shape_mask(CLASS_NAMES[cls_id], S, cx, cy, side, float(rng.uniform(0, 2 * math.pi)))
            covered = mask.astype(bool)
            # the new object hides part of each earlier one: would any fall below min_visible?
            ok = all(
                (m.astype(bool) & ~covered & ~later).sum() >= cfg.min_visible * m.sum()
                for m, later in zip(full_masks, _occluders_after(full_masks))
            )
            if ok and mask.sum() > 0:
                full_masks.append(mask)
                classes.append(cls_id)
                break

    for mask in full_masks:  # paint in order: later objects on top
        tex = texture(rng, S)
        image[mask.astype(bool)] = tex[mask.astype(bool)]

    # Visible mask = full mask minus everything drawn after it (correct occlusion).
    visible = [m.astype(bool) & ~later for m, later in zip(full_masks, _occluders_after(full_masks))]
    objects = [(c, v.astype(np.uint8), m) for c, v, m in zip(classes, visible, full_masks)]

    image = cv2.GaussianBlur(image, (3, 3), 0.6)  # soften the hard rendering edges a little
    image = image + rng.normal(0, 0.02, size=image.shape).astype(np.float32)  # sensor noise
    return (image.clip(0, 1) * 255).round().astype(np.uint8), objects


def _occluders_after(masks: list[np.ndarray]) -> list[np.ndarray]:
    """For each mask, the union (bool) of all masks drawn after it."""
    out, union = [], None
    for m in reversed(masks):
        out.append(np.zeros(m.shape, bool) if union is None else union.copy())
        union = m.astype(bool) if union is None else union | m.astype(bool)
    return out[::-1]


# --------------------------------------------------------------------------------------------
# COCO export
# --------------------------------------------------------------------------------------------

def coco_split(cfg: SyntheticConfig, split: str, image_dir: Path) -> dict:
    """Draw every image of a split, write its PNGs into ``image_dir``, return its COCO dict."""
    n = cfg.n_train if split == "train" else cfg.n_val
    images, annotations = [], []
    for i in range(n):
        image, objects = draw_image(cfg, split, i)
        file_name = f"{split}_{i:06d}.png"
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        assert ok, "OpenCV failed to encode a PNG"
        (image_dir / file_name).write_bytes(png.tobytes())
        image_id = i + 1  # COCO ids start at 1
        images.append({"id": image_id, "file_name": file_name,
                       "height": cfg.image_size, "width": cfg.image_size})
        for cls_id, mask, _full in objects:
            ys, xs = np.nonzero(mask)
            x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": cls_id,
                "bbox": [x1, y1, x2 - x1, y2 - y1],  # COCO: x, y, width, height
                "area": int(mask.sum()), "iscrowd": 0,
                "segmentation": mask_to_rle(torch.from_numpy(mask[None]))[0],  # (1, H, W) -> 1 RLE
            })
    categories = [{"id": i, "name": name, "supercategory": "shape"}
                  for i, name in enumerate(CLASS_NAMES) if i > 0]
    return {"info": {"description": f"R-CNN Stages synthetic shapes, {split}", "config": asdict(cfg)},
            "images": images, "annotations": annotations, "categories": categories}


def _manifest(folder: Path, cfg: SyntheticConfig) -> dict:
    # only what the generator writes: extra files (a preview grid, say) do not make it "damaged"
    written = sorted([*folder.glob("images/*.png"), folder / "train.json", folder / "val.json"])
    written = [p for p in written if p.is_file()]
    return {"config": asdict(cfg),
            "files": {str(p.relative_to(folder)): p.stat().st_size for p in written}}


def is_complete(folder: Path, cfg: SyntheticConfig) -> bool:
    """True when ``folder`` holds exactly what ``cfg`` generates: manifest, every file, right sizes,
    and both annotation files parse. Anything else (missing, truncated, edited) means regenerate."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        if manifest.get("config") != asdict(cfg):
            return False
        for name in ("train.json", "val.json"):
            json.loads((folder / name).read_text())
        return manifest == _manifest(folder, cfg)
    except (OSError, ValueError):
        return False


def generate(cfg: SyntheticConfig, folder: Path) -> Path:
    """Generate the dataset into ``folder`` atomically (build in a temporary folder, then rename)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        (tmp / "images").mkdir()
        for split in SPLITS:
            coco = coco_split(cfg, split, tmp / "images")
            files.write_json(tmp / f"{split}.json", coco, indent=None)
        files.write_json(tmp / "manifest.json", _manifest(tmp, cfg))  # written last
        if folder.exists():  # a damaged or stale copy: move it aside, then delete it
            trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def ensure_synthetic(cfg: SyntheticConfig = SyntheticConfig(), data_root: str | os.PathLike = "data",
                     verbose: bool = True) -> Path:
    """Return the dataset folder for ``cfg`` under ``data_root``, generating it if missing or damaged."""
    folder = Path(data_root) / cfg.folder_name
    if is_complete(folder, cfg):
        return folder
    if verbose:
        why = "damaged or stale, regenerating" if folder.exists() else "generating"
        print(f"[synthetic] {folder}: {why} {cfg.n_train} train + {cfg.n_val} val images ...",
              flush=True)
    return generate(cfg, folder)


def add_generation_args(parser) -> None:
    """The command-line flags of the dataset: its folder, SyntheticConfig's fields, --force."""
    parser.add_argument("--data-root", default="data",
                        help="folder that holds generated data (default: data)")
    add_dataclass_args(parser, SyntheticConfig, "SyntheticConfig")
    parser.add_argument("--force", action="store_true", help="regenerate even if complete")


def generated_folder(args) -> Path:
    """The dataset folder those flags ask for, generated (again, with --force) where needed; says
    what it holds."""
    cfg = dataclass_from_args(SyntheticConfig, args)
    folder = generate(cfg, Path(args.data_root) / cfg.folder_name) if args.force \
        else ensure_synthetic(cfg, args.data_root)
    train = CocoDataset(folder / "train.json", folder / "images")
    n_objects = sum(len(a) for a in train.annotations_per_image)
    print(f"{folder}: {len(train)} train images, {n_objects} objects, classes {CLASS_NAMES[1:]}")
    return folder


def main(argv: list[str] | None = None) -> Path:
    """``python -m stages.data.synthetic``: generate the built-in dataset (its preview grid:
    ``python -m stages.figures.dataset_preview``)."""
    parser = command_parser("python -m stages.data.synthetic", main.__doc__)
    add_generation_args(parser)
    return generated_folder(parser.parse_args(argv))


if __name__ == "__main__":
    main()
