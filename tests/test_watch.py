"""Training you can watch, and the runs in one place: ``--eval-every`` scores the validation set
while training (the clock paused), every run folder gets ``losses.png``, a COCO train/val pair
trains and evaluates on its own validation file, and the comparison records AP against time."""

from __future__ import annotations

import json
import math
import time

import torch
from PIL import Image

from stages import compare
from stages.training import engine
from stages.data.sources import CocoDataset
from stages.faster_rcnn.__main__ import main as faster_rcnn_main

from test_engine import ToyDetector


def test_evaluation_during_training_is_recorded_and_not_charged_to_the_budget(tiny_synthetic,
                                                                               tmp_path):
    train_set = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")
    calls = []

    def slow_scorer(model):  # stands in for the evaluator: 0.2 s, in eval mode
        calls.append(model.training)
        time.sleep(0.2)
        return {"val_box_AP": 10.0 * len(calls), "val_mask_AP": None}

    model = ToyDetector()
    t0 = time.perf_counter()
    result = engine.train(model, torch.optim.SGD(model.parameters(), lr=0.01), train_set,
                          out_dir=tmp_path, stage="toy", config={}, epochs=None,
                          time_budget_s=0.3, eval_every_s=0.05, evaluate_fn=slow_scorer,
                          progress=False)
    wall = time.perf_counter() - t0
    assert len(calls) >= 2 and not any(calls)  # scored in eval mode, several times
    assert model.training  # and back to training after each
    assert result.train_time_s < 0.3 + 0.2  # the 0.2 s of each evaluation are not training time
    assert wall > result.train_time_s + 0.2 * len(calls) - 0.05
    scored = [r for r in result.history if "val_box_AP" in r]
    assert [r["val_box_AP"] for r in scored] == [10.0 * (i + 1) for i in range(len(calls))]
    assert all("val_mask_AP" not in r for r in scored)  # None: a model without masks
    times = [r["time_s"] for r in scored]
    # one evaluation per 0.05 s of training: at the first step past each multiple of it
    periods = [math.floor(t / 0.05 + 1e-6) for t in times]  # (time_s is rounded to ms)
    assert periods == sorted(set(periods)) and periods[0] >= 1
    saved = json.loads((tmp_path / engine.LOSSES).read_text())
    assert [r for r in saved if "val_box_AP" in r] == scored
    with Image.open(tmp_path / engine.LOSSES_FIGURE) as image:
        assert image.size[0] > 1000  # two panels: the losses, and AP against time


def test_a_coco_train_val_pair_trains_and_is_scored_on_its_own_validation_file(tiny_synthetic,
                                                                              data_root, tmp_path,
                                                                              capsys):
    images = tiny_synthetic / "images"
    result = faster_rcnn_main([
        "--data", f"coco:{tiny_synthetic / 'train.json'}:{images}",
        "--val-data", f"coco:{tiny_synthetic / 'val.json'}:{images}",
        "--data-root", str(data_root), "--out", str(tmp_path), "--backbone", "tiny",
        "--epochs", "2", "--eval-every", "0.001", "--no-progress", "--device", "cpu"])
    printed = capsys.readouterr().out
    # all 8 training images train (no every-5th split), the 4 of val.json are the validation set
    assert (result.n_train, result.n_val) == (8, 4)
    assert "8 train / 4 val images" in printed
    history = json.loads((tmp_path / engine.LOSSES).read_text())
    scored = [r for r in history if "val_box_AP" in r]
    assert scored and all(0 <= r["val_box_AP"] <= 100 for r in scored)
    assert "val_box_AP" in printed  # the progress line, without a progress bar
    assert (tmp_path / "losses.png").is_file() and (tmp_path / "metrics.json").is_file()


def test_the_comparison_keeps_ap_against_training_time(tiny_synthetic, data_root, tmp_path,
                                                       monkeypatch):
    data = f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"
    argv = ["--data", data, "--data-root", str(data_root), "--epochs", "2", "--time-budget", "30",
            "--eval-every", "0.001", "--device", "cpu", "--no-progress"]
    rows = compare.main(argv + ["--stages", "faster_rcnn", "--out", str(tmp_path)])
    curve = rows[0].curve
    assert len(curve) >= 2  # the evaluations while training, then the final result
    assert curve[-1] == (round(rows[0].result.train_time_s, 2), rows[0].result.box["AP"])
    assert [t for t, _ in curve] == sorted(t for t, _ in curve)
    assert (tmp_path / "faster_rcnn" / "losses.png").is_file()
    loaded, _ = compare.load_comparison(tmp_path / "comparison.json")
    assert loaded[0].curve == curve

    # one place for runs: the notebooks' ensure_run reads this very run instead of training
    def must_not_run(stage, run, cfg):
        raise AssertionError("trained again although compare made this run")
    monkeypatch.setattr(compare, "run_stage", must_not_run)
    assert compare.ensure_run("faster_rcnn", tmp_path, argv) == tmp_path / "faster_rcnn"
