"""Nothing a user made is lost, and a bad flag ends in one line before any work: a rerun into a
trained run's folder is refused, ``--overwrite`` replaces it whole, ``--resume`` with nothing to
resume says so, Ctrl-C and SIGTERM (real signals, to a real child process) leave a checkpoint that
``--resume`` continues, a checkpoint is written every ``--checkpoint-every`` seconds mid-epoch,
output files are readable by others (0644), and under torchrun only rank 0 prints a refusal."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stages.faster_rcnn import FasterRCNNConfig
from stages.faster_rcnn.__main__ import main
from stages.rcnn import RCNNConfig
from stages.mask_rcnn import MaskRCNNConfig
from stages.torchvision.peers import PeerConfig
from stages.selective_search import SelectiveSearchConfig
from stages.rcnn.sliding_windows import SlidingWindowConfig
from stages.training import engine
from stages import run
from stages import flags, files
from stages.training.checkpoint import load_checkpoint
from stages.devices import seed_everything
from tests.test_engine import ToyDetector, _run
from tests.test_training_errors import NARROW

ROOT = Path(__file__).resolve().parents[1]


def _argv(tiny_synthetic, data_root, out) -> list[str]:
    return ["--data", f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}",
            "--data-root", str(data_root), "--device", "cpu", "--no-progress", "--out", str(out),
            *NARROW]


# ------------------------------------------------------------------------------------------------
# Numbers: every flag has a range, checked where the parser reads it
# ------------------------------------------------------------------------------------------------

CONFIGS = (flags.RunConfig, FasterRCNNConfig, MaskRCNNConfig, RCNNConfig, PeerConfig,
           SelectiveSearchConfig, SlidingWindowConfig)


def test_every_numeric_field_of_every_config_has_a_range():
    missing = set()
    for cls in CONFIGS:
        for f in dataclasses.fields(cls):
            typ, _ = flags._field_type(cls, f)
            if typ in (int, float) and f.name not in flags.RANGES:
                missing.add(f"{cls.__name__}.{f.name}")
    assert not missing, f"give these fields a range in flags.RANGES: {sorted(missing)}"


@pytest.mark.parametrize("flags, message", [
    (["--lr", "nan"], "argument --lr: nan: expected a number > 0"),
    (["--lr", "inf"], "argument --lr: inf: expected a number > 0"),
    (["--time-budget", "-1"], "argument --time-budget: -1: expected a number > 0"),
    (["--epochs", "0"], "argument --epochs: 0: expected a number >= 1"),
    (["--long-side", "-5"], "argument --long-side: -5: expected a number >= 0"),
    (["--anchor-sizes", "0", "32"], "argument --anchor-sizes: 0: expected a number > 0"),
    (["--anchor-ratios", "1", "-2"], "argument --anchor-ratios: -2: expected a number > 0"),
    (["--fg-iou", "1.5"], "argument --fg-iou: 1.5: expected a number in [0, 1]"),
    (["--momentum", "1"], "argument --momentum: 1: expected a number in [0, 1)"),
    (["--checkpoint-every", "0"], "argument --checkpoint-every: 0: expected a number > 0"),
    (["--images-per-batch", "0"], "argument --images-per-batch: 0: expected a number >= 1"),
])
def test_a_number_out_of_range_is_one_line_before_any_work(flags, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path / "run"), *flags])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"python -m stages.faster_rcnn: error: {message} (see python -m stages.faster_rcnn --help)"
    assert not (tmp_path / "run").exists()


def test_a_config_built_in_python_checks_its_ranges_too():
    with pytest.raises(ValueError, match=r"^--lr nan: expected a number > 0$"):
        FasterRCNNConfig(lr=float("nan"))
    with pytest.raises(ValueError, match=r"^--anchor-sizes 16 0 64: expected a number > 0$"):
        FasterRCNNConfig(anchor_sizes=(16, 0, 64))
    with pytest.raises(ValueError, match=r"^--time-budget -1: expected a number > 0$"):
        flags.RunConfig(time_budget=-1.0)
    assert FasterRCNNConfig(anchor_sizes=(8, 16)).anchor_sizes == (8, 16)


# ------------------------------------------------------------------------------------------------
# The output folder: never replaced unasked
# ------------------------------------------------------------------------------------------------

def test_a_rerun_into_a_trained_run_is_refused_and_overwrite_replaces_it_whole(
        tiny_synthetic, data_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = _argv(tiny_synthetic, data_root, out)
    main(argv + ["--steps", "3"])
    checkpoint = out / "checkpoint.pt"
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "metrics.json")}

    with pytest.raises(SystemExit) as e:  # the same command again, e.g. with a smaller budget
        main(argv + ["--steps", "1"])
    assert str(e.value) == (f"error: {out} already holds a trained run (checkpoint.pt); give "
                            f"--resume to continue it, --eval-only to score it, --overwrite to "
                            f"replace it, or another --out")
    assert {name: (out / name).read_bytes() for name in before} == before  # untouched

    with pytest.raises(SystemExit, match="--resume and --overwrite: give one of them"):
        main(argv + ["--steps", "1", "--resume", "--overwrite"])

    (out / "notes.txt").write_text("mine")  # a file of the user's own: never deleted
    capsys.readouterr()
    main(argv + ["--steps", "1", "--overwrite"])
    assert "--overwrite: deleted the earlier run's checkpoint.pt" in capsys.readouterr().out
    assert load_checkpoint(checkpoint)["step"] == 1
    assert json.loads((out / "metrics.json").read_text())["steps"] == 1
    assert (out / "notes.txt").read_text() == "mine"


def test_resume_with_nothing_to_resume_and_a_file_for_a_folder_are_one_line(
        tiny_synthetic, data_root, tmp_path):
    argv = _argv(tiny_synthetic, data_root, tmp_path / "typo")
    with pytest.raises(SystemExit) as e:
        main(argv + ["--resume"])
    assert str(e.value).startswith(f"error: --resume: there is no {tmp_path / 'typo' / 'checkpoint.pt'}"
                                   f" to continue")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(SystemExit, match=rf"^error: --out {a_file}: a file is there, not a folder"):
        main(_argv(tiny_synthetic, data_root, a_file))
    argv = _argv(tiny_synthetic, a_file, tmp_path / "run")
    with pytest.raises(SystemExit, match=rf"^error: --data-root {a_file}: a file is there"):
        main(argv)


def test_compare_moves_a_run_it_cannot_reuse_aside(tiny_synthetic, data_root, tmp_path):
    from stages import compare
    out = tmp_path / "runs"
    main(_argv(tiny_synthetic, data_root, out / "faster_rcnn") + ["--steps", "1"])  # by hand
    by_hand = (out / "faster_rcnn" / "checkpoint.pt").read_bytes()
    compare.main(["--stages", "faster_rcnn", "--steps", "1", "--out", str(out),
                  "--data", f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}",
                  "--data-root", str(data_root), "--device", "cpu", "--no-progress"])
    aside = sorted(out.glob("faster_rcnn.previous-*"))
    assert len(aside) == 1 and (aside[0] / "checkpoint.pt").read_bytes() == by_hand
    assert (out / "faster_rcnn" / "metrics.json").is_file()


# ------------------------------------------------------------------------------------------------
# Interrupting: a real signal to a real child process
# ------------------------------------------------------------------------------------------------

def _child(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "stages.faster_rcnn", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_training_leaves_a_checkpoint_that_resume_continues(
        signum, status, tiny_synthetic, data_root, tmp_path):
    out = tmp_path / "run"
    argv = _argv(tiny_synthetic, data_root, out) + ["--checkpoint-every", "0.2"]
    child = _child(argv + ["--steps", "100000"])
    losses = out / engine.LOSSES
    deadline = time.monotonic() + 120
    while not losses.exists() and time.monotonic() < deadline:  # training has begun
        time.sleep(0.2)
    assert losses.exists(), child.communicate()[1][-2000:]
    child.send_signal(signum)
    _, err = child.communicate(timeout=120)
    assert child.returncode == status, err[-2000:]
    last = err.strip().splitlines()[-1]
    name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
    assert last.startswith(f"[faster_rcnn] interrupted ({name}) at step ")
    assert last.endswith(f"{out / 'checkpoint.pt'} holds it; the same command with --resume continues")
    assert "Traceback" not in err
    state = load_checkpoint(out / "checkpoint.pt")
    step = state["step"]
    assert step >= 1 and f"at step {step}," in last
    if signum != signal.SIGINT:  # resuming is the same whatever the signal: once is enough
        return
    resumed = _child(argv + ["--steps", str(step + 2), "--resume"])
    stdout, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-2000:]
    assert f"step {step}, " in stdout and load_checkpoint(out / "checkpoint.pt")["step"] == step + 2


def test_an_interrupted_epoch_resumes_with_the_steps_it_would_have_taken(tiny_synthetic, tmp_path):
    """Ctrl-C in the 3rd of 4 mini-batches of an epoch (sent to this very process): the step
    finishes, the checkpoint records the place in the epoch, and the resumed run ends with the
    weights and losses of the run that was never interrupted."""
    from stages.data.sources import CocoDataset
    train_set = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")

    class SignalledAt(ToyDetector):
        def forward(self, images, targets=None):
            out = super().forward(images, targets)
            if self.training and self.calls == 3:
                os.kill(os.getpid(), signal.SIGINT)  # delivered between bytecodes: mid-step
            return out

    full_model, full = _run(train_set, tmp_path / "full", epochs=2)
    seed_everything(0)  # the weights _run's ToyDetector starts from
    cut = SignalledAt()
    with pytest.raises(engine.TrainingInterrupted, match=r"interrupted \(Ctrl-C\) at step 3,"):
        _run(train_set, tmp_path / "cut", epochs=2, model=cut)
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (state["epoch"], state["step"], state["extra"]["batch_in_epoch"]) == (0, 3, 3)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    resumed_model, resumed = _run(train_set, tmp_path / "cut", epochs=2, resume=True)
    assert resumed.steps == full.steps == 8
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in full.history])
    torch.testing.assert_close(resumed_model.box.weight, full_model.box.weight)


def test_a_checkpoint_is_written_mid_epoch_every_checkpoint_every_seconds(tiny_synthetic,
                                                                          tmp_path, monkeypatch):
    from stages.data.sources import CocoDataset
    train_set = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")
    saved = []
    original = engine.save_checkpoint
    monkeypatch.setattr(engine, "save_checkpoint", lambda *a, **k: (
        saved.append((k["step"], k["extra"]["batch_in_epoch"])), original(*a, **k))[1])
    _run(train_set, tmp_path / "often", epochs=1, checkpoint_every_s=1e-9)
    assert saved == [(1, 1), (2, 2), (3, 3), (4, 0)]  # after each step; the epoch's end: batch 0
    saved.clear()
    _run(train_set, tmp_path / "epochs", epochs=1, checkpoint_every_s=None)
    assert saved == [(4, 0)]


# ------------------------------------------------------------------------------------------------
# Files others can read; one line, once, under torchrun
# ------------------------------------------------------------------------------------------------

def test_output_files_get_the_mode_of_any_new_file(tmp_path):
    old = os.umask(0o022)
    try:
        path = files.write_json(tmp_path / "metrics.json", {"AP": 1.0})
        files.atomic_write(tmp_path / "weights.pt", lambda f: torch.save({}, f))
    finally:
        os.umask(old)
    for name in ("metrics.json", "weights.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert json.loads(path.read_text()) == {"AP": 1.0}


def test_under_torchrun_only_rank_0_prints_a_refusal(tiny_synthetic, data_root, tmp_path,
                                                     monkeypatch, capsys):
    argv = _argv(tiny_synthetic, data_root, tmp_path / "typo") + ["--resume"]
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 1 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert str(e.value).startswith("error: --resume: there is no")
    assert run._on_rank_0()
