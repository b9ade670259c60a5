"""The RPN against selective search: recall at IoU 0.5 and 0.7 against proposals per image, and ms.

Faster R-CNN's claim (sec. 1, Table 5): proposals in ~10 ms per image instead of ~1.5 s, at equal
or better recall. On the first ``--n`` validation images, with a trained Faster R-CNN run::

    python -m stages.faster_rcnn                                   # train one (runs/faster_rcnn)
    python benchmarks/bench_rpn_proposals.py --run runs/faster_rcnn --n 100

prints the table of ``stages.faster_rcnn.rpn_vs_selective_search`` (recall after the first n
proposals, ms per image, the speed ratio, and whether the project's target is met: >= 20x
faster at equal or better recall at IoU 0.5 with 300 proposals) and saves the recall curves as
``<run>/proposal_recall.png``. Selective search comes from the proposal cache under
``<data-root>/proposals`` (stages 1 and 2 fill it; missing images are computed now), timed as it
was when computed, on one core. So the RPN runs on ``--threads 1`` by default too.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

import torch  # noqa: E402

from stages.training import engine  # noqa: E402
from stages.training.checkpoint import CheckpointError, load_checkpoint, restore  # noqa: E402
from stages.data.sources import load_dataset  # noqa: E402
from stages.devices import choose_device  # noqa: E402
from stages.figures.draw import figure_grid, plot_recall_curves  # noqa: E402
from stages.faster_rcnn import FasterRCNNConfig, build_faster_rcnn  # noqa: E402
from stages.faster_rcnn.rpn_vs_selective_search import (compare_proposals,  # noqa: E402
                                                    format_proposal_comparison)
from stages.files import save_figure  # noqa: E402
from stages.selective_search import CACHE_DIR, ProposalCache, SelectiveSearchConfig  # noqa: E402
from stages.data.transforms import val_transforms  # noqa: E402

STAGE = "faster_rcnn"
FIGURE = "proposal_recall.png"


def config_from_checkpoint(state: dict) -> FasterRCNNConfig:
    """The ``FasterRCNNConfig`` the run was trained with (its flags are saved in the checkpoint)."""
    saved, values = state["config"], {}
    for f in dataclasses.fields(FasterRCNNConfig):
        if f.name in saved:  # a field added since the run keeps its default
            v = saved[f.name]
            values[f.name] = tuple(v) if isinstance(v, list) else v
    return FasterRCNNConfig(**values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=f"runs/{STAGE}",
                        help="the output folder of python -m stages.faster_rcnn")
    parser.add_argument("--n", type=int, default=100, help="validation images (default: 100)")
    parser.add_argument("--data", default=None, help="default: the data the run was trained on")
    parser.add_argument("--data-root", default=None, help="default: the run's --data-root")
    parser.add_argument("--device", default="cpu", help="cpu (default, as the paper's comparison) "
                        "| cuda | auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the RPN "
                        "(default 1: selective search ran on one core)")
    parser.add_argument("--out", default=None, help=f"the figure (default: <run>/{FIGURE})")
    benchmark(**vars(parser.parse_args(argv)))


def benchmark(*, run: Path | str = f"runs/{STAGE}", n: int = 100, data: str | None = None,
              data_root: str | None = None, device: str = "cpu", threads: int = 1,
              out: Path | str | None = None) -> None:
    """What ``main`` runs, its flags as keyword arguments: prints the table, saves the figure."""
    torch.set_num_threads(threads)
    path = Path(run) / engine.CHECKPOINT
    if not path.exists():
        raise SystemExit(f"error: no trained Faster R-CNN at {path}. Train one first:\n"
                         f"    python -m stages.faster_rcnn --out {run}")
    try:
        state = load_checkpoint(path, stage=STAGE)
    except CheckpointError as e:
        raise SystemExit(f"error: {e}") from None
    data = data or state["config"].get("data", "synthetic")
    data_root = data_root or state["config"].get("data_root", "data")
    long_side = state["config"].get("long_side")
    _, val = load_dataset(data, data_root, val_transforms=val_transforms(long_side))
    if list(val.class_names) != list(state["class_names"]):
        raise SystemExit(f"error: {path} was trained for classes {state['class_names'][1:]}, "
                         f"the data {data} has {val.class_names[1:]}")
    device = choose_device(device)
    model = build_faster_rcnn(config_from_checkpoint(state), val.num_classes)
    restore(state, model, restore_rng=False)
    model.to(device)
    cache = ProposalCache(Path(data_root) / CACHE_DIR, SelectiveSearchConfig())

    print(f"# {path}: {state['step']} steps, {state['train_time_s']:.0f} s of training; "
          f"data {data}; RPN on {device}, {torch.get_num_threads()} thread(s); "
          f"selective search from {cache.folder}")
    comparison = compare_proposals(model, val, cache, n=n, device=device)
    if cache.misses:
        print(f"# selective search computed now for {cache.misses} images (not in the cache)")
    print(format_proposal_comparison(comparison))

    fig, axes = figure_grid(2, cols=2, cell=4.5)
    for ax, iou in zip(axes, (0.5, 0.7)):
        plot_recall_curves(ax, comparison, iou)
        ax.set_title(f"RPN vs selective search: recall at IoU {iou}")
    fig.tight_layout()
    out = save_figure(fig, out or Path(run) / FIGURE)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
