"""Our Faster / Mask R-CNN against torchvision's on our backbone: same data, split and training time.

    python benchmarks/bench_peers.py                         both pairs, 180 s of training each
    python benchmarks/bench_peers.py --kinds faster          stage 3 and its peer only
    python benchmarks/bench_peers.py --budget 60 --runs runs/bench

The project's target: "Ours must match or beat these at the same budget, measured side by side in one run."
For each pair (our stage 3 and torchvision's ``FasterRCNN``; our stage 4 and torchvision's
``MaskRCNN``, both built on our ``Backbone`` by ``stages.torchvision.peers``), this trains both models for the
same wall-clock budget (``--budget`` seconds, default 180: "3 minutes on 2 cores") on the same
data and split with the same seed, evaluates them with the same evaluator on the same validation
images, and prints one table (box AP, AP50, AP75, mask AP and AP50 where the model has masks, test
ms per image, of which proposals, training steps and seconds) and two checks per pair:

    ours AP >= peer AP          box AP (and mask AP for the Mask R-CNN pair)
    ours ms <= 1.5x peer ms     test time per image

Each model is trained by its stage's own function (``stages.run_stage.run_stage``: what
``python -m stages.faster_rcnn``, ``python -m stages.torchvision.peers faster_rcnn``, ... run) into
``<runs>/<name>``: the runs are ordinary
stage runs, which ``bench_stages.py``, ``run_all.py`` and the notebooks read. They are run through
``stages.compare.run_entry``, so a run already trained with the same settings is reused (its
``metrics.json`` read, nothing trained), an interrupted one is resumed, and ``--retrain`` trains
both again. Stage 4 is skipped, with a line, while ``stages.mask_rcnn`` is not built.

``summarize(runs, kinds)`` prints the same table from runs that already exist, without training
(``run_all.py`` does that unless given ``--peers``). ``main(argv)`` parses the flags and calls
``benchmark(kinds=..., budget=..., ...)`` (the same settings as keyword arguments), which returns
what ``summarize`` returns: {"rows": {name: numbers}, "checks": [{"pair", "check", "passed"}],
"missing": [lines]}.
Timings vary with the machine and its load: train on an otherwise idle machine, or the model
trained second gets fewer steps for the same budget.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

from stages.compare import PEERS, STAGES, run_entry  # noqa: E402
from stages.run_stage import STAGES as RUNNABLE  # noqa: E402
from stages.training.engine import LOSSES  # noqa: E402
from stages.evaluation import Result, ResultFileError  # noqa: E402
from stages.run import METRICS  # noqa: E402

DEFAULT_BUDGET = 180.0  # seconds of training per model: the project's "3 minutes"
MS_FACTOR = 1.5  # ours may be at most this much slower per image than the peer
# --kinds name -> (our stage, its peer), as stages.compare names them
PAIRS = {"faster": ("faster_rcnn", "torchvision_faster_rcnn"),
         "mask": ("mask_rcnn", "torchvision_mask_rcnn")}
ENTRIES = {e.name: e for e in STAGES + PEERS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_peers.py",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(PAIRS), choices=list(PAIRS),
                        help="faster: stage 3 vs torchvision's FasterRCNN; mask: stage 4 vs MaskRCNN")
    parser.add_argument("--budget", type=float, default=DEFAULT_BUDGET,
                        help="seconds of training per model (the stages' --time-budget)")
    parser.add_argument("--runs", default="runs", help="the runs go into <runs>/<name>")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even a run trained with these settings")
    parser.add_argument("--data", default="synthetic",
                        help="synthetic | coco:ANN.json[:IMAGE_DIR] | pennfudan:DIR")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--epochs", type=int, default=None,
                        help="stop after this many epochs if the budget has not run out first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--long-side", type=int, default=None)
    parser.add_argument("--progress", default=True, action=argparse.BooleanOptionalAction)
    return parser


def compare_args(*, budget: float, retrain: bool, data: str, data_root: str, epochs: int | None,
                 seed: int, device: str, long_side: int | None,
                 progress: bool) -> argparse.Namespace:
    """What ``stages.compare.run_entry`` reads: compare's flags, the budget as --time-budget."""
    return argparse.Namespace(data=data, data_root=data_root, preset="quick", epochs=epochs,
                              time_budget=budget, seed=seed, device=device, long_side=long_side,
                              progress=progress, retrain=retrain)


def stage_built(name: str) -> bool:
    return ENTRIES[name].stage in RUNNABLE


# ------------------------------------------------------------------------------------------------
# The table, from the runs' own files
# ------------------------------------------------------------------------------------------------

def train_steps(run_dir: Path) -> int | None:
    """Optimizer steps of a run: the last step ``engine.train`` logged in losses.json."""
    try:
        history = json.loads((run_dir / LOSSES).read_text())
        return int(history[-1]["step"]) if history else 0
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def row_numbers(name: str, result: Result, steps: int | None) -> dict:
    mask = result.mask or {}
    return {"model": ENTRIES[name].title + (" (ours)" if ENTRIES[name].peer is None else ""),
            "AP": result.box["AP"], "AP50": result.box["AP50"], "AP75": result.box["AP75"],
            "mask AP": mask.get("AP"), "mask AP50": mask.get("AP50"),
            "ms/img": result.ms_per_image, "proposals ms": result.ms_proposals,
            "train steps": steps, "train s": result.train_time_s, "val images": result.n_val}


COLUMNS = ("model", "AP", "AP50", "AP75", "mask AP", "mask AP50", "ms/img", "proposals ms",
           "train steps", "train s")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return "n/a" if value == -1 else f"{value:.1f}"


def pair_checks(kind: str, ours: dict, peer: dict) -> list[dict]:
    """The project's bar for one pair: AP at least the peer's, test time at most 1.5x the peer's."""
    checks = [("AP", f"ours box AP {ours['AP']:.1f} >= peer {peer['AP']:.1f}",
               ours["AP"] >= peer["AP"])]
    if ours["mask AP"] is not None and peer["mask AP"] is not None:
        checks.append(("mask AP", f"ours mask AP {ours['mask AP']:.1f} >= peer {peer['mask AP']:.1f}",
                       ours["mask AP"] >= peer["mask AP"]))
    limit = MS_FACTOR * peer["ms/img"]
    checks.append(("ms", f"ours ms {ours['ms/img']:.1f} <= {MS_FACTOR:g}x peer ms "
                         f"{peer['ms/img']:.1f} = {limit:.1f}", ours["ms/img"] <= limit))
    return [{"pair": kind, "check": text, "passed": bool(ok)} for _, text, ok in checks]


def not_run_line(name: str, runs: Path) -> str:
    entry = ENTRIES[name]
    if entry.peer is None and not stage_built(name):
        return f"not run: {name} skipped, stages.{entry.stage} is not built yet"
    command = (f"python -m stages.torchvision.peers {entry.peer}" if entry.peer
               else f"python -m stages.{entry.stage}")
    return (f"not run: train {name} first ({command} --out {runs / name}, or "
            f"python benchmarks/bench_peers.py --runs {runs}): no {runs / name / METRICS}")


def summarize(runs: Path | str, kinds=tuple(PAIRS)) -> dict:
    """Print the table and the checks from ``<runs>/<name>/metrics.json``; nothing is trained."""
    runs = Path(runs)
    rows, checks, missing, notes = {}, [], [], []
    for kind in kinds:
        pair = {}
        for name in PAIRS[kind]:
            try:
                result = Result.load(runs / name / METRICS)
            except FileNotFoundError:
                missing.append(not_run_line(name, runs))
                continue
            except ResultFileError as e:
                missing.append(f"not run: {name}: {e}")
                continue
            pair[name] = rows[name] = row_numbers(name, result, train_steps(runs / name))
            pair[name]["data"] = (result.data, result.n_val, result.seed)
        if len(pair) < 2:
            continue
        ours, peer = (pair[name] for name in PAIRS[kind])
        checks += pair_checks(kind, ours, peer)
        if ours["data"] != peer["data"]:
            notes.append(f"note ({kind}): the two runs were evaluated on different data "
                         f"({ours['data']} vs {peer['data']}): not a side-by-side comparison")
        longer = max(ours["train s"], peer["train s"])
        if abs(ours["train s"] - peer["train s"]) > max(0.1 * longer, 5.0):  # a budget ends after a whole step
            notes.append(f"note ({kind}): trained for different times ({ours['train s']:.0f} s vs "
                         f"{peer['train s']:.0f} s): not the same budget; "
                         f"python benchmarks/bench_peers.py trains both for the same")

    if rows:
        print("| " + " | ".join(COLUMNS) + " |")
        print("|---|" + "---:|" * (len(COLUMNS) - 1))
        for numbers in rows.values():
            print("| " + " | ".join(_cell(numbers[c]) for c in COLUMNS) + " |")
        print('\nmask AP "-": the model predicts no masks; proposals ms is part of ms/img.')
    for line in missing + notes:
        print(line)
    if checks:
        print("\nChecks (the project's target: ours must match or beat the peers at the same budget):")
        for c in checks:
            print(f"- {c['pair']}: {c['check']}: {'PASS' if c['passed'] else 'FAIL'}")
    for numbers in rows.values():
        numbers.pop("data")
    return {"rows": rows, "checks": checks, "missing": missing, "notes": notes}


# ------------------------------------------------------------------------------------------------
# The command: train (or reuse) both models of each pair, then the table
# ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict:
    return benchmark(**vars(build_parser().parse_args(argv)))


def benchmark(*, kinds: Sequence[str] = tuple(PAIRS), budget: float = DEFAULT_BUDGET,
              runs: Path | str = "runs", retrain: bool = False, data: str = "synthetic",
              data_root: str = "data", epochs: int | None = None, seed: int = 0,
              device: str = "auto", long_side: int | None = None, progress: bool = True) -> dict:
    """What ``main`` runs, its flags as keyword arguments: trains (or reuses) both models of each
    pair, prints the table and returns what ``summarize`` returns."""
    unknown = [k for k in kinds if k not in PAIRS]
    if unknown:
        raise ValueError(f"unknown kinds {unknown}: choose from {list(PAIRS)}")
    runs = Path(runs)
    settings = compare_args(budget=budget, retrain=retrain, data=data, data_root=data_root,
                            epochs=epochs, seed=seed, device=device, long_side=long_side,
                            progress=progress)
    kinds = [k for k in PAIRS if k in kinds]
    print(f"# ours against torchvision's peers: {budget:g} s of training each, data "
          f"{data}, seed {seed}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}\n")
    ran = []
    for kind in kinds:
        for entry in (ENTRIES[name] for name in PAIRS[kind]):
            print(f"[bench_peers] {entry.name}: {entry.title}, into {runs / entry.name}", flush=True)
            _, status = run_entry(entry, settings, runs)
            print(f"[bench_peers] {entry.name}: {status}", flush=True)
        ran.append(kind)
    print()
    return summarize(runs, ran)


if __name__ == "__main__":
    main()
