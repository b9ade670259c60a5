"""The shared dataset module: synthetic generator, COCO and Penn-Fudan sources, split, transforms,
and the errors bad input gets."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from PIL import Image

from stages.data import synthetic
from stages.data.sources import (CocoDataset, DatasetError, PennFudanDataset, load_dataset, parse_spec,
                             split_indices)
from stages.data.synthetic import CLASS_NAMES, SyntheticConfig, ensure_synthetic, is_complete
from stages.data.transforms import Compose, HorizontalFlip, Resize

from conftest import TINY


# ---------------------------------------------------------------------------------------------
# synthetic shapes
# ---------------------------------------------------------------------------------------------

def test_synthetic_is_byte_for_byte_deterministic(tmp_path, tiny_synthetic):
    again = synthetic.generate(TINY, tmp_path / "again")
    for name in ["train.json", "val.json", *sorted(p.name for p in (again / "images").iterdir())]:
        sub = name if name.endswith(".json") else f"images/{name}"
        assert (again / sub).read_bytes() == (tiny_synthetic / sub).read_bytes(), sub
    other = synthetic.generate(SyntheticConfig(seed=1, n_train=8, n_val=4), tmp_path / "other")
    assert (other / "train.json").read_bytes() != (again / "train.json").read_bytes()


def test_synthetic_items_follow_the_shared_format(tiny_synthetic):
    ds = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")
    assert len(ds) == TINY.n_train and ds.class_names == CLASS_NAMES
    counts = []
    for image, target in ds:
        assert image.dtype == torch.float32 and image.shape == (3, 128, 128)
        assert 0 <= image.min() and image.max() <= 1
        n = len(target["boxes"])
        counts.append(n)
        assert target["boxes"].shape == (n, 4) and target["labels"].dtype == torch.int64
        assert target["masks"].shape == (n, 128, 128) and target["masks"].dtype == torch.uint8
        assert set(target["labels"].tolist()) <= {1, 2, 3}
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = torch.nonzero(mask, as_tuple=True)  # the box is the tight box of the mask
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert 1 <= min(counts) and max(counts) <= TINY.max_objects


def test_occluded_part_is_removed_from_the_mask():
    cfg = SyntheticConfig(seed=3)
    n_occluded = 0
    for i in range(40):
        image, objects = synthetic.draw_image(cfg, "train", i)
        visible = np.stack([v for _, v, _ in objects]).astype(bool)
        full = np.stack([f for _, _, f in objects]).astype(bool)
        assert visible.sum(0).max() <= 1, "two visible masks claim the same pixel"
        assert not (visible & ~full).any(), "a visible mask reaches outside its shape"
        for j in range(len(objects)):
            hidden_by_later = full[j] & full[j + 1:].any(0)
            assert not (visible[j] & hidden_by_later).any()
            assert visible[j].sum() == (full[j] & ~hidden_by_later).sum()
            assert visible[j].sum() >= cfg.min_visible * full[j].sum()
            n_occluded += bool(hidden_by_later.any())
    assert n_occluded >= 5, "overlaps should be common enough to teach occlusion"
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8


def test_visible_masks_are_full_masks_minus_later_objects():
    full = [np.zeros((8, 8), np.uint8) for _ in range(3)]
    full[0][0:6, 0:6] = 1
    full[1][3:8, 3:8] = 1
    full[2][0:2, 0:8] = 1
    later = synthetic._occluders_after(full)
    visible = [f.astype(bool) & ~l for f, l in zip(full, later)]
    assert visible[2].sum() == 16  # the top object is whole
    assert visible[1].sum() == 25  # object 1 is only under object 2 where they do not meet
    assert visible[0].sum() == 36 - 9 - 12 + 0  # minus the 3x3 under object 1 and 2x6 under object 2


def test_background_is_textured_and_classes_are_not_a_colour(tiny_synthetic):
    ds = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")
    mean_colour = {1: [], 2: [], 3: []}
    for image, target in ds:
        background = target["masks"].sum(0) == 0
        # textured: the background is far from a flat colour
        assert image[:, background].std(dim=1).mean() > 0.03
        for label, mask in zip(target["labels"].tolist(), target["masks"].bool()):
            mean_colour[label].append(image[:, mask].mean(1))
    # the colour of one class varies as much as colour varies between classes
    spreads = [torch.stack(v).std(0).mean() for v in mean_colour.values() if len(v) > 2]
    assert spreads and min(spreads) > 0.1


def test_generated_data_is_regenerated_when_damaged(tmp_path):
    cfg = SyntheticConfig(seed=5, n_train=3, n_val=2)
    folder = ensure_synthetic(cfg, tmp_path, verbose=False)
    good = (folder / "train.json").read_bytes()
    (folder / "train.json").write_text('{"images": [')  # truncated
    assert not is_complete(folder, cfg)
    ensure_synthetic(cfg, tmp_path, verbose=False)
    assert (folder / "train.json").read_bytes() == good
    (folder / "images" / "val_000001.png").unlink()  # missing image
    assert not is_complete(folder, cfg)
    ensure_synthetic(cfg, tmp_path, verbose=False)
    assert is_complete(folder, cfg)
    (folder / "preview.png").write_bytes(b"x")  # an extra file is not damage
    assert is_complete(folder, cfg)
    assert not list(tmp_path.glob(".*")), "temporary folders were left behind"


def test_synthetic_command_generates_and_the_preview_command_draws_it(tmp_path, capsys):
    from stages.figures import dataset_preview

    folder = synthetic.main(["--data-root", str(tmp_path), "--n-train", "4", "--n-val", "2"])
    assert (folder / "train.json").exists() and "4 train images" in capsys.readouterr().out
    dataset_preview.main(["--data-root", str(tmp_path), "--n-train", "4", "--n-val", "2",
                          "--preview", str(tmp_path / "grid.png")])
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size[0] > 200 and im.size[1] > 100
    assert "4 train images" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# COCO format
# ---------------------------------------------------------------------------------------------

def _write_coco(tmp_path: Path, annotations, images=None, categories=None, size=(20, 30)) -> Path:
    """A small COCO folder: images of ``size`` (H, W) and the given annotation list."""
    H, W = size
    img_dir = tmp_path / "images"
    img_dir.mkdir(exist_ok=True)
    images = images or [{"id": 7, "file_name": "a.png", "height": H, "width": W},
                        {"id": 9, "file_name": "b.png", "height": H, "width": W}]
    for im in images:
        Image.fromarray(np.full((H, W, 3), 128, np.uint8)).save(img_dir / im["file_name"])
    categories = categories or [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}]
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": categories}))
    return ann


def test_coco_polygons_rle_and_crowd(tmp_path):
    H, W = 20, 30
    rle_mask = np.zeros((H, W), np.uint8)
    rle_mask[2:6, 3:9] = 1
    compressed = mask_utils.encode(np.asfortranarray(rle_mask))
    compressed["counts"] = compressed["counts"].decode()
    anns = [
        {"id": 1, "image_id": 7, "category_id": 5, "bbox": [10, 10, 10, 5], "iscrowd": 0,
         "segmentation": [[10, 10, 20, 10, 20, 15, 10, 15]]},  # polygon
        {"id": 2, "image_id": 7, "category_id": 2, "bbox": [3, 2, 6, 4], "iscrowd": 0,
         "segmentation": compressed},  # compressed RLE
        {"id": 3, "image_id": 7, "category_id": 2, "bbox": [0, 0, 2, 2], "iscrowd": 1,
         "segmentation": {"size": [H, W], "counts": [0, 2, 18, 2, 578]}},  # uncompressed RLE
    ]
    ann = _write_coco(tmp_path, anns)
    ds = CocoDataset(ann, tmp_path / "images")
    # category ids 2 and 5 -> contiguous labels 1 and 2, sorted by id, names kept
    assert ds.class_names == ["background", "dog", "cat"]
    assert len(ds) == 2  # image 9 has no annotation and is kept as a negative
    image, target = ds[0]
    assert target["image_id"] == 7
    assert target["labels"].tolist() == [2, 1, 1]
    assert target["iscrowd"].tolist() == [0, 0, 1]
    assert target["boxes"][0].tolist() == [10, 10, 20, 15]
    assert torch.equal(target["masks"][1], torch.from_numpy(rle_mask))
    assert target["masks"][2].sum() == 4 and target["masks"][2][:2, :2].all()
    assert target["masks"][0][12, 15] == 1 and target["masks"][0][5, 5] == 0
    _, negative = ds[1]
    assert negative["boxes"].shape == (0, 4) and negative["masks"].shape == (0, H, W)
    # training drops crowd regions; evaluation keeps them
    train = ds.subset([0], keep_crowd=False)
    assert train[0][1]["iscrowd"].tolist() == [0, 0]


def test_zero_size_boxes_are_dropped_counted_and_warned_once(tmp_path):
    anns = [{"id": i, "image_id": 7, "category_id": 5, "bbox": [1, 1, w, h]}
            for i, (w, h) in enumerate([(4, 4), (0, 3), (3, -1), (2, 2)], 1)]
    ann = _write_coco(tmp_path, anns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = CocoDataset(ann, tmp_path / "images")
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "dropped 2 annotation" in messages[0] and "ann.json" in messages[0]
    assert ds.num_dropped == 2 and len(ds[0][1]["boxes"]) == 2


@pytest.mark.parametrize("content, problem", [
    ('{"images": [', "malformed JSON"),
    ('[1, 2]', "found a JSON list"),
    ('{"images": []}', "missing the list 'annotations'"),
])
def test_malformed_json_is_a_clear_error(tmp_path, content, problem):
    ann = tmp_path / "bad.json"
    ann.write_text(content)
    with pytest.raises(DatasetError) as e:
        CocoDataset(ann, tmp_path)
    assert "bad.json" in str(e.value) and problem in str(e.value)


def test_file_name_escaping_the_image_folder_is_refused(tmp_path):
    images = [{"id": 1, "file_name": "../secret.png", "height": 4, "width": 4}]
    (tmp_path / "images").mkdir()
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({"images": images, "annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match=r"ann\.json.*'\.\./secret\.png'.*outside the image folder"):
        CocoDataset(ann, tmp_path / "images")


def test_missing_and_unreadable_images_name_the_file(tmp_path):
    ann = _write_coco(tmp_path, [])
    (tmp_path / "images" / "a.png").unlink()
    (tmp_path / "images" / "b.png").write_bytes(b"not a png")
    ds = CocoDataset(ann, tmp_path / "images")
    with pytest.raises(DatasetError, match=r"a\.png: image file not found"):
        ds[0]
    with pytest.raises(DatasetError, match=r"b\.png: cannot read the image"):
        ds[1]


def test_mask_size_mismatch_names_the_file(tmp_path):
    wrong = mask_utils.encode(np.asfortranarray(np.ones((10, 10), np.uint8)))
    wrong["counts"] = wrong["counts"].decode()
    ann = _write_coco(tmp_path, [{"id": 1, "image_id": 7, "category_id": 5, "bbox": [0, 0, 3, 3],
                                  "segmentation": wrong}])
    with pytest.raises(DatasetError, match=r"a\.png: the mask of annotation 1 is 10x10, the image is 30x20"):
        CocoDataset(ann, tmp_path / "images")[0]


def test_declared_image_size_must_match_the_file(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 99, "width": 30}]
    ann = _write_coco(tmp_path, [], images=images)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    with pytest.raises(DatasetError, match=r"a\.png: the annotations .* say 30x99, the image is 30x20"):
        CocoDataset(ann, tmp_path / "images")[0]


def test_unknown_category_and_image_are_errors(tmp_path):
    ann = _write_coco(tmp_path, [{"id": 4, "image_id": 7, "category_id": 99, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(DatasetError, match="annotation 4 has category_id 99"):
        CocoDataset(ann, tmp_path / "images")
    ann = _write_coco(tmp_path, [{"id": 4, "image_id": 1234, "category_id": 5, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(DatasetError, match="refers to image_id 1234"):
        CocoDataset(ann, tmp_path / "images")


# ---------------------------------------------------------------------------------------------
# Penn-Fudan
# ---------------------------------------------------------------------------------------------

def test_pennfudan_layout(pennfudan):
    ds = PennFudanDataset(pennfudan)
    assert len(ds) == 170 and ds.class_names == ["background", "person"]
    n_instances = 0
    for i in (0, 1, 169):
        image, target = ds[i]
        n = len(target["boxes"])
        n_instances += n
        assert n >= 1 and target["masks"].shape == (n, *image.shape[1:])
        assert (target["labels"] == 1).all()
        assert (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()
    train, val = load_dataset(f"pennfudan:{pennfudan}")
    assert (len(train), len(val)) == (136, 34)
    assert set(train.indices).isdisjoint(val.indices)


def test_pennfudan_bad_layout_and_mismatched_mask(tmp_path, pennfudan):
    with pytest.raises(DatasetError, match="PNGImages: folder not found"):
        PennFudanDataset(tmp_path)
    for sub in ("PNGImages", "PedMasks"):
        (tmp_path / sub).mkdir()
    shutil.copy(pennfudan / "PNGImages" / "FudanPed00001.png", tmp_path / "PNGImages")
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "PedMasks" / "FudanPed00001_mask.png")
    with pytest.raises(DatasetError, match=r"FudanPed00001_mask\.png: mask is 5x5, image FudanPed00001\.png is"):
        PennFudanDataset(tmp_path)[0]


# ---------------------------------------------------------------------------------------------
# split rule, specs, transforms
# ---------------------------------------------------------------------------------------------

def test_split_rule_is_every_fifth_sorted_image():
    train, val = split_indices(12)
    assert val == [4, 9] and train == [0, 1, 2, 3, 5, 6, 7, 8, 10, 11]
    assert split_indices(170)[1][:3] == [4, 9, 14] and len(split_indices(170)[1]) == 34


def test_load_dataset_for_coco_applies_the_split(tmp_path):
    images = [{"id": i, "file_name": f"{i:02d}.png", "height": 20, "width": 30} for i in range(10)]
    ann = _write_coco(tmp_path, [], images=images)
    train, val = load_dataset(f"coco:{ann}")  # images/ beside the JSON is found
    assert len(train) == 8 and [val.images[i]["file_name"] for i in val.indices] == ["04.png", "09.png"]
    train2, _ = load_dataset(f"coco:{ann}:{tmp_path / 'images'}")
    assert len(train2) == 8


def test_load_dataset_synthetic(data_root, tiny_synthetic):
    train, val = load_dataset("synthetic", data_root, synthetic=TINY)
    assert (len(train), len(val)) == (TINY.n_train, TINY.n_val)
    assert train.num_classes == 3


@pytest.mark.parametrize("spec", ["voc:x", "coco", "pennfudan", "synthetics"])
def test_bad_data_spec_is_a_clear_error(spec):
    with pytest.raises(DatasetError, match="expected 'synthetic'"):
        parse_spec(spec)


def _item():
    image = torch.rand(3, 40, 60)
    masks = torch.zeros(2, 40, 60, dtype=torch.uint8)
    masks[0, 10:20, 5:25] = 1
    masks[1, 0:40, 50:60] = 1
    target = {"boxes": torch.tensor([[5., 10., 25., 20.], [50., 0., 60., 40.]]),
              "labels": torch.tensor([1, 2]), "masks": masks, "area": masks.flatten(1).sum(1).float(),
              "iscrowd": torch.zeros(2, dtype=torch.int64), "image_id": 1}
    return image, target


def test_resize_keeps_boxes_and_masks_consistent():
    image, target = _item()
    image2, t2 = Resize(120)(image, target)
    assert image2.shape == (3, 80, 120)
    assert t2["boxes"].tolist() == [[10, 20, 50, 40], [100, 0, 120, 80]]
    for box, mask in zip(t2["boxes"], t2["masks"]):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box.tolist()
    assert t2["area"].tolist() == [800, 1600]
    assert target["boxes"][0].tolist() == [5, 10, 25, 20], "the input target must not change"


def test_horizontal_flip_mirrors_boxes_and_masks():
    image, target = _item()
    flipped, t2 = HorizontalFlip(p=1.0)(image, target)
    assert torch.equal(flipped, image.flip(-1))
    assert t2["boxes"].tolist() == [[35, 10, 55, 20], [0, 0, 10, 40]]
    ys, xs = torch.nonzero(t2["masks"][0], as_tuple=True)
    assert (xs.min().item(), xs.max().item() + 1) == (35, 55)
    same, t3 = HorizontalFlip(p=0.0)(image, target)
    assert torch.equal(same, image) and torch.equal(t3["boxes"], target["boxes"])
    # with a seed, the random flips repeat
    torch.manual_seed(0)
    a = [HorizontalFlip()(image, target)[1]["boxes"][0, 0].item() for _ in range(8)]
    torch.manual_seed(0)
    b = [HorizontalFlip()(image, target)[1]["boxes"][0, 0].item() for _ in range(8)]
    assert a == b and len(set(a)) == 2


def test_compose_and_empty_targets():
    image = torch.rand(3, 10, 20)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros(0, 10, 20, dtype=torch.uint8), "area": torch.zeros(0),
              "iscrowd": torch.zeros(0, dtype=torch.int64), "image_id": 3}
    image2, t2 = Compose([Resize(40), HorizontalFlip(1.0)])(image, target)
    assert image2.shape == (3, 20, 40) and t2["masks"].shape == (0, 20, 40)


# ---------------------------------------------------------------------------------------------
# a COCO training file with its own validation file (--data ... --val-data ...)
# ---------------------------------------------------------------------------------------------

def _coco_pair(tmp_path, val_categories=None):
    """COCO's layout: annotations/instances_{train,val}.json, images in train/ and val/."""
    (tmp_path / "annotations").mkdir()
    for split, n in (("train", 6), ("val", 3)):
        folder = tmp_path / split
        folder.mkdir()
        images = [{"id": i, "file_name": f"{split}{i}.png", "height": 20, "width": 30}
                  for i in range(n)]
        for im in images:
            Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / im["file_name"])
        cats = val_categories if split == "val" and val_categories else \
            [{"id": 5, "name": "cat"}, {"id": 2, "name": "dog"}]
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "categories": cats,
             "annotations": [{"id": 1, "image_id": 0, "category_id": 5, "bbox": [1, 1, 5, 5]}]}))
    return tmp_path / "annotations" / "instances_train.json", \
        tmp_path / "annotations" / "instances_val.json"


def test_a_validation_file_gives_the_validation_set_and_all_training_images(tmp_path):
    train_json, val_json = _coco_pair(tmp_path)
    # the image folders are found in COCO's layout: annotations/instances_X.json -> X/
    train, val = load_dataset(f"coco:{train_json}", val_spec=f"coco:{val_json}")
    assert len(train) == 6 and len(val) == 3  # no split: every training image trains
    assert val.image_path(0).parent == tmp_path / "val"
    assert train.class_names == val.class_names == ["background", "dog", "cat"]
    assert val[0][1]["labels"].tolist() == [2]  # cat: id 5, the second category by id
    # an explicit image folder still wins
    _, val2 = load_dataset(f"coco:{train_json}", val_spec=f"coco:{val_json}:{tmp_path / 'val'}")
    assert len(val2) == 3


@pytest.mark.parametrize("categories, problem", [
    ([{"id": 5, "name": "cat"}], "only in the training file: dog (id 2)"),
    ([{"id": 5, "name": "cat"}, {"id": 3, "name": "dog"}], "only in the validation file: dog (id 3)"),
    ([{"id": 5, "name": "cat"}, {"id": 2, "name": "hound"}], "hound (id 2)"),
])
def test_a_validation_file_with_other_categories_is_refused(tmp_path, categories, problem):
    train_json, val_json = _coco_pair(tmp_path, val_categories=categories)
    with pytest.raises(DatasetError) as e:
        load_dataset(f"coco:{train_json}", val_spec=f"coco:{val_json}")
    message = str(e.value)
    assert str(val_json) in message and str(train_json) in message and problem in message


def test_a_validation_file_needs_a_coco_training_file(tmp_path, data_root):
    _, val_json = _coco_pair(tmp_path)
    with pytest.raises(DatasetError, match="come with their own split"):
        load_dataset("synthetic", data_root, synthetic=TINY, val_spec=f"coco:{val_json}")
    with pytest.raises(DatasetError, match="expected 'synthetic'"):
        load_dataset(f"coco:{val_json}", val_spec="voc:x")
