"""Every input checked before training starts: the problems said together, never a traceback.

A run reads its images one at a time, minutes or hours in: a missing file found at image 4000
would end it there, and the next one at the next run. So the stage commands first call

    check_inputs(train, val, long_side=N) -> notes

which opens every image of the training and validation sets once (its header: size and mode, no
pixel decoded, so thousands of images take seconds; a Penn-Fudan mask, small, is read whole to
count its pedestrians) and raises one ``DatasetError`` for all that it finds, a line
``"<file>: <reason>"`` per problem (up to ``max_lines``), then their count::

    data/images/a.png: image file not found
    data/images/b.png: cannot read the image (cannot identify image file ...)
    data/images/c.png: the annotations (ann.json) say 32x32, the image is 40x32
    3 problems in 3 of 170 images (train and validation), found before training

What is a problem (the file cannot be used as it is):

    an image          missing; unreadable or not an image; of a mode PIL cannot convert to RGB
                      (``datasets.convertible``); of another size than the annotation file's
                      width / height; with an RLE mask of another size
    a Penn-Fudan mask missing; unreadable; of another size than its image
    a set             no annotated object at all: a training set has nothing to learn from, a
                      validation set nothing to score against (AP would be undefined). A few
                      images without one are fine: they are the negatives.

What is mended and said (the returned notes, each once; the stage commands print them): boxes
cut to their image or dropped, polygons of fewer than 3 points dropped (``CocoDataset.notes``,
with the boxes of images whose size only their header gives), and images over
``transforms.MAX_SIDE`` shrunk to it when no ``--long-side`` is given.

What the annotation file itself holds (JSON, ids, categories, bbox and segmentation formats) is
checked on reading it (``CocoDataset``), before this.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from stages.data.datasets import (BoxFixes, CocoDataset, DatasetError, PennFudanDataset,
                                  convertible, problems_message, read_header)
from stages.data.transforms import MAX_SIDE

PROGRESS_MIN = 200  # a progress bar only for more images than this: a small set is checked at once


def check_inputs(train, val, *, long_side: int | None, progress: bool = False,
                 max_lines: int = 10) -> list[str]:
    """Check every image of ``train`` and ``val`` (``CocoDataset`` or ``PennFudanDataset``, or a
    ``subset`` of one) before training. Raises one ``DatasetError`` listing every problem (see the
    module docstring); returns the notes about what was mended, without a prefix.

    ``long_side``: the long side the run resizes its images to (``--long-side``, once chosen);
    None or 0: none, and images longer than ``MAX_SIDE`` are shrunk to it (a note says so).
    """
    sets = [(train, "training"), (val, "validation")]
    records = {}  # (source, record) -> (dataset, record): each image once, however many sets hold it
    for dataset, _ in sets:
        for record in dataset.indices:
            records.setdefault((source_of(dataset), record), (dataset, record))

    results = {}  # (source, record) -> (problems, long side or None, annotated objects)
    header_fixes = {}  # source -> boxes cut or dropped in images whose size only their header gives
    show = progress and len(records) > PROGRESS_MIN
    for key, (dataset, record) in tqdm(records.items(), desc="checking images", unit="image",
                                       disable=not show, leave=False):
        fixes = header_fixes.setdefault(key[0], BoxFixes())
        results[key] = check_record(dataset, record, fixes)

    image_problems = [p for problems, _, _ in results.values() for p in problems]
    set_problems = []
    for dataset, role in sets:
        objects = sum(results[source_of(dataset), r][2] for r in dataset.indices)
        problem = no_annotation_problem(dataset, role, objects)
        set_problems += [problem] if problem else []
    if image_problems or set_problems:
        n_bad = sum(bool(problems) for problems, _, _ in results.values())
        summary = "; ".join(part for part in (
            f"{len(image_problems)} problem{'s' * (len(image_problems) != 1)} in {n_bad} of "
            f"{len(results)} images (train and validation)" if image_problems else "",
            f"{len(set_problems)} set{'s' * (len(set_problems) != 1)} without annotations"
            if set_problems else "") if part)
        raise DatasetError(problems_message(set_problems + image_problems,
                                            f"{summary}, found before training", max_lines))

    notes = []
    for dataset, _ in sets:
        notes += source_notes(dataset, header_fixes.get(source_of(dataset), BoxFixes()))
    long_sides = [side for _, side, _ in results.values() if side is not None]
    note = large_image_note(long_sides, long_side)
    notes += [note] if note else []
    return list(dict.fromkeys(notes))  # each once: a split source is both sets' source


def source_of(dataset) -> Path:
    """The file (COCO) or folder (Penn-Fudan) a set comes from: two sets with one source are a split."""
    if isinstance(dataset, CocoDataset):
        return dataset.ann_file
    if isinstance(dataset, PennFudanDataset):
        return dataset.root
    raise TypeError(f"check_inputs reads CocoDataset and PennFudanDataset, not {type(dataset).__name__}")


def check_record(dataset, record: int, fixes: BoxFixes) -> tuple[list[str], int | None, int]:
    """``(problems, long side or None, annotated objects)`` of one image of ``dataset``; boxes
    cut or dropped by the image's header size (where the file gives none) are counted in ``fixes``."""
    if isinstance(dataset, PennFudanDataset):
        return check_pennfudan_record(dataset, record)
    return check_coco_record(dataset, record, fixes)


def image_problems(path: Path) -> tuple[list[str], tuple[int, int] | None]:
    """``(problems, (H, W) or None)`` of one image file, from its header."""
    try:
        H, W, mode = read_header(path)
    except DatasetError as e:  # missing, unreadable, not an image
        return [str(e)], None
    if not convertible(mode):
        return [f"{path}: image mode {mode!r}, which PIL cannot convert to RGB"], (H, W)
    return [], (H, W)


def check_coco_record(dataset: CocoDataset, record: int, fixes: BoxFixes):
    """An image of a COCO file: readable, of the file's size, its RLE masks of its size."""
    path = dataset.image_path(record)
    problems, size = image_problems(path)
    declared = dataset.declared_size(record)
    if size is None:  # unreadable: the objects as the file lists them
        anns = dataset.annotations_per_image[record]
        return problems, None, sum(not a.get("iscrowd", 0) for a in anns)
    H, W = size
    if declared not in (None, size):
        problems.append(f"{path}: the annotations ({dataset.ann_file.name}) say "
                        f"{declared[1]}x{declared[0]}, the image is {W}x{H}")
    # the boxes of an image the file gives no size for are cut here, by its header's size
    anns = dataset.record_annotations(record, H, W, fixes if declared is None else BoxFixes())
    for ann in anns:
        seg = ann.get("segmentation")
        if isinstance(seg, dict) and list(seg["size"]) != [H, W]:
            problems.append(f"{path}: the mask of annotation {ann.get('id')} is "
                            f"{seg['size'][1]}x{seg['size'][0]}, the image is {W}x{H}")
    return problems, max(H, W), sum(not a.get("iscrowd", 0) for a in anns)


def check_pennfudan_record(dataset: PennFudanDataset, record: int):
    """A Penn-Fudan image and its mask: both readable, of one size; the mask's pedestrians counted."""
    path, mask_path = dataset.image_files[record], dataset.mask_path(record)
    problems, size = image_problems(path)
    try:
        ids_map = dataset.ids_map(record)  # (H, W) instance ids, 0 = background
    except DatasetError as e:  # missing, unreadable
        return problems + [str(e)], size and max(size), 0
    if size is not None and ids_map.shape[:2] != size:
        problems.append(f"{mask_path}: mask is {ids_map.shape[1]}x{ids_map.shape[0]}, "
                        f"image {path.name} is {size[1]}x{size[0]}")
    return problems, size and max(size), int((np.unique(ids_map) != 0).sum())


def no_annotation_problem(dataset, role: str, objects: int) -> str | None:
    """The line refusing a set with no annotated object (``role``: "training" or "validation")."""
    if objects:
        return None
    where = dataset.ann_file if isinstance(dataset, CocoDataset) else dataset.root / "PedMasks"
    why = ("nothing to learn from" if role == "training" else
           "nothing to score against (AP would be undefined)")
    if not len(dataset):
        return f"{where}: the {role} set has no image: {why}"
    return f"{where}: none of the {len(dataset)} {role} images has an annotated object: {why}"


def source_notes(dataset, header_fixes: BoxFixes) -> list[str]:
    """What reading ``dataset``'s file mended (``CocoDataset.notes``), its box note counting the
    boxes cut or dropped by image headers too."""
    if not isinstance(dataset, CocoDataset):
        return []
    where = str(dataset.ann_file)
    at_reading = dataset.box_fixes.note(where)
    together = dataset.box_fixes.add(header_fixes).note(where)
    notes = [together if note == at_reading else note for note in dataset.notes]
    return notes if at_reading or not together else [together] + notes


def large_image_note(long_sides: list[int], long_side: int | None) -> str | None:
    """The note, once, when images are over ``MAX_SIDE`` and no ``long_side`` resizes them.

    >>> large_image_note([4000, 500, 1334], None)
    "2 of 3 images are longer than 1333 px on a side: they are shrunk to 1333 px (torchvision's max size); --long-side N sets another size"
    >>> large_image_note([4000], 800) is None
    True
    """
    large = sum(side > MAX_SIDE for side in long_sides)
    if long_side or not large:
        return None
    return (f"{large} of {len(long_sides)} images are longer than {MAX_SIDE} px on a side: they "
            f"are shrunk to {MAX_SIDE} px (torchvision's max size); --long-side N sets another size")
