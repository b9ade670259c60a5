"""``python -m stages.predict``: every trained stage on the user's own photos.

Photos of every kind (RGB, grey JPEG, RGBA, 16-bit, EXIF-rotated, palette) are read upright in 8-bit
RGB; each run sees them at the size it trained at and its detections come back in the photo's
pixels (a worked example with a stub model); a folder gives one figure per photo and a
detections.json that pycocotools reads; an unreadable file is skipped and counted; a missing run
names the command that trains it; a run of other classes is named.

The runs: Faster and Mask R-CNN trained for a step or two (conftest's ``trained_runs``); R-CNN and
Fast R-CNN built by their stages' builders on the tiny CNN and saved as their commands save them,
untrained (their training takes minutes, not what is tested here: loading and predicting).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import nn

from stages import predict as predict_module
from stages.figures.draw import draw_detections, figure_grid
from stages.predict import detect, main, model_input, panel_title, predict, read_photo
from stages.training.checkpoint import save_checkpoint
from stages.trained_run import LoadedRun, command_for

CLASSES = ["background", "circle", "square", "triangle"]  # the tiny synthetic set's


def copy_run(src: Path, dst: Path, **changes) -> Path:
    """A copy of a run's checkpoint with some of its fields replaced (``config`` entries are
    merged), as another training would have written it."""
    state = torch.load(src / "checkpoint.pt", weights_only=True)
    config = {**state["config"], **changes.pop("config", {})}
    state.update(changes, config=config)
    dst.mkdir(parents=True, exist_ok=True)
    torch.save(state, dst / "checkpoint.pt")
    return dst


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory, trained_runs, data_root) -> Path:
    """runs/<stage> for all four stages. Mask R-CNN's copy says it trained at 64 px on the long
    side, so that photos are resized for it and its detections mapped back."""
    from stages.fast_rcnn.config import FastRCNNConfig
    from stages.fast_rcnn.model import build_fast_rcnn
    from stages.rcnn.config import RCNNConfig
    from stages.rcnn.model import RCNN, build_region_cnn
    from stages.rcnn.proposers import make_proposer
    from stages.rcnn.svm import ClassSVMs
    from stages.selective_search import CACHE_DIR, ProposalCache, SelectiveSearchConfig

    runs = tmp_path_factory.mktemp("four_runs")
    torch.manual_seed(0)
    K = len(CLASSES) - 1
    tiny = {"backbone": "tiny", "pretrained": "none"}
    # R-CNN as python -m stages.rcnn saves it once its SVMs are trained (no box regressors)
    cfg = RCNNConfig(**tiny, bbox_reg=False, warp_size=56)  # the smallest a 7 x 7 pool5 allows
    cnn = build_region_cnn(cfg, K)
    svms = ClassSVMs(torch.randn(K, cfg.fc_dim) * 0.1, torch.zeros(K), 1.0)
    model = RCNN(cfg, make_proposer(cfg), cnn, svms)
    save_checkpoint(runs / "rcnn" / "checkpoint.pt", stage="rcnn", class_names=CLASSES,
                    config={**dataclasses.asdict(cfg), "long_side": None}, model=cnn,
                    extra={"phases_done": ["cnn", "svm_bbox"], **model.extra_tensors()})
    # Fast R-CNN as python -m stages.fast_rcnn saves it: its config holds the selective-search flags
    cfg, ss = FastRCNNConfig(**tiny), SelectiveSearchConfig()
    model = build_fast_rcnn(cfg, K, ProposalCache(Path(data_root) / CACHE_DIR, ss))
    save_checkpoint(runs / "fast_rcnn" / "checkpoint.pt", stage="fast_rcnn", class_names=CLASSES,
                    config={**dataclasses.asdict(cfg), **dataclasses.asdict(ss), "long_side": None},
                    model=model, step=1)
    shutil.copytree(trained_runs / "faster_rcnn", runs / "faster_rcnn")
    copy_run(trained_runs / "mask_rcnn", runs / "mask_rcnn", config={"long_side": 64})
    return runs


@pytest.fixture(scope="module")
def photos(tmp_path_factory, tiny_synthetic) -> Path:
    """A folder of one picture of the tiny set's shapes in four kinds of file, each its own size."""
    folder = tmp_path_factory.mktemp("photos")
    shapes = Image.open(tiny_synthetic / "images" / "train_000004.png").convert("RGB")
    shapes.resize((200, 150)).save(folder / "rgb.png")
    shapes.resize((128, 96)).convert("L").save(folder / "grey.jpg")
    rgba = shapes.resize((96, 128)).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    grey = np.asarray(shapes.resize((160, 120)).convert("L"), np.uint16)
    Image.fromarray(1000 + grey * 100).save(folder / "deep.png")  # 16-bit, 1000..26500
    (folder / "notes.txt").write_text("not an image, and not listed: its suffix is not one")
    return folder


# ------------------------------------------------------------------------------------------------
# Reading photos
# ------------------------------------------------------------------------------------------------

def test_read_photo_gives_upright_8_bit_rgb_for_every_kind(tmp_path):
    # 16-bit: stretched from its darkest to its brightest value; convert("RGB") clips it to white
    deep = np.array([[1000, 2000], [3000, 41000]], np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")  # uint16: mode I;16
    assert Image.open(tmp_path / "deep.png").convert("RGB").getextrema()[0] == (255, 255)
    photo = read_photo(tmp_path / "deep.png")
    assert photo.dtype == np.uint8 and photo.shape == (2, 2, 3)
    assert photo[..., 0].tolist() == [[0, 6], [13, 255]]  # (v - 1000) / 40000 * 255, rounded
    assert (photo[..., 0] == photo[..., 2]).all()  # grey: three equal channels
    # EXIF orientation 6: stored 40 wide and 20 high, shown rotated 90 degrees clockwise
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :20] = 255  # the left half white: after the rotation, the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    upright = read_photo(tmp_path / "phone.jpg")
    assert upright.shape == (40, 20, 3)
    assert upright[:18].mean() > 200 and upright[22:].mean() < 50
    # palette with a transparent colour, and grey with alpha: the colours, the alpha dropped
    palette = Image.new("P", (4, 3))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.putpixel((0, 0), 1)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png")
    photo = read_photo(tmp_path / "palette.png")
    assert photo.shape == (3, 4, 3) and photo[0, 0].tolist() == [200, 100, 50]
    assert photo[1, 1].tolist() == [10, 20, 30]
    Image.new("LA", (5, 2), (90, 0)).save(tmp_path / "la.png")
    assert read_photo(tmp_path / "la.png").tolist() == [[[90, 90, 90]] * 5] * 2


def test_model_input_is_the_resize_the_run_trained_with():
    photo = np.zeros((150, 200, 3), np.uint8)
    assert model_input(photo, 64).shape == (3, 48, 64)  # the longer side to 64, aspect kept
    assert model_input(photo, None).shape == (3, 150, 200)  # None: as it is


class FixedDetector(nn.Module):
    """A stand-in model: one box, one mask and a cached proposer's timing, whatever the image."""

    def forward(self, images):
        (image,) = images
        h, w = image.shape[-2:]
        masks = torch.zeros(2, 1, h, w)
        masks[0, 0, 12:24, 16:32] = 1.0  # the first box, filled
        return [{"boxes": torch.tensor([[16.0, 12.0, 32.0, 24.0], [0.0, 0.0, 8.0, 8.0]]),
                 "labels": torch.tensor([2, 1]), "scores": torch.tensor([0.9, 0.2]),
                 "masks": masks, "num_proposals": 57,
                 "timing": {"proposals": 0.5, "cache_read": 0.0, "heads": 0.0}}]


def test_detections_are_mapped_back_to_the_photo_and_the_cached_proposals_charged():
    run = LoadedRun("mask_rcnn", FixedDetector(), None, CLASSES, 64, "Mask R-CNN", "RPN",
                    Path("runs/mask_rcnn/checkpoint.pt"), "1 steps, 0 s of training")
    r = detect(run, np.zeros((150, 200, 3), np.uint8), score_thresh=0.5)
    assert r.input_size == (48, 64)  # what the model saw
    # x * 200 / 64 = x * 3.125, y * 150 / 48 = y * 3.125
    torch.testing.assert_close(r.boxes, torch.tensor([[50.0, 37.5, 100.0, 75.0]]))
    assert r.labels.tolist() == [2] and r.num_proposals == 57  # the 0.2 detection is below 0.5
    masks = r.masks_at((150, 200))
    assert masks.shape == (1, 150, 200)
    ys, xs = torch.nonzero(masks[0], as_tuple=True)
    # the box's pixels; row 37 is half inside (y1 = 37.5): bilinearly 0.5, counted in
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (50, 100, 37, 75)
    # the proposals read from a cache are charged the 500 ms their computation took
    assert r.ms_proposals == 500.0 and 0 <= r.ms_network < 500
    title = panel_title(r)
    assert title.splitlines()[0] == "Mask R-CNN: 1 detection"
    assert "57 RPN proposals: 500 ms" in title and "on 64 x 48 px" in title


# ------------------------------------------------------------------------------------------------
# The command on a folder
# ------------------------------------------------------------------------------------------------

def test_a_folder_of_photos_gives_a_figure_each_and_coco_results(photos, four_runs, data_root,
                                                                  tmp_path, capsys):
    out = tmp_path / "predictions"
    results = main([str(photos), "--runs", str(four_runs), "--out", str(out), "--device", "cpu",
                    "--score-thresh", "0.05", "--data-root", str(data_root), "--dpi", "60"])
    names = ["deep", "grey", "rgb", "rgba"]  # sorted; notes.txt is not an image
    assert [r.path.stem for r in results] == names
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.png" for n in names]
                                                           + ["detections.json"])
    for name in names:
        pixels = imread(out / f"{name}.png")
        H, W = pixels.shape[:2]  # four panels, 2 x 2, a picture
        assert H > 450 and W > 500 and pixels[..., :3].std() > 0.05
    # 16-bit: read over its real range, not clipped to white
    deep = read_photo(photos / "deep.png")
    assert deep.min() == 0 and deep.max() == 255
    stages = ["rcnn", "fast_rcnn", "faster_rcnn", "mask_rcnn"]
    for r in results:
        assert [s.stage for s in r.stages] == stages  # the papers' order
        for s in r.stages:
            assert isinstance(s.num_proposals, int) and s.num_proposals > 0
            assert s.ms_proposals > 0 and s.ms_network > 0
    assert results[2].stages[3].input_size == (48, 64)  # rgb.png, 200 x 150, for the 64-px run
    assert results[2].stages[2].input_size == (150, 200)  # the run trained on images as they are

    printed = capsys.readouterr().out
    assert "4 images done" in printed
    for title in ("R-CNN", "Fast R-CNN", "Faster R-CNN", "Mask R-CNN"):
        assert f"{title} " in printed.splitlines()[-1]  # its mean ms per image, on the last line

    entries = json.loads((out / "detections.json").read_text())
    assert {e["stage"] for e in entries} == set(stages)  # at 0.05 even untrained runs find some
    sizes = {r.image_id: r.size for r in results}
    for e in entries:
        assert {"image_id", "category_id", "bbox", "score", "file_name", "stage",
                "category_name"} <= set(e)
        assert e["category_name"] == CLASSES[e["category_id"]] and e["score"] >= 0.05
        H, W = sizes[e["image_id"]]
        x, y, w, h = e["bbox"]
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= W + 0.01 and y + h <= H + 0.01
        assert ("segmentation" in e) == (e["stage"] == "mask_rcnn")
        if "segmentation" in e:
            assert e["segmentation"]["size"] == [H, W]  # the photo's pixels
            assert mask_utils.decode(e["segmentation"]).shape == (H, W)
    # what pycocotools' tools do with a results file: load it against the images' ground truth
    gt = COCO()
    gt.dataset = {"images": [{"id": r.image_id, "height": r.size[0], "width": r.size[1],
                              "file_name": str(r.path)} for r in results],
                  "annotations": [], "categories": [{"id": k, "name": n}
                                                    for k, n in enumerate(CLASSES) if k]}
    gt.createIndex()
    loaded = gt.loadRes(str(out / "detections.json"))
    assert len(loaded.getAnnIds()) == len(entries)


def test_an_unreadable_image_is_skipped_and_counted_and_the_others_done(photos, trained_runs,
                                                                        tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(photos / "rgb.png", folder / "good.png")
    (folder / "bad.jpg").write_bytes(b"this is not a JPEG")
    (folder / "cut.png").write_bytes((photos / "rgb.png").read_bytes()[:200])  # truncated
    out = tmp_path / "out"
    results = predict(folder, trained_runs, ["faster_rcnn"], device="cpu", out=out)
    assert [r.path.name for r in results] == ["good.png"]
    assert sorted(p.name for p in out.iterdir()) == ["detections.json", "good.png"]
    printed = capsys.readouterr().out
    assert f"skipped {folder / 'bad.jpg'}: cannot read the image" in printed
    assert f"skipped {folder / 'cut.png'}: cannot read the image" in printed
    assert "skipped 2 unreadable images" in printed and "1 image done" in printed


def test_a_missing_run_names_the_command_that_trains_it(photos, trained_runs, tmp_path):
    empty = tmp_path / "no_runs"
    with pytest.raises(SystemExit) as stop:
        main([str(photos / "rgb.png"), "--runs", str(empty), "--stages", "rcnn", "faster_rcnn"])
    assert str(stop.value).splitlines() == [
        f"error: no trained run at {empty / 'rcnn' / 'checkpoint.pt'}: run python -m stages.rcnn "
        f"--out {empty / 'rcnn'}",
        f"error: no trained run at {empty / 'faster_rcnn' / 'checkpoint.pt'}: run python -m "
        f"stages.faster_rcnn --out {empty / 'faster_rcnn'}"]
    assert command_for(Path("runs/faster_rcnn")) == "python -m stages.faster_rcnn"  # the default
    with pytest.raises(SystemExit) as stop:  # no --stages, and no run at all: train them all
        main([str(photos / "rgb.png"), "--runs", str(empty)])
    assert "python -m stages.compare" in str(stop.value)
    with pytest.raises(SystemExit) as stop:  # one of two named: still refused, naming it
        main([str(photos / "rgb.png"), "--runs", str(trained_runs), "--stages", "rcnn",
              "mask_rcnn"])
    assert str(stop.value).count("error:") == 1 and "stages.rcnn --out" in str(stop.value)


def test_a_run_trained_on_other_classes_is_named(photos, trained_runs, tmp_path, capsys):
    runs = tmp_path / "runs"
    others = ["background", "cat", "dog", "bird"]  # as many classes: its weights fit
    copy_run(trained_runs / "faster_rcnn", runs / "faster_rcnn", class_names=others)
    shutil.copytree(trained_runs / "mask_rcnn", runs / "mask_rcnn")
    torch.manual_seed(0)
    results = predict(photos / "rgb.png", runs, device="cpu", score_thresh=0.0,
                      expect_classes=CLASSES[1:])
    named = [line for line in capsys.readouterr().out.splitlines() if "trained on classes" in line]
    assert named == [f"[predict] {runs / 'faster_rcnn' / 'checkpoint.pt'} was trained on classes "
                     f"['cat', 'dog', 'bird'], not ['circle', 'square', 'triangle']: its panel "
                     f"names its own classes"]
    faster, mask = results[0].stages
    assert faster.class_names == others and mask.class_names == CLASSES  # each draws its own
    main([str(photos / "rgb.png"), "--runs", str(runs), "--out", str(tmp_path / "out"),
          "--device", "cpu"])
    warning = [line for line in capsys.readouterr().out.splitlines() if "different classes" in line]
    assert warning == ["[predict] warning: the runs were trained on different classes: faster_rcnn "
                       "['cat', 'dog', 'bird']; mask_rcnn ['circle', 'square', 'triangle']; each "
                       "panel names its own"]


# ------------------------------------------------------------------------------------------------
# Drawing, and the command line
# ------------------------------------------------------------------------------------------------

def test_instance_colours_give_each_detection_its_own_colour():
    boxes = torch.tensor([[2.0, 2.0, 10.0, 10.0], [12.0, 2.0, 20.0, 10.0], [2, 12, 10, 20]])
    masks = torch.zeros(3, 24, 24)
    masks[0, 2:10, 2:10] = masks[1, 2:10, 12:20] = 1
    edge = {}
    for instances in (False, True):
        fig, (ax,) = figure_grid(1)
        draw_detections(ax, torch.zeros(3, 24, 24), boxes, torch.tensor([1, 1, 1]),
                        torch.tensor([0.9, 0.8, 0.1]), masks, CLASSES, score_threshold=0.5,
                        instance_colours=instances)
        edge[instances] = [p.get_edgecolor() for p in ax.patches]  # the two boxes drawn
        overlay = ax.images[-1].get_array()  # (H, W, RGBA) of the masks
        colours = {tuple(np.round(overlay[5, 5, :3], 3)), tuple(np.round(overlay[5, 15, :3], 3))}
        assert len(colours) == (2 if instances else 1)
    assert len(edge[False]) == len(edge[True]) == 2
    assert edge[False][0] == edge[False][1]  # one class, one colour
    assert edge[True][0] != edge[True][1]  # one colour each


def test_help_describes_every_flag(capsys):
    parser = predict_module.build_parser()
    assert parser.prog == "python -m stages.predict"
    text = parser.format_help()
    for action in parser._actions:
        assert action.help, action.dest
    for flag in ("--runs", "--stages", "--out", "--score-thresh", "--device", "--data-root"):
        assert flag in text
    assert "python -m stages.predict photos/ --stages faster_rcnn mask_rcnn" in text  # an example
    with pytest.raises(SystemExit) as stop:
        main(["x.png", "--stages", "yolo"])
    assert stop.value.code == 2 and "invalid choice" in capsys.readouterr().err
