"""Training on two processes with torchrun (gloo, on the CPU) is training on one, shared out.

Stage 3 on the tiny synthetic set, started by ``torchrun --nproc_per_node=2`` through
``tests/distributed_worker.py`` (the stage command, recording each process's weights and the
files it wrote). Checked: the first step of two processes with one image each is the first step
of one process with both images; after a resumed second step both processes hold the same
weights; only rank 0 wrote anything; ``--steps`` stopped both runs exactly there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stages.training import distributed

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = WORKER.parents[1]

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="this torch build has no torch.distributed")


def run_worker(record: Path, argv: list[str], processes: int | None, stage: str = "faster_rcnn"):
    """The stage command in one plain process (``processes=None``) or under torchrun."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}"] if processes else [sys.executable])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(launcher + [str(WORKER), str(record), stage, *argv], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture
def argv(tiny_synthetic, data_root):
    data = f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"
    # SGD: its step is proportional to the gradient. (Adam's first step is about +-lr for every
    # weight, whatever the gradient's size, so a gradient near 0 summed in another order could
    # flip a weight's step: a difference of 2 lr that says nothing about the two runs.)
    return ["--data", data, "--data-root", str(data_root), "--device", "cpu", "--no-progress",
            "--seed", "3"]


STAGE3 = ["--images-per-batch", "2", "--optimizer", "sgd"]


def test_two_processes_take_the_one_process_step(argv, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    argv = argv + STAGE3
    run_worker(tmp_path / "rec1", argv + ["--steps", "1", "--out", str(one)], processes=None)
    run_worker(tmp_path / "rec2", argv + ["--steps", "1", "--out", str(two)], processes=2)

    single = torch.load(tmp_path / "rec1" / "rank0.pt")
    ranks = [torch.load(tmp_path / "rec2" / f"rank{r}.pt") for r in (0, 1)]
    assert single["steps"] == ranks[0]["steps"] == ranks[1]["steps"] == 1
    # the same first step: one process with the 2-image batch, two with one image each
    [loss_one] = json.loads((one / "losses.json").read_text())
    [loss_two] = json.loads((two / "losses.json").read_text())
    for key in ("loss", "loss_objectness", "loss_rpn_box", "loss_cls", "loss_box"):
        assert loss_two[key] == pytest.approx(loss_one[key], rel=1e-4, abs=1e-6), key
    for name, weight in single["weights"].items():
        torch.testing.assert_close(ranks[0]["weights"][name], weight, rtol=1e-4, atol=1e-6,
                                   msg=lambda m: f"{name}: {m}")
    # the same start, and a step that moved the weights (else "the same step" proves nothing)
    for name, weight in single["initial"].items():
        assert torch.equal(ranks[0]["initial"][name], weight), name
    moved = [k for k, v in single["weights"].items() if not torch.equal(single["initial"][k], v)]
    assert len(moved) > 10, moved

    # a second step, resumed on two processes from their checkpoint
    run_worker(tmp_path / "rec3", argv + ["--steps", "2", "--resume", "--out", str(two)],
               processes=2)
    ranks = [torch.load(tmp_path / "rec3" / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 2
    for name, weight in ranks[0]["weights"].items():
        assert torch.equal(ranks[1]["weights"][name], weight), name  # DDP: one set of weights
    written = [json.loads((tmp_path / "rec3" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert written[1] == []  # rank 1 wrote nothing
    names = {Path(p).name for p in written[0]}
    assert {"checkpoint.pt", "losses.json", "metrics.json", "predictions.png"} <= names
    assert all(Path(p).parent == two for p in written[0])
    record = json.loads((two / "metrics.json").read_text())
    assert record["steps"] == 2 and record["stopped_by"] == "steps"
    assert record["device"] == "cpu x 2 processes"
    assert [r["step"] for r in json.loads((two / "losses.json").read_text())] == [1, 2]


def test_rcnn_fine_tunes_its_cnn_on_two_processes(argv, tmp_path):
    """R-CNN's CNN on two processes, each warping half of every mini-batch: the weights of one
    process's two steps, on both processes; rank 0 alone goes on to the SVMs and writes. (The
    default backbone: its batch norm is frozen. ``--backbone tiny`` trains batch norm on each
    process's own half, which DDP does not synchronise.)"""
    argv = argv + ["--steps", "2", "--optimizer", "sgd", "--workers", "1",
                   "--warp-size", "56"]
    run_worker(tmp_path / "rec1", argv + ["--out", str(tmp_path / "one")], None, "rcnn")
    run_worker(tmp_path / "rec2", argv + ["--out", str(tmp_path / "two")], 2, "rcnn")
    single = torch.load(tmp_path / "rec1" / "rank0.pt")
    ranks = [torch.load(tmp_path / "rec2" / f"rank{r}.pt") for r in (0, 1)]
    assert single["steps"] == ranks[0]["steps"] == ranks[1]["steps"] == 2
    for name, weight in single["weights"].items():
        assert torch.equal(ranks[1]["weights"][name], ranks[0]["weights"][name]), name
        torch.testing.assert_close(ranks[0]["weights"][name], weight, rtol=1e-4, atol=1e-5,
                                   msg=lambda m: f"{name}: {m}")
    assert json.loads((tmp_path / "rec2" / "rank1.json").read_text()) == []
    record = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert record["steps"] == 2 and record["stopped_by"] == "steps"


def test_one_process_is_not_distributed():
    """Without torchrun's variables every helper is the one-process identity."""
    assert not distributed.launched() and not distributed.active()
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main()
    assert distributed.agree([1.5, 2.0], "mean") == [1.5, 2.0]
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model
    with distributed.main_first():
        pass  # no barrier to wait at
