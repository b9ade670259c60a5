"""Bad input found before training (``stages.data.checks``): every damaged image reported in one
error with a count, a set with no annotation refused, boxes cut to their image, short polygons
dropped, large images capped at ``MAX_SIDE``, and every image mode PIL reads turned into RGB."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stages.data.checks import check_inputs, large_image_note
from stages.data.datasets import CocoDataset, DatasetError, DatasetWarning, read_image
from stages.data.sources import load_dataset
from stages.data.transforms import MAX_SIDE, train_transforms, val_transforms


def coco_set(tmp_path: Path, annotations, n: int = 5, size=(32, 32), declare: bool = True,
             name: str = "ann.json") -> Path:
    """``n`` grey PNGs ``0.png`` ... of ``size`` (H, W) in ``images/`` and a COCO file listing
    them (with their width / height when ``declare``) and ``annotations``, one category "cat"."""
    H, W = size
    (tmp_path / "images").mkdir(exist_ok=True)
    images = []
    for i in range(n):
        Image.fromarray(np.full((H, W, 3), 100 + i, np.uint8)).save(tmp_path / "images" / f"{i}.png")
        images.append({"id": i, "file_name": f"{i}.png", **({"height": H, "width": W} if declare else {})})
    ann = tmp_path / name
    ann.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 1, "name": "cat"}]}))
    return ann


def box(ann_id: int, image_id: int, bbox, **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": bbox, **extra}


def one_box_each(n: int = 5) -> list[dict]:
    return [box(i + 1, i, [4, 4, 8, 8]) for i in range(n)]


def loaded(tmp_path, annotations, **kw) -> CocoDataset:
    """The COCO set of ``annotations``, its warnings silenced (the tests that read them say so)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        return CocoDataset(coco_set(tmp_path, annotations, **kw), tmp_path / "images")


# ---------------------------------------------------------------------------------------------
# damaged images: all of them, in one error
# ---------------------------------------------------------------------------------------------

def test_damaged_images_are_reported_together_with_their_count(tmp_path):
    ann = coco_set(tmp_path, one_box_each(6), n=6)
    images = tmp_path / "images"
    (images / "1.png").unlink()  # missing
    (images / "2.png").write_bytes(b"these bytes are not a PNG")  # not an image
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(images / "4.png")  # 40 wide, declared 32
    train, val = load_dataset(f"coco:{ann}")  # 0, 1, 2, 3, 5 train; 4 validates
    with pytest.raises(DatasetError) as e:
        check_inputs(train, val, long_side=None)
    lines = str(e.value).splitlines()
    assert lines == [
        f"{images / '1.png'}: image file not found",
        lines[1],
        f"{images / '4.png'}: the annotations (ann.json) say 32x32, the image is 40x32",
        "3 problems in 3 of 6 images (train and validation), found before training"]
    assert lines[1].startswith(f"{images / '2.png'}: cannot read the image")
    # past max_lines, the rest are counted
    with pytest.raises(DatasetError) as e:
        check_inputs(train, val, long_side=None, max_lines=1)
    assert str(e.value).splitlines()[1:] == [
        "... and 2 more; 3 problems in 3 of 6 images (train and validation), found before training"]


def test_a_single_problem_is_one_line_and_a_clean_set_passes(tmp_path):
    ann = coco_set(tmp_path, one_box_each())
    train, val = load_dataset(f"coco:{ann}")
    assert check_inputs(train, val, long_side=None) == []
    (tmp_path / "images" / "3.png").unlink()
    with pytest.raises(DatasetError) as e:
        check_inputs(train, val, long_side=None)
    assert str(e.value) == f"{tmp_path / 'images' / '3.png'}: image file not found"


def test_an_rle_mask_of_another_size_is_found_up_front(tmp_path):
    rle = {"size": [10, 10], "counts": [100]}  # a 10 x 10 mask on a 32 x 32 image
    ann = coco_set(tmp_path, one_box_each(4) + [box(9, 4, [1, 1, 5, 5], segmentation=rle)])
    train, val = load_dataset(f"coco:{ann}")
    with pytest.raises(DatasetError, match=r"4\.png: the mask of annotation 9 is 10x10, the image is 32x32$"):
        check_inputs(train, val, long_side=None)


def test_annotation_file_problems_are_said_together(tmp_path):
    anns = [box(1, 0, [1, 1, 5, 5]), box(2, 77, [1, 1, 5, 5]), box(3, 0, [1, 1, "5", 5]),
            box(4, 0, [1, 1, 5, 5], segmentation=[["x", 1, 2, 3, 4, 5]]),
            box(5, 0, [1, 1, 5, 5], segmentation={"size": [32, 32], "counts": [5, 3]})]
    with pytest.raises(DatasetError) as e:
        CocoDataset(coco_set(tmp_path, anns), tmp_path / "images")
    lines = str(e.value).splitlines()
    where = str(tmp_path / "ann.json")
    assert lines == [
        f"{where}: annotation 2 refers to image_id 77, which is not in 'images'",
        f"{where}: annotation 3 has no valid 'bbox' [x, y, width, height]: [1, 1, '5', 5]",
        f"{where}: annotation 4 has polygons that are not lists of numbers [[x1, y1, x2, y2, ...], ...]",
        f"{where}: annotation 5 has an RLE segmentation whose counts cover 8 pixels, where its "
        f"size 32x32 has 1024",
        f"4 problems in {where}"]


def test_a_segmentation_pycocotools_cannot_decode_names_the_file_and_annotation(tmp_path):
    bad = {"size": [32, 32], "counts": "not an RLE string!"}
    ds = loaded(tmp_path, [box(6, 0, [1, 1, 5, 5], segmentation=bad)])
    with pytest.raises(DatasetError, match=r"ann\.json: annotation 6 has a segmentation that "
                                           r"pycocotools cannot decode"):
        ds[0]


# ---------------------------------------------------------------------------------------------
# a set with nothing to learn from or to score against
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("empty, problem", [
    ("train", "none of the 3 training images has an annotated object: nothing to learn from"),
    ("val", "none of the 2 validation images has an annotated object: nothing to score against "
            "(AP would be undefined)")])
def test_a_set_without_annotations_is_refused(tmp_path, empty, problem):
    files = {}
    for split, n in (("train", 3), ("val", 2)):
        folder = tmp_path / split
        folder.mkdir()
        files[split] = coco_set(folder, [] if split == empty else one_box_each(n), n=n,
                                name=f"{split}.json")
    train, val = load_dataset(f"coco:{files['train']}", val_spec=f"coco:{files['val']}")
    with pytest.raises(DatasetError) as e:
        check_inputs(train, val, long_side=None)
    assert str(e.value) == f"{files[empty]}: {problem}"


def test_a_few_images_without_annotations_are_negatives(tmp_path):
    ann = coco_set(tmp_path, [box(1, 0, [2, 2, 6, 6]), box(2, 4, [2, 2, 6, 6])])
    train, val = load_dataset(f"coco:{ann}")
    assert check_inputs(train, val, long_side=None) == []


# ---------------------------------------------------------------------------------------------
# boxes cut to their image
# ---------------------------------------------------------------------------------------------

def test_boxes_outside_are_dropped_and_boxes_partly_outside_clipped(tmp_path):
    anns = [box(1, 0, [40, 40, 5, 5]),  # wholly outside the 32 x 32 image: dropped
            box(2, 0, [-4, 10, 10, 10]),  # 4 px left of it: x from 0 to 6
            box(3, 0, [28, 28, 10, 10]),  # over the bottom-right corner: 28..32
            box(4, 0, [5, 5, 0, 3]),  # no width: dropped, as before
            box(5, 1, [2, 2, 6, 6])] + one_box_each(5)[2:]
    ann = coco_set(tmp_path, anns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, val = load_dataset(f"coco:{ann}")
    note = (f"{ann}: dropped 2 annotation(s) with a box of zero or negative width or height (1) or "
            f"entirely outside its image (1) (first: annotation id 1); clipped 2 box(es) to their "
            f"image (first: annotation id 2)")
    assert [str(w.message) for w in caught] == [note]  # said once, at reading the file
    assert check_inputs(train, val, long_side=None) == [note]
    _, target = train[0]
    assert target["boxes"].tolist() == [[0, 10, 6, 20], [28, 28, 32, 32]]
    assert target["area"].tolist() == [60, 16]  # the box masks, cut too: 6 x 10 and 4 x 4
    H, W, boxes = train.record_boxes(0)  # what box_statistics.gather reads agrees with load
    assert (H, W) == (32, 32) and boxes.tolist() == target["boxes"].tolist()
    assert train.num_dropped == 2


def test_boxes_of_an_image_without_a_declared_size_are_cut_by_its_header(tmp_path):
    anns = [box(1, 0, [40, 0, 5, 5]), box(2, 0, [20, 20, 20, 4])] + one_box_each(5)[1:]
    ann = coco_set(tmp_path, anns, declare=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, val = load_dataset(f"coco:{ann}")
    assert caught == []  # without the size, reading the file cannot tell
    assert check_inputs(train, val, long_side=None) == [
        f"{ann}: dropped 1 annotation(s) with a box entirely outside its image (first: annotation "
        f"id 1); clipped 1 box(es) to their image (first: annotation id 2)"]
    _, target = train[0]
    assert target["boxes"].tolist() == [[20, 20, 32, 24]] and target["area"].tolist() == [48]
    assert train.record_boxes(0)[2].tolist() == [[20, 20, 32, 24]]


# ---------------------------------------------------------------------------------------------
# polygons of fewer than 3 points
# ---------------------------------------------------------------------------------------------

def test_short_polygons_are_dropped_and_the_box_becomes_the_mask(tmp_path):
    square = [4, 4, 12, 4, 12, 12, 4, 12]
    anns = [box(7, 0, [4, 4, 8, 8], segmentation=[[5, 5]]),  # 1 point: pycocotools' bare Exception
            box(8, 0, [2, 2, 4, 4], segmentation=[[5, 5, 9, 9]]),  # 2 points: read as a box
            box(9, 1, [4, 4, 8, 8], segmentation=[square, [1, 1, 2, 2]])] + one_box_each(5)[2:]
    ann = coco_set(tmp_path, anns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDataset(ann, tmp_path / "images")
    note = (f"{ann}: dropped 3 polygon(s) of fewer than 3 points (first: annotation id 7); "
            f"2 annotation(s) left without a polygon keep their box as mask")
    assert [str(w.message) for w in caught] == [note] and ds.notes == [note]
    _, target = ds[0]
    assert target["boxes"].tolist() == [[4, 4, 12, 12], [2, 2, 6, 6]]
    assert target["area"].tolist() == [64, 16]  # the boxes, 8 x 8 and 4 x 4
    assert target["masks"][0, 4:12, 4:12].all() and target["masks"][1, 2:6, 2:6].all()
    _, target = ds[1]
    assert target["masks"][0][6, 6] == 1 and target["masks"][0][1, 1] == 0  # the square alone


# ---------------------------------------------------------------------------------------------
# large images: shrunk to MAX_SIDE unless --long-side says otherwise
# ---------------------------------------------------------------------------------------------

def _item(H: int, W: int):
    masks = torch.zeros(1, H, W, dtype=torch.uint8)
    masks[0, 20:60, 1000:1400] = 1
    target = {"boxes": torch.tensor([[1000., 20., 1400., 60.]]), "labels": torch.tensor([1]),
              "masks": masks, "area": torch.tensor([16000.]), "iscrowd": torch.zeros(1, dtype=torch.int64),
              "image_id": 1}
    return torch.rand(3, H, W), target


def test_an_image_over_max_side_is_shrunk_to_it_without_long_side():
    assert MAX_SIDE == 1333
    image, target = _item(100, 2000)
    shrunk, t = train_transforms(None, flip=0.0)(image, target)
    assert shrunk.shape == (3, 67, 1333)  # 100 * 1333 / 2000 = 66.65 -> 67
    sx, sy = 1333 / 2000, 67 / 100
    torch.testing.assert_close(t["boxes"], torch.tensor([[1000 * sx, 20 * sy, 1400 * sx, 60 * sy]]))
    assert t["masks"].shape == (1, 67, 1333) and t["area"].item() == t["masks"].sum().item() > 0
    assert val_transforms(0)(image, target)[0].shape == (3, 67, 1333)  # 0: no resize, the cap still
    assert val_transforms(800)(image, target)[0].shape == (3, 40, 800)  # --long-side wins
    small, _ = _item(100, 1333)
    assert val_transforms(None)(small, target)[0] is small  # never enlarged, never touched


def test_check_inputs_says_once_that_large_images_are_shrunk(tmp_path):
    ann = coco_set(tmp_path, one_box_each())
    Image.fromarray(np.zeros((100, 2000, 3), np.uint8)).save(tmp_path / "images" / "2.png")
    data = json.loads(ann.read_text())
    data["images"][2].update(height=100, width=2000)
    ann.write_text(json.dumps(data))
    train, val = load_dataset(f"coco:{ann}")
    assert check_inputs(train, val, long_side=None) == [
        "1 of 5 images are longer than 1333 px on a side: they are shrunk to 1333 px "
        "(torchvision's max size); --long-side N sets another size"]
    assert check_inputs(train, val, long_side=256) == []
    assert large_image_note([1333, 1334], 0).startswith("1 of 2 images")


# ---------------------------------------------------------------------------------------------
# Penn-Fudan: images and masks
# ---------------------------------------------------------------------------------------------

def pennfudan_set(tmp_path: Path, n: int = 5, objects: bool = True) -> Path:
    for sub in ("PNGImages", "PedMasks"):
        (tmp_path / sub).mkdir()
    for i in range(n):
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "PNGImages" / f"P{i}.png")
        ids = np.zeros((32, 32), np.uint8)
        ids[4:20, 8:16] = objects  # one pedestrian, or none
        Image.fromarray(ids).save(tmp_path / "PedMasks" / f"P{i}_mask.png")
    return tmp_path


def test_pennfudan_images_and_masks_are_checked_together(tmp_path):
    root = pennfudan_set(tmp_path)
    (root / "PedMasks" / "P0_mask.png").unlink()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "PedMasks" / "P1_mask.png")
    (root / "PNGImages" / "P2.png").write_bytes(b"GIF89a but not really")
    train, val = load_dataset(f"pennfudan:{root}")
    with pytest.raises(DatasetError) as e:
        check_inputs(train, val, long_side=None)
    lines = str(e.value).splitlines()
    assert lines[0] == f"{root / 'PedMasks' / 'P0_mask.png'}: mask file not found for image P0.png"
    assert lines[1] == f"{root / 'PedMasks' / 'P1_mask.png'}: mask is 5x5, image P1.png is 32x32"
    assert lines[2].startswith(f"{root / 'PNGImages' / 'P2.png'}: cannot read the image")
    assert lines[3] == "3 problems in 3 of 5 images (train and validation), found before training"


def test_pennfudan_without_a_pedestrian_is_refused(tmp_path):
    root = pennfudan_set(tmp_path, objects=False)
    train, val = load_dataset(f"pennfudan:{root}")
    with pytest.raises(DatasetError) as e:
        check_inputs(train, val, long_side=None)
    assert str(e.value).splitlines() == [
        f"{root / 'PedMasks'}: none of the 4 training images has an annotated object: nothing to learn from",
        f"{root / 'PedMasks'}: none of the 1 validation images has an annotated object: nothing to "
        f"score against (AP would be undefined)",
        "2 sets without annotations, found before training"]


def test_the_real_pennfudan_passes(pennfudan):
    train, val = load_dataset(f"pennfudan:{pennfudan}")
    assert check_inputs(train, val, long_side=None) == []


# ---------------------------------------------------------------------------------------------
# image modes: each read as RGB uint8
# ---------------------------------------------------------------------------------------------

def test_16_bit_png_is_scaled_not_clipped_to_white(tmp_path):
    values = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)  # 0..4095, 12-bit
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")
    rgb = read_image(tmp_path / "deep.png")
    assert rgb.shape == (64, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 2]).all()  # grey
    expected = np.round(values / 4095 * 255).astype(np.uint8)  # darkest -> 0, brightest -> 255
    assert (rgb[..., 0] == expected).all() and (rgb == 255).mean() < 0.01


@pytest.mark.parametrize("mode, suffix", [("P", "png"), ("LA", "png"), ("RGBA", "png"),
                                          ("CMYK", "jpg"), ("L", "png"), ("1", "png")])
def test_each_image_mode_reads_as_rgb(tmp_path, mode, suffix):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[:, 4:] = (200, 200, 200)  # the right half light grey
    path = tmp_path / f"image.{suffix}"
    im = Image.fromarray(rgb)
    im = im.convert(mode, dither=Image.Dither.NONE)
    im.save(path)
    with Image.open(path) as again:
        assert again.mode == mode
    out = read_image(path)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert np.abs(out[:, :3].astype(int) - 0).max() <= 8  # dark stays dark
    assert out[:, 5:].min() >= 185  # light stays light


def test_an_rgba_pixel_keeps_its_colour_without_alpha(tmp_path):
    Image.fromarray(np.array([[[10, 20, 30, 0]]], np.uint8), "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").tolist() == [[[10, 20, 30]]]  # transparent, colour kept
