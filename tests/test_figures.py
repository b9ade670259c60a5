"""``python -m stages.figures``: every figure that needs no run renders on the tiny synthetic set;
the figures of trained models render from tiny trained runs (Faster R-CNN, Mask R-CNN and a
comparison made from them); a missing or unusable run is a skip line naming the command, not a
crash."""

from __future__ import annotations

import pytest
import torch
from matplotlib.image import imread

from stages.figures import gallery as figures
from stages.figures.common import spread

NEEDS_RUN = {spec.name for spec in figures.FIGURES if spec.needs}


def assert_picture(path):
    """A PNG a slide can use: large enough, and not one flat colour."""
    assert path.is_file() and path.suffix == ".png", path
    pixels = imread(path)  # (H, W, 3 or 4) floats in [0, 1]
    H, W = pixels.shape[:2]
    assert H >= 500 and W >= 900, (path.name, H, W)  # ~150 dpi on a 6+ inch-wide figure
    assert pixels[..., :3].std() > 0.05, path.name  # not a single colour
    assert len({tuple(p) for p in pixels[::7, ::7, :3].reshape(-1, 3).round(2)}) > 50, path.name


def test_spread_keeps_the_ends_and_spaces_the_rest_evenly():
    assert spread(torch.arange(10), 4).tolist() == [0, 3, 6, 9]
    assert spread(torch.arange(3), 4).tolist() == [0, 1, 2]  # fewer than n: all of them


def test_without_runs_every_figure_that_needs_none_is_written_and_the_rest_skipped(
        tmp_path, data_args, capsys):
    out = tmp_path / "figures"
    report = figures.main(["--out", str(out), "--runs", str(tmp_path / "no_runs"),
                           "--photo-runs", str(tmp_path / "no_runs" / "pennfudan"), *data_args])
    assert report.failed == {}
    expected = {spec.filename for spec in figures.FIGURES if not spec.needs}
    assert {p.name for p in report.written} == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)  # no temporary files left
    for path in report.written:
        assert_picture(path)
    assert set(report.skipped) == NEEDS_RUN == {"rpn", "fpn", "masks", "mask_path",
                                                "precision_recall", "comparison", "real_photos",
                                                "error_types"}
    printed = capsys.readouterr().out
    for name, command in (("rpn", "python -m stages.faster_rcnn"),
                          ("masks", "python -m stages.mask_rcnn"),
                          ("mask_path", "python -m stages.mask_rcnn"),
                          ("precision_recall", "python -m stages.mask_rcnn"),
                          ("comparison", "python -m stages.compare")):
        assert f"skipped {name}:" in printed and command in report.skipped[name]
        assert f"--out {tmp_path / 'no_runs'}" in report.skipped[name]  # the folder it looked in
    # the real-photo figure names the flags it needs, and how to train runs on photos
    assert "--photo PHOTO --photo-runs" in report.skipped["real_photos"]
    assert "python -m stages.compare --data pennfudan:DIR" in report.skipped["real_photos"]
    # the two figures that use a run if present say what they drew instead
    assert "hard_negatives: no trained run" in printed and "fpn: no trained run" in printed
    assert "detections.json" in report.skipped["error_types"]
    assert "8 skipped" in printed


def test_with_trained_runs_the_run_figures_are_written(tmp_path, trained_runs, data_args,
                                                       tiny_synthetic, capsys):
    out = tmp_path / "figures"
    photo = tiny_synthetic / "images" / "train_000004.png"  # the real-photo figure's "photo"
    report = figures.main(["--out", str(out), "--runs", str(trained_runs), *data_args,
                           "--photo", str(photo), "--photo-runs", str(trained_runs),
                           "--only", *sorted(NEEDS_RUN), "fpn"])
    assert report.failed == {} and report.skipped == {}
    assert [p.name for p in report.written] == ["07_rpn_objectness_and_proposals.png",
                                               "09_fpn_levels.png", "10_predicted_masks.png",
                                               "11_mask_path.png", "12_precision_recall.png",
                                               "13_comparison.png",
                                               "14_real_photos.png",
                                               "15_error_types.png"]  # lecture order
    for path in report.written:
        assert_picture(path)
    printed = capsys.readouterr().out
    assert "untrained" not in printed  # FPN read the trained pyramid
    # each figure names the run it came from
    assert "07_rpn_objectness_and_proposals.png" in printed
    assert report.sources["07_rpn_objectness_and_proposals.png"][0].startswith(
        f"{trained_runs / 'faster_rcnn' / 'checkpoint.pt'} (")
    assert report.sources["10_predicted_masks.png"][0].startswith(
        str(trained_runs / "mask_rcnn" / "checkpoint.pt"))
    assert report.sources["13_comparison.png"] == [f"{trained_runs / 'comparison.json'} (2 rows)"]
    assert report.sources["11_mask_path.png"] == report.sources["10_predicted_masks.png"]
    # the error examples name the runs they came from (the trained runs' detections.json)
    assert all(s.startswith(str(trained_runs)) for s in report.sources["15_error_types.png"])
    assert f"from {trained_runs / 'comparison.json'} (2 rows)" in printed
    assert [source.split(" (")[0] for source in report.sources["14_real_photos.png"]] == [
        str(trained_runs / "faster_rcnn" / "checkpoint.pt"),
        str(trained_runs / "mask_rcnn" / "checkpoint.pt")]  # every run it drew, in stage order


def test_unusable_runs_are_skipped_with_the_reason(tmp_path, trained_runs, data_args):
    runs = tmp_path / "runs"
    (runs / "faster_rcnn").mkdir(parents=True)  # a Mask R-CNN checkpoint where Faster R-CNN's goes
    (runs / "faster_rcnn" / "checkpoint.pt").write_bytes(
        (trained_runs / "mask_rcnn" / "checkpoint.pt").read_bytes())
    (runs / "mask_rcnn").mkdir()
    (runs / "mask_rcnn" / "checkpoint.pt").write_bytes(b"half a file")
    (runs / "comparison.json").write_text("{")  # damaged, beside a good comparison.png: copied
    png = (trained_runs / "comparison.png").read_bytes()
    (runs / "comparison.png").write_bytes(png)
    report = figures.main(["--out", str(tmp_path / "figures"), "--runs", str(runs), *data_args,
                           "--only", "rpn", "masks", "comparison"])
    assert report.failed == {}
    assert "written by stage 'mask_rcnn'" in report.skipped["rpn"]
    assert "not a readable checkpoint" in report.skipped["masks"]
    assert [p.name for p in report.written] == ["13_comparison.png"]
    assert report.written[0].read_bytes() == png


def test_list_names_every_figure_and_only_renders_the_chosen(tmp_path, data_args, capsys):
    figures.main(["--list"])
    listing = capsys.readouterr().out
    for spec in figures.FIGURES:
        assert spec.name in listing and spec.filename in listing
    report = figures.main(["--out", str(tmp_path), "--runs", str(tmp_path / "none"), *data_args,
                           "--only", "anchors"])
    assert [p.name for p in report.written] == ["06_anchors.png"] and not report.skipped
    with pytest.raises(SystemExit):  # argparse: invalid choice
        figures.main(["--only", "no_such_figure"])
