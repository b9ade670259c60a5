"""Test time per image of each trained stage, on the same validation images, and the ratios.

    python benchmarks/bench_stages.py [--runs runs] [--images 50] [--data synthetic] [--data-root data]

Loads the checkpoints that the stage commands wrote (``<runs>/<stage>/checkpoint.pt``: both
``python -m stages.<stage>`` and ``python -m stages.compare`` write ``runs/<stage>`` by default),
runs each on the same first N validation images and prints ms per image,
split into proposals and network, then the ratios between neighbouring generations
(``stages.compare_report.generation_ratios``, the same sentences and targets as the
comparison):

    R-CNN -> Fast R-CNN     network ms (proposals excluded), the papers' 146x-213x with VGG16
                            (Fast R-CNN sec. 4.4); the target here: >= 12x
                            (stages.compare_report.NETWORK_TARGETS)
    Fast R-CNN -> Faster    ms per image, proposals included: the RPN replaces selective search
    selective search -> RPN proposal ms per image (Faster R-CNN Table 5: 1510 ms vs 10 ms);
                            target >= 20x
    Faster -> Mask R-CNN    what the mask branch and the FPN cost

R-CNN runs selective search live; Fast R-CNN reads the shared cache and is charged the time the
computation took (``stages.evaluation.evaluate``), with the same selective search parameters. A stage whose
checkpoint is missing gets a line "not run: train <stage> first (...)"; stage 4 (``stages.mask_rcnn``)
is skipped with a line while it is not built.

``main(argv)`` parses the flags and calls ``benchmark(runs=..., images=..., ...)`` (the same
settings as keyword arguments), which prints the table and returns {stage: evaluate's dict,
"ratios": [sentences], "missing": [lines]}, so ``benchmarks/run_all.py`` can call it. A
benchmark, not a test: it prints numbers, it asserts nothing. Timings vary with the machine and its load; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import platform
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

from stages.training.checkpoint import CheckpointError, load_checkpoint, restore  # noqa: E402
from stages.compare import STAGES  # noqa: E402
from stages.data.sources import load_dataset  # noqa: E402
from stages.devices import count_parameters  # noqa: E402
from stages.evaluation import Result, evaluate  # noqa: E402
from stages.compare_report import Row, generation_ratios  # noqa: E402
from stages.selective_search import CACHE_DIR, ProposalCache, SelectiveSearchConfig, fill_cache  # noqa: E402

ORDER = tuple(entry.name for entry in STAGES)  # rcnn, fast_rcnn, faster_rcnn, mask_rcnn


def config_from_checkpoint(cls, state: dict):
    """The stage config a checkpoint was trained with (its ``config`` holds every flag)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v
                  for k, v in state["config"].items() if k in fields})


def load_rcnn(state: dict, cache):
    from stages.rcnn.__main__ import trained_config
    from stages.rcnn.config import RCNNConfig
    from stages.rcnn.model import model_from_checkpoint
    from stages.rcnn.proposers import make_proposer

    # selective search whatever the run was trained with: the proposals Fast R-CNN uses too
    cfg = trained_config(state["config"], RCNNConfig(proposals="selective_search"), {"proposals"})
    return model_from_checkpoint(state, cfg, make_proposer(cfg))


def load_fast_rcnn(state: dict, cache):
    from stages.fast_rcnn import FastRCNNConfig, build_fast_rcnn

    model = build_fast_rcnn(config_from_checkpoint(FastRCNNConfig, state),
                            len(state["class_names"]) - 1, cache)
    restore(state, model, restore_rng=False)
    return model


def load_faster_rcnn(state: dict, cache):
    from stages.faster_rcnn import FasterRCNNConfig, build_faster_rcnn

    model = build_faster_rcnn(config_from_checkpoint(FasterRCNNConfig, state),
                              len(state["class_names"]) - 1)
    restore(state, model, restore_rng=False)
    return model


def load_mask_rcnn(state: dict, cache):
    from stages.mask_rcnn import MaskRCNNConfig, build_mask_rcnn  # stage 4: checked by main first

    model = build_mask_rcnn(config_from_checkpoint(MaskRCNNConfig, state),
                            len(state["class_names"]) - 1)
    restore(state, model, restore_rng=False)
    return model


LOADERS = {"rcnn": load_rcnn, "fast_rcnn": load_fast_rcnn, "faster_rcnn": load_faster_rcnn,
           "mask_rcnn": load_mask_rcnn}


def why_missing(stage: str, runs: Path) -> str | None:
    """None if the stage has a checkpoint to time; else the line that says what to do."""
    module = f"stages.{stage}"
    if importlib.util.find_spec(module) is None:
        return f"not run: {stage} skipped, {module} is not built yet"
    path = runs / stage / "checkpoint.pt"
    if not path.exists():
        return f"not run: train {stage} first (python -m {module} --out {runs / stage}): no {path}"
    return None


def print_table(measured: dict) -> None:
    """One Markdown row per stage: AP, ms per image and where the time goes."""
    print("| stage | box AP | mask AP | ms/img | proposals ms | network ms | parts (ms) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, ev in measured.items():
        mask = f"{ev['mask']['AP']:.1f}" if ev["mask"] else "-"
        parts = ", ".join(f"{k} {v:.1f}" for k, v in ev["timing_ms"].items())
        print(f"| {name} | {ev['box']['AP']:.1f} | {mask} | {ev['ms_per_image']:.1f} "
              f"| {ev['ms_proposals']:.1f} | {ev['ms_network']:.1f} | {parts} |")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs", help="folder holding <stage>/checkpoint.pt")
    parser.add_argument("--data", default="synthetic", help="the data the runs were trained on")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--images", type=int, default=50, help="validation images to time")
    parser.add_argument("--stages", nargs="+", default=list(ORDER), choices=ORDER)
    return benchmark(**vars(parser.parse_args(argv)))


def benchmark(*, runs: Path | str = "runs", data: str = "synthetic", data_root: str = "data",
              images: int = 50, stages: Sequence[str] = ORDER) -> dict:
    """What ``main`` runs, its flags as keyword arguments: prints the table, returns it."""
    unknown = [s for s in stages if s not in ORDER]
    if unknown:
        raise ValueError(f"unknown stages {unknown}: choose from {list(ORDER)}")
    runs = Path(runs)

    missing = {stage: why_missing(stage, runs) for stage in stages}
    present = [stage for stage, why in missing.items() if why is None]
    print(f"# test time per image, stage by stage: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}\n")
    lines = [why for why in missing.values() if why is not None]
    if not present:
        print("\n".join(lines))
        return {"ratios": [], "missing": lines}

    _, val = load_dataset(data, data_root)
    val = val.subset(range(min(images, len(val))))
    cache = None
    if "fast_rcnn" in present:  # Fast R-CNN reads selective search from the cache stage 1 shares
        cache = ProposalCache(Path(data_root) / CACHE_DIR, SelectiveSearchConfig())
        fill_cache(cache, val, progress=False)

    measured, rows = {}, []
    for entry in (e for e in STAGES if e.name in present):
        try:
            state = load_checkpoint(runs / entry.name / "checkpoint.pt", stage=entry.name,
                                    class_names=val.class_names)
            model = LOADERS[entry.name](state, cache).eval()
        except (CheckpointError, RuntimeError) as e:  # other data, or weights of another shape
            lines.append(f"not run: {entry.name}: its checkpoint does not load here "
                         f"({str(e).splitlines()[0]}); train it again on this data")
            continue
        ev = evaluate(model, val)
        measured[entry.name] = ev
        result = Result.from_evaluation(ev, stage=entry.name, variant="", data=data,
                                        train_time_s=state["train_time_s"],
                                        params=count_parameters(model), n_train=0,
                                        device="cpu", seed=0)
        rows.append(Row(entry, result, "reused"))

    print(f"{len(val)} validation images of {data}, runs in {runs}\n")
    if measured:
        print_table(measured)
    if lines:
        print("\n" + "\n".join(lines))
    ratios = generation_ratios(rows)
    if ratios:
        print("\nBetween generations:\n" + "\n".join(f"- {s}" for s in ratios))
    return {**measured, "ratios": ratios, "missing": lines}


if __name__ == "__main__":
    main()
