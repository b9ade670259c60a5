"""``python -m stages.compare``: two real stages on the tiny fixture, then reuse, resume, retrain.

One comparison of R-CNN and Fast R-CNN is trained once (seconds: one epoch, a 5-second budget);
every later test works on a copy of its output folder, so each one starts from the same state.
``plan`` (reuse / resume / train) is also checked case by case on hand-made folders. Each stage is
run by ``run_stage`` with typed settings; the tests that must not train replace ``run_stage``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image

from stages import compare, run_stage
from stages.compare import main
from stages.compare_report import generation_ratios
from stages.compare_reuse import plan, write_record
from stages.evaluation import Result
from stages.flags import RunConfig

QUICK = ["--epochs", "1", "--time-budget", "5", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def argv(tiny_synthetic, data_root):
    """compare's flags without --out: R-CNN and Fast R-CNN on the tiny set (7 train / 1 val)."""
    data = f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"
    return ["--stages", "rcnn", "fast_rcnn", "--data", data, "--data-root", str(data_root), *QUICK]


@pytest.fixture(scope="module")
def first(argv, tmp_path_factory):
    """(rows, out folder) of the first comparison: both stages trained."""
    out = tmp_path_factory.mktemp("compare") / "out"
    return main(argv + ["--out", str(out)]), out


@pytest.fixture
def copy(first, tmp_path):
    """A copy of the first comparison's folder (copytree keeps the files' modification times)."""
    return shutil.copytree(first[1], tmp_path / "out")


def mtimes(out):
    return {stage: (out / stage / "checkpoint.pt").stat().st_mtime_ns
            for stage in ("rcnn", "fast_rcnn")}


def test_one_row_per_stage_in_every_table_file(first):
    rows, out = first
    assert [r.entry.name for r in rows] == ["rcnn", "fast_rcnn"]
    assert [r.status for r in rows] == ["trained", "trained"]
    document = json.loads((out / "comparison.json").read_text())
    assert [r["stage"] for r in document["rows"]] == ["R-CNN", "Fast R-CNN"]
    for row in document["rows"]:
        for column in ("test ms/img", "proposals ms", "network ms"):
            assert math.isfinite(row[column]) and row[column] > 0, (row["stage"], column)
        assert row["mask AP"] is None  # neither stage predicts masks
        assert row["proposals ms"] + row["network ms"] == pytest.approx(row["test ms/img"])
        # which rule stopped it: one epoch comes before 5 s on the tiny set (R-CNN's CNN: the
        # 5 s, its fine-tuning epoch being longer), and how many steps that was
        assert row["stopped by"] in ("epochs", "time") and row["steps"] >= 1, row
    fast = document["rows"][1]  # 7 images in batches of 2: its epoch is 4 steps
    assert (fast["steps"] == 4) if fast["stopped by"] == "epochs" else (fast["steps"] < 4)
    assert set(document["results"]) == {"rcnn", "fast_rcnn"}
    for name, result in document["results"].items():
        assert result["stopped_by"] in ("epochs", "time_budget") and result["steps"] >= 1, name
    csv_lines = (out / "comparison.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and csv_lines[0].startswith("stage,proposals,pooling,box AP")
    markdown = (out / "comparison.md").read_text()
    assert "| train s | steps | stopped by |" in markdown
    assert "| R-CNN | selective search |" in markdown and "| Fast R-CNN |" in markdown
    assert "R-CNN / Fast R-CNN: test ms per image" in markdown
    # each stage got the shared settings and its own folder, and recorded them
    record = json.loads((out / "fast_rcnn" / "compare_settings.json").read_text())
    assert record["status"] == "finished" and record["settings"]["time_budget"] == 5.0
    assert record["run"]["out"] == str(out / "fast_rcnn") and record["run"]["time_budget"] == 5.0
    assert RunConfig(**record["run"]).epochs == 1  # a RunConfig, as the stage got it


def test_the_plot_is_a_readable_png(first):
    path = first[1] / "comparison.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        width, height = image.size
        assert width > 800 and height > 300
        assert len(image.getcolors(maxcolors=1 << 20) or []) > 10  # drawn, not blank


def test_a_second_run_reuses_both_stages_without_training(argv, first, copy, capsys, monkeypatch):
    before = mtimes(copy)

    def must_not_run(stage, run, cfg):
        raise AssertionError("a stage was run although its result could be reused")
    monkeypatch.setattr(compare, "run_stage", must_not_run)
    rows = main(argv + ["--out", str(copy)])
    printed = capsys.readouterr().out
    assert [r.status for r in rows] == ["reused", "reused"]
    assert "[compare] stage 2/2: fast_rcnn (Fast R-CNN) ..." in printed
    assert "fast_rcnn: reused" in printed and "2 runs (2 reused)" in printed
    assert mtimes(copy) == before
    assert [r.result.box for r in rows] == [r.result.box for r in first[0]]
    # other settings are another experiment: --seed 1 would train again
    seed_1 = compare.build_parser().parse_args(argv + ["--seed", "1"])
    assert plan(copy / "rcnn", compare.stage_settings(seed_1, compare.STAGES[0]), False) == "train"


def test_retrain_trains_again(argv, copy, capsys):
    before = mtimes(copy)
    time.sleep(0.01)
    rows = main(argv + ["--out", str(copy), "--stages", "fast_rcnn", "--retrain"])
    assert [r.status for r in rows] == ["trained"]
    assert "[fast_rcnn] trained" in capsys.readouterr().out
    assert mtimes(copy)["fast_rcnn"] != before["fast_rcnn"]


def test_an_interrupted_stage_is_resumed(argv, copy, capsys):
    folder = copy / "fast_rcnn"
    record = json.loads((folder / "compare_settings.json").read_text())
    # as if killed during evaluation: the checkpoint written after the run started, no metrics
    record.update(status="running", started_unix=(folder / "checkpoint.pt").stat().st_mtime - 5)
    (folder / "compare_settings.json").write_text(json.dumps(record))
    (folder / "metrics.json").unlink()
    rows = main(argv + ["--out", str(copy), "--stages", "fast_rcnn"])
    printed = capsys.readouterr().out
    assert [r.status for r in rows] == ["resumed"]
    assert "resuming it" in printed and "--resume" in printed and "resumed from" in printed
    assert (folder / "metrics.json").exists()


def test_plan_reuses_resumes_or_trains(tmp_path):
    folder, settings = tmp_path / "stage", {"seed": 0}
    folder.mkdir()
    assert plan(folder, settings, retrain=False) == "train"  # no record
    (folder / "checkpoint.pt").write_bytes(b"weights")
    (folder / "metrics.json").write_text("{}")
    write_record(folder, settings, {}, "finished", started=time.time())
    assert plan(folder, settings, retrain=False) == "reuse"
    assert plan(folder, settings, retrain=True) == "train"
    assert plan(folder, {"seed": 1}, retrain=False) == "train"
    (folder / "metrics.json").unlink()  # finished, then metrics lost: evaluate the checkpoint
    assert plan(folder, settings, retrain=False) == "resume"
    (folder / "metrics.json").write_text('{"another": "run"}')  # the stage run by hand in here
    (folder / "checkpoint.pt").write_bytes(b"other weights")
    assert plan(folder, settings, retrain=False) == "train"
    write_record(folder, settings, {}, "running", started=time.time() + 60)
    assert plan(folder, settings, retrain=False) == "train"  # the checkpoint predates this run
    write_record(folder, settings, {}, "running", started=time.time() - 60)
    assert plan(folder, settings, retrain=False) == "resume"


def test_each_entry_names_a_stage_that_run_stage_runs():
    """``stage`` is what ``run_stage`` runs: our four stages by their own names, the peers by
    theirs, the from-scratch row by stage 4 with one change of its config."""
    for entry in compare.STAGES + compare.PEERS:
        assert entry.stage == entry.name and entry.stage in run_stage.STAGES, entry.name
    assert compare.FROM_SCRATCH.stage == "mask_rcnn"
    cfg = run_stage.default_config("mask_rcnn", **dict(compare.FROM_SCRATCH.changes))
    assert cfg.pretrained == "none" and cfg.input_scale is None  # the data still decides the scale
    # R-CNN reads neither --eval-every nor --checkpoint-every: it gets their defaults
    args = compare.build_parser().parse_args(["--eval-every", "5", "--checkpoint-every", "9"])
    rcnn = compare.stage_run(args, compare.STAGES[0], out="x")
    assert (rcnn.eval_every, rcnn.checkpoint_every) == (None, RunConfig().checkpoint_every)
    fast = compare.stage_run(args, compare.STAGES[1], out="x")
    assert (fast.eval_every, fast.checkpoint_every, fast.out) == (5.0, 9.0, "x")


def test_unknown_stage_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["--stages", "rcnn", "yolo"])
    error = capsys.readouterr().err
    assert "yolo" in error and all(name in error for name in compare.STAGE_NAMES)


def test_an_unwritable_output_folder_fails_before_any_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit, match="cannot write to the output folder"):
        main(["--stages", "rcnn", "--out", str(blocker / "compare")])


def test_peers_are_run_by_run_stage_and_become_rows(argv, first, copy, monkeypatch):
    calls = []

    def fake_run_stage(stage, run, cfg):  # what run_stage does for a peer, in miniature
        calls.append(stage)
        out = copy / stage
        assert run.out == str(out) and isinstance(cfg, run_stage.CONFIGS[stage])
        (out / "checkpoint.pt").write_bytes(b"weights")
        result = dataclasses.replace(first[0][1].result, stage=stage)
        result.save(out / "metrics.json")
        return result
    monkeypatch.setattr(compare, "run_stage", fake_run_stage)  # the two stages are reused
    rows = main(argv + ["--out", str(copy), "--peers"])
    assert calls == ["torchvision_faster_rcnn", "torchvision_mask_rcnn"]
    assert [r.entry.title for r in rows[2:]] == ["torchvision Faster R-CNN",
                                                 "torchvision Mask R-CNN"]
    peer = Result.load(copy / "torchvision_mask_rcnn" / "metrics.json")
    assert peer.stage == "torchvision_mask_rcnn"
    assert len(json.loads((copy / "comparison.json").read_text())["rows"]) == 4


def test_from_scratch_adds_mask_rcnn_from_random_weights_beside_it(argv, first, copy, monkeypatch):
    """--from-scratch: the same Mask R-CNN with --pretrained none, a row of its own, and one
    sentence comparing it with the pre-trained one (not a generation: no speed-up ratio)."""
    calls = {}

    def fake_run_stage(stage, run, cfg):  # what run_stage("mask_rcnn", ...) does, in miniature
        out = Path(run.out)
        calls[out.name] = (stage, cfg)
        (out / "checkpoint.pt").write_bytes(b"weights")
        result = dataclasses.replace(first[0][1].result, stage="mask_rcnn")
        result.save(out / "metrics.json")
        return result

    monkeypatch.setattr(compare, "run_stage", fake_run_stage)
    rows = main(argv[:1] + ["mask_rcnn"] + argv[3:] + ["--out", str(copy), "--from-scratch"])
    assert [r.entry.name for r in rows] == ["mask_rcnn", "mask_rcnn_from_scratch"]
    assert calls["mask_rcnn_from_scratch"][0] == calls["mask_rcnn"][0] == "mask_rcnn"
    scratch, pretrained = calls["mask_rcnn_from_scratch"][1], calls["mask_rcnn"][1]
    assert dataclasses.replace(scratch, pretrained=pretrained.pretrained) == pretrained
    assert scratch.pretrained == "none" and pretrained.pretrained != "none"
    ratios = generation_ratios(rows)
    assert any("Mask R-CNN from ImageNet weights / Mask R-CNN, random init" in line
               and "what pre-training buys" in line for line in ratios)
    assert not any("test ms per image" in line for line in ratios)  # one generation only
    saved, _ = compare.load_comparison(copy / "comparison.json")
    assert [r.entry.name for r in saved] == ["mask_rcnn", "mask_rcnn_from_scratch"]


def test_run_stage_names_every_stage_and_refuses_another():
    assert set(run_stage.STAGES) == set(run_stage.CONFIGS) >= set(compare.STAGE_NAMES)
    with pytest.raises(ValueError, match="unknown stage 'yolo'"):
        run_stage.run_stage("yolo", RunConfig())


def test_a_run_trained_before_a_default_changed_is_not_reused(monkeypatch):
    """The record holds the stage's whole config, as the code builds it: a run of the fc 256 head
    is not the run of today's 1024 head, though no flag differs."""
    from stages.compare_reuse import same_settings

    args = compare.build_parser().parse_args([])
    entry = compare.ENTRIES["fast_rcnn"]
    today = compare.stage_settings(args, entry)
    assert same_settings(json.loads(json.dumps(today)), today)  # as read back from the record
    older = run_stage.default_config  # the code of before: another default

    monkeypatch.setattr(compare, "default_config",
                        lambda stage, **changes: dataclasses.replace(older(stage, **changes), fc_dim=256))
    before = compare.stage_settings(args, entry)
    assert before["config"]["fc_dim"] == 256 and today["config"]["fc_dim"] == 1024
    assert not same_settings(json.loads(json.dumps(before)), today)
