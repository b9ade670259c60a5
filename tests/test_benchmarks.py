"""The benchmark suite: ``benchmarks/run_all.py`` writes its report, and ``bench_peers`` judges a pair.

run_all runs in its quick mode on the tiny synthetic set against an empty runs folder: the
operator and proposal sections measure, the sections that need trained runs say which to train.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
from pathlib import Path

import pytest

from stages.evaluation import Result

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def bench(name: str):
    """``benchmarks/<name>.py`` as a module (the folder is scripts, not a package)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


@pytest.fixture
def data_flags(tiny_synthetic, data_root):
    data = f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"
    return ["--data", data, "--data-root", str(data_root)]


def test_run_all_quick_writes_every_section_and_says_what_to_train(data_flags, tmp_path):
    run_all = bench("run_all")
    runs, out = tmp_path / "runs", tmp_path / "report" / "report.md"
    runs.mkdir()
    report = run_all.main(["--quick", "--runs", str(runs), "--out", str(out), *data_flags])
    assert out.read_text() == report
    assert [p.name for p in out.parent.iterdir()] == ["report.md"]  # atomic: no temporary left
    header = report.split("\n## ")[0]
    for fact in ("date: ", "machine: ", "torch ", "threads: "):
        assert fact in header, fact
    positions = [report.index(h + "\n") for h in run_all.HEADINGS.values()]
    assert positions == sorted(positions)  # every section, in order
    sections = dict(zip(run_all.HEADINGS, report.split("\n## ")[1:]))
    assert "| roi_pool |" in sections["ops"] and "| roi_align |" in sections["ops"]
    assert "| nms |" in sections["ops"] and "**failed**" not in report
    assert "selective_search" in sections["proposals"] and "sliding_window" in sections["proposals"]
    rpn = sections["proposals"].split("### The RPN")[1]
    assert "not run: " in rpn  # no faster_rcnn run (or no script yet): said, not silently left out
    for stage in ("rcnn", "fast_rcnn", "faster_rcnn"):
        assert f"not run: train {stage} first" in sections["stages"], stage
    for name in ("faster_rcnn", "torchvision_faster_rcnn", "torchvision_mask_rcnn"):
        assert f"not run: train {name} first" in sections["peers"], name


def write_run(folder: Path, result: Result, steps: int) -> None:
    folder.mkdir(parents=True)
    result.save(folder / "metrics.json")
    (folder / "losses.json").write_text(json.dumps([{"step": s} for s in range(1, steps + 1)]))


def test_bench_peers_table_and_checks_from_existing_runs(tmp_path, capsys, monkeypatch):
    bench_peers = bench("bench_peers")
    box = {k: 0.0 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")}
    base = Result(stage="", variant="", data="synthetic", box=box, mask=None, train_time_s=180.0,
                  ms_per_image=10.0, ms_proposals=2.0, ms_network=8.0, timing_ms={}, params=1,
                  n_train=400, n_val=100, device="cpu", seed=0)
    # ours: AP 60 at 14 ms; the peer: AP 55 at 10 ms -> AP passes, 14 <= 1.5 x 10 passes
    write_run(tmp_path / "faster_rcnn", dataclasses.replace(
        base, stage="faster_rcnn", box={**box, "AP": 60.0}, ms_per_image=14.0), steps=900)
    write_run(tmp_path / "torchvision_faster_rcnn", dataclasses.replace(
        base, stage="torchvision_faster_rcnn", box={**box, "AP": 55.0}), steps=700)
    # the mask pair: ours 16 ms against 10 ms fails the time check; the peer ran 100 s only
    write_run(tmp_path / "mask_rcnn", dataclasses.replace(
        base, stage="mask_rcnn", box={**box, "AP": 50.0}, mask={**box, "AP": 45.0},
        ms_per_image=16.0), steps=500)
    write_run(tmp_path / "torchvision_mask_rcnn", dataclasses.replace(
        base, stage="torchvision_mask_rcnn", box={**box, "AP": 50.0}, mask={**box, "AP": 46.0},
        train_time_s=100.0), steps=300)

    summary = bench_peers.summarize(tmp_path)
    printed = capsys.readouterr().out
    assert "| Faster R-CNN (ours) | 60.0 |" in printed and "| 900 | 180.0 |" in printed
    assert "| torchvision Mask R-CNN | 50.0 | 0.0 | 0.0 | 46.0 |" in printed
    verdicts = [(c["pair"], c["passed"]) for c in summary["checks"]]
    assert verdicts == [("faster", True), ("faster", True),
                        ("mask", True), ("mask", False), ("mask", False)]  # box AP, mask AP, ms
    assert "ours ms 16.0 <= 1.5x peer ms 10.0 = 15.0: FAIL" in printed
    assert "trained for different times (180 s vs 100 s)" in printed

    (tmp_path / "mask_rcnn" / "metrics.json").unlink()  # stage 4 not built: said so
    monkeypatch.setattr(bench_peers, "stage_built", lambda name: False)
    summary = bench_peers.summarize(tmp_path, ["mask"])
    assert summary["missing"] == ["not run: mask_rcnn skipped, stages.mask_rcnn is not built yet"]
    assert summary["checks"] == []


def test_the_walk_to_the_peers_adds_one_difference_per_row_and_every_flag_parses(monkeypatch):
    """Each stage-3 row keeps the flags of the row above and adds one; every row's command line is
    one its stage's parser accepts (nothing is trained)."""
    walk = bench("walk_to_peer")
    stage3 = [walk.ROWS["ours_faster"]] + [walk.ROWS[name] for name, _, _ in walk.STEPS]  # the walk
    for before, after in zip(stage3, stage3[1:]):
        assert after.flags[:len(before.flags)] == before.flags and len(after.flags) == len(before.flags) + 2
    assert walk.ROWS["ours_mask_walked"].flags == stage3[-1].flags
    # the narrow rows: the walk's choices that cost no test time, all but the fc width (and the RPN's)
    narrow = set(zip(walk.NARROW[::2], walk.NARROW[1::2]))
    walked = set(zip(walk.ROWS["beta19"].flags[::2], walk.ROWS["beta19"].flags[1::2]))
    assert narrow == walked - {("--fc-dim", "1024")}
    assert walk.ROWS["faster_narrow"].flags == walk.ROWS["mask_narrow"].flags == walk.NARROW
    from stages import run
    from stages.faster_rcnn import FasterRCNNConfig
    from stages.mask_rcnn import MaskRCNNConfig
    parsers = {"faster_rcnn": run.build_parser(None, FasterRCNNConfig, prog="faster"),
               "mask_rcnn": run.build_parser(None, MaskRCNNConfig, prog="mask")}
    for row in walk.walk_rows():
        if row.command in parsers:
            args = parsers[row.command].parse_args(list(row.flags))
            for flag, value in zip(row.flags[::2], row.flags[1::2]):
                assert getattr(args, flag[2:].replace("-", "_")) == pytest.approx(float(value))
