"""Shared fixtures: a tiny synthetic dataset generated once per test session."""

from __future__ import annotations

import os

# The tests' models are tiny: a second torch thread buys nothing, and on a machine shared with
# other jobs two spinning OpenMP threads per process slowed the suite several-fold (measured:
# 17 min against under 4). Set before torch is imported, inherited by the notebook kernels.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from stages.data.synthetic import SyntheticConfig, ensure_synthetic

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Penn-Fudan lives beside the project (never copied into it); tests that need it skip without it.
PENNFUDAN = Path(os.environ.get("PENNFUDAN_DIR",
                                Path(__file__).resolve().parents[2] / "shared" / "datasets" / "PennFudanPed"))

TINY = SyntheticConfig(seed=0, n_train=8, n_val=4)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_synthetic(data_root) -> Path:
    """Folder of an 8 + 4 image synthetic set (generated once, shared by the tests)."""
    return ensure_synthetic(TINY, data_root, verbose=False)


@pytest.fixture
def pennfudan() -> Path:
    if not (PENNFUDAN / "PNGImages").is_dir():
        pytest.skip(f"Penn-Fudan not found at {PENNFUDAN} (set PENNFUDAN_DIR to its folder)")
    return PENNFUDAN


def _overfit(model, dataset, lr: float, warmup_steps: int, steps: int = 150) -> set:
    """Train ``model`` on all of ``dataset`` (a few images) as one batch: SGD with momentum 0.9 and a
    linear warm-up, ``steps`` times. Returns the loss names of every step, as a set of frozensets."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    images = [dataset[i][0] for i in range(len(dataset))]
    targets = [dataset[i][1] for i in range(len(dataset))]
    names = set()
    for step in range(steps):
        for g in optimizer.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warmup_steps)
        losses = model(images, targets)
        names.add(frozenset(losses))
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    return names


@pytest.fixture
def overfit():
    """The end-to-end tests' training loop: ``overfit(model, dataset, lr, warmup_steps, steps)``."""
    return _overfit


@pytest.fixture(scope="session")
def data_args(tiny_synthetic, data_root) -> list[str]:
    """The tiny synthetic set read as any COCO data (the every-5th-image split gives 7 + 1)."""
    return ["--data", f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}",
            "--data-root", str(data_root)]


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, data_args):
    """A runs folder as the stage commands write it: faster_rcnn/, mask_rcnn/ (a step or two of
    training each) and comparison.json beside them (the comparison of those two results), as
    ``python -m stages.compare`` writes them. Shared by the figure, predict and evaluation tests."""
    import argparse

    from stages import compare
    from stages.compare_report import Row, generation_ratios
    from stages.faster_rcnn.__main__ import main as faster_rcnn_main
    from stages.mask_rcnn.__main__ import main as mask_rcnn_main

    runs = tmp_path_factory.mktemp("runs")
    flags = data_args + ["--epochs", "1", "--time-budget", "2", "--no-progress", "--device", "cpu"]
    faster = faster_rcnn_main(flags + ["--out", str(runs / "faster_rcnn")])
    # with the pyramid (not the default), so that the FPN figure reads a trained one
    mask = mask_rcnn_main(flags + ["--out", str(runs / "mask_rcnn"), "--fpn", "--input-scale", "1"])
    rows = [Row(compare.STAGES[2], faster, "trained"), Row(compare.STAGES[3], mask, "trained")]
    settings = argparse.Namespace(data=data_args[1], val_data=None, data_root=data_args[3],
                                  preset="quick", epochs=1, time_budget=2.0, steps=None, eval_every=None,
                                  seed=0, device="cpu", long_side=None, progress=False)
    compare.save_comparison(runs, rows, generation_ratios(rows), settings)
    return runs
