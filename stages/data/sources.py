"""Dataset sources: which datasets a ``--data`` spec names, and the one train / validation split.

The item every source gives, and the dataset classes that read it (``CocoDataset``,
``PennFudanDataset``, ``DatasetError`` for bad input), live in ``stages.data.datasets``; they are
imported here, so ``from stages.data.sources import CocoDataset`` works too.

Sources (``load_dataset(spec)`` reads a spec string; the command-line flag ``--data`` takes it):

    synthetic                      the built-in shapes (``stages.data.synthetic``), generated on first use
    coco:ANN.json[:IMAGE_DIR]      any COCO instances file; images in IMAGE_DIR (default: COCO's
                                   layout, ``annotations/instances_X.json`` -> ``X/``; else
                                   ``images/`` beside the JSON file when that exists; else its folder)
    pennfudan:DIR                  the Penn-Fudan layout (``PNGImages/``, ``PedMasks/``) of the
                                   torchvision detection tutorial

The split rule, the same for every source that comes as one set: sort the images by file name and
send every 5th one (positions 4, 9, 14, ...) to validation (``split_indices``). The synthetic set
comes already split into its own train and val files. A COCO source that comes as two files, as
COCO itself and most labelling tools export it, gives both (``--data coco:instances_train.json
--val-data coco:instances_val.json``): every image of the first trains, the second validates, and
the two must hold the same categories.

Bad input, before any training (the map of what is checked where is ``stages.data.datasets``'s
docstring): reading a source raises one ``DatasetError`` for all that its annotation file holds
wrong, and warns (``DatasetWarning``, also in ``CocoDataset.notes``) of the boxes it clipped or
dropped and the polygons it dropped; the stage commands then call
``stages.data.checks.check_inputs(train, val)``, which opens every image of both sets, raises one
``DatasetError`` for every missing, unreadable or mis-sized image or mask and for a set with no
annotation, and returns those notes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from stages.data.datasets import CocoDataset, DatasetError, PennFudanDataset
from stages.data.synthetic import SyntheticConfig, ensure_synthetic

VAL_EVERY = 5  # every 5th image (sorted by file name) goes to validation


def split_indices(n: int, val_every: int = VAL_EVERY) -> tuple[list[int], list[int]]:
    """The one train/val split rule: positions ``val_every-1, 2*val_every-1, ...`` go to val.

    Deterministic, with no random draw: the same files always give the same split.
    >>> split_indices(10)
    ([0, 1, 2, 3, 5, 6, 7, 8], [4, 9])
    """
    val = [i for i in range(n) if i % val_every == val_every - 1]
    train = [i for i in range(n) if i % val_every != val_every - 1]
    return train, val


# --------------------------------------------------------------------------------------------
# One entry point for every command
# --------------------------------------------------------------------------------------------

def parse_spec(spec: str) -> tuple[str, list[str]]:
    """``"coco:a.json:imgs"`` -> ``("coco", ["a.json", "imgs"])``; clear error on unknown kinds."""
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        return kind, []
    if kind == "pennfudan" and rest:
        return kind, [rest]
    if kind == "coco" and rest:
        if ".json:" in rest:  # the image folder follows the JSON file
            ann, _, image_dir = rest.partition(".json:")
            return kind, [ann + ".json", image_dir]
        return kind, [rest]
    raise DatasetError(f"--data {spec!r}: expected 'synthetic', 'coco:ANN.json[:IMAGE_DIR]' "
                       f"or 'pennfudan:DIR'")


def default_image_dir(ann: Path) -> Path:
    """Where the images of ``ann`` are when the spec does not say: COCO's own layout
    (``annotations/instances_val2017.json`` -> ``val2017/`` beside ``annotations/``), else
    ``images/`` beside the JSON file when that exists, else the JSON file's folder."""
    split = ann.stem.removeprefix("instances_")
    if ann.stem.startswith("instances_") and (ann.parent.parent / split).is_dir():
        return ann.parent.parent / split
    return ann.parent / "images" if (ann.parent / "images").is_dir() else ann.parent


def _coco(args: list[str], transforms=None, keep_crowd: bool = True) -> CocoDataset:
    ann = Path(args[0])
    image_dir = Path(args[1]) if len(args) > 1 else default_image_dir(ann)
    return CocoDataset(ann, image_dir, transforms=transforms, keep_crowd=keep_crowd)


def check_same_categories(train: CocoDataset, val: CocoDataset) -> None:
    """A validation file must name the training file's categories, id for id: a model's label k
    is the k-th category by id, so another list would score every detection against the wrong
    class. Raises ``DatasetError`` naming both files and the first difference."""
    a = [(c, train.class_names[k]) for c, k in sorted(train.cat_to_label.items())]
    b = [(c, val.class_names[k]) for c, k in sorted(val.cat_to_label.items())]
    if a == b:
        return
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    diff = "; ".join(part for part in (
        f"only in the training file: {', '.join(f'{n} (id {c})' for c, n in only_a)}" if only_a else "",
        f"only in the validation file: {', '.join(f'{n} (id {c})' for c, n in only_b)}" if only_b else "")
        if part)
    raise DatasetError(f"{val.ann_file}: its categories differ from those of {train.ann_file} "
                       f"({diff}); both files need the same categories, by id and name")


def load_dataset(spec: str = "synthetic", data_root: str | os.PathLike = "data",
                 train_transforms: Callable | None = None, val_transforms: Callable | None = None,
                 synthetic: SyntheticConfig = SyntheticConfig(), val_spec: str | None = None):
    """Return ``(train, val)`` datasets for a ``--data`` spec (see the module docstring).

    ``val_spec`` (``--val-data coco:VAL.json[:IMAGE_DIR]``): the validation images come from that
    file and every image of ``spec`` trains, as COCO's ``instances_train`` / ``instances_val``
    pair; both must hold the same categories (``check_same_categories``). Without it, a source
    that comes as one set is split by ``split_indices``.
    """
    kind, args = parse_spec(spec)
    if val_spec is not None:
        val_kind, val_args = parse_spec(val_spec)
        if kind != "coco" or val_kind != "coco":
            raise DatasetError(f"--data {spec!r} --val-data {val_spec!r}: a validation file goes "
                               f"with a COCO training file (both 'coco:FILE.json[:IMAGE_DIR]'); "
                               f"the synthetic set and Penn-Fudan come with their own split")
        train = _coco(args, train_transforms, keep_crowd=False)
        val = _coco(val_args, val_transforms)
        check_same_categories(train, val)
        return train, val
    if kind == "synthetic":
        folder = ensure_synthetic(synthetic, data_root)
        return (CocoDataset(folder / "train.json", folder / "images", transforms=train_transforms,
                            keep_crowd=False),
                CocoDataset(folder / "val.json", folder / "images", transforms=val_transforms))
    full = PennFudanDataset(args[0]) if kind == "pennfudan" else _coco(args)
    train_idx, val_idx = split_indices(full.num_records())
    return (full.subset(train_idx, train_transforms, keep_crowd=False),
            full.subset(val_idx, val_transforms))


def collate(batch):
    """Detection batches are lists (images differ in size and object count): ``(images, targets)``."""
    return tuple(zip(*batch))
