"""Drawing helpers produce real pictures, and python -m stages lists the stages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stages import STAGES
from stages.data.sources import CocoDataset
from stages.figures.draw import class_colour, draw_detections, draw_segmentation, figure_grid, preview_grid
from stages.files import save_figure


def test_preview_grid_is_a_valid_png(tiny_synthetic, tmp_path):
    ds = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")
    path = preview_grid(ds, tmp_path / "grid.png", n=4, cols=2)
    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 10, "the grid should not be blank"


def test_detections_draw_boxes_masks_and_captions(tmp_path):
    image = torch.zeros(3, 32, 32)
    masks = torch.zeros(2, 1, 32, 32)
    masks[0, 0, 4:12, 4:12] = 0.9
    masks[1, 0, 20:30, 20:30] = 0.2  # below 0.5: not drawn as mask
    fig, (ax,) = figure_grid(1)
    draw_detections(ax, image, boxes=torch.tensor([[4., 4., 12., 12.], [20., 20., 30., 30.]]),
                    labels=torch.tensor([1, 2]), scores=torch.tensor([0.9, 0.3]), masks=masks,
                    class_names=["background", "circle", "square"], score_threshold=0.5)
    captions = [t.get_text() for t in ax.texts]
    assert captions == ["circle 0.90"], "the low-scoring detection must be hidden"
    assert len(ax.patches) == 1
    overlay = ax.images[-1].get_array()
    assert overlay[8, 8, 3] > 0 and overlay[25, 25, 3] == 0
    save_figure(fig, tmp_path / "d.png")
    assert (tmp_path / "d.png").stat().st_size > 500


def test_class_colours_are_stable_and_distinct():
    assert class_colour(1) == class_colour(11) and len({class_colour(k) for k in range(1, 11)}) == 10


def test_python_m_stages_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "stages"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    for module, _, _ in STAGES:
        assert f"python -m {module}" in out


def test_segmentation_semantic_merges_a_class_and_instances_keep_objects_apart():
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    image = torch.zeros(3, 20, 20)
    masks = torch.zeros(2, 20, 20, dtype=torch.uint8)
    masks[0, 2:8, 2:8] = 1
    masks[1, 10:16, 10:16] = 1  # two objects of one class
    fig = Figure()
    semantic, instance = fig.subplots(1, 2)
    draw_segmentation(semantic, image, masks, torch.tensor([1, 1]), ["bg", "circle"])
    draw_segmentation(instance, image, masks, torch.tensor([1, 1]), ["bg", "circle"], instances=True)
    # the overlay is the last image drawn: one colour for the class, two for the instances
    colours = [{tuple(c) for c in ax.get_images()[-1].get_array().reshape(-1, 4)[:, :3].round(3)}
               for ax in (semantic, instance)]
    assert len(colours[1]) > len(colours[0])
    assert any("circle #" in t.get_text() for t in instance.texts)
