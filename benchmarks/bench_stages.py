"""Test time per image of each trained stage, on the same validation images, and the ratios.

    python benchmarks/bench_stages.py [--runs runs] [--images 50] [--data-root data]

Loads the checkpoints that ``python -m stages.rcnn`` and ``python -m stages.fast_rcnn`` wrote
(``runs/<stage>/checkpoint.pt``), runs each on the same first N validation images of the built-in
data and prints ms per image, split into proposals and network, and the speed-up of stage 2 over
stage 1. Both use selective search with the same parameters; R-CNN runs it live, Fast R-CNN reads
the shared cache and is charged the time the computation took (``stages.evaluate``). The papers'
146x-213x (Fast R-CNN sec. 4.4, VGG16) compare the network time, without proposals.

A benchmark, not a test: it prints numbers, it asserts nothing. Timings vary with the machine
and with its load; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
from pathlib import Path

import torch

from stages.checkpoint import load_checkpoint, restore
from stages.datasets import load_dataset
from stages.evaluate import evaluate
from stages.fast_rcnn import FastRCNNConfig, build_fast_rcnn
from stages.proposals import CACHE_DIR, ProposalCache, SelectiveSearchConfig, fill_cache


def load_rcnn(path: Path, class_names):
    from stages.rcnn.__main__ import trained_config
    from stages.rcnn.config import RCNNConfig
    from stages.rcnn.model import model_from_checkpoint
    from stages.rcnn.region_proposals import make_proposer

    state = load_checkpoint(path, stage="rcnn", class_names=class_names)
    cfg = trained_config(state["config"], RCNNConfig(proposals="selective_search"))
    return model_from_checkpoint(state, cfg, make_proposer(cfg))


def load_fast_rcnn(path: Path, class_names, cache: ProposalCache):
    state = load_checkpoint(path, stage="fast_rcnn", class_names=class_names)
    fields = {f.name for f in dataclasses.fields(FastRCNNConfig)}
    cfg = FastRCNNConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in state["config"].items() if k in fields})
    model = build_fast_rcnn(cfg, len(class_names) - 1, cache)
    restore(state, model, restore_rng=False)
    return model.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="runs")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--images", type=int, default=50)
    args = parser.parse_args(argv)

    _, val = load_dataset("synthetic", args.data_root)
    val = val.subset(range(min(args.images, len(val))))
    cache = ProposalCache(Path(args.data_root) / CACHE_DIR, SelectiveSearchConfig())
    fill_cache(cache, val, progress=False)
    paths = {stage: Path(args.runs) / stage / "checkpoint.pt" for stage in ("rcnn", "fast_rcnn")}
    missing = [f"python -m stages.{s}" for s, p in paths.items() if not p.exists()]
    if missing:
        print(f"no trained checkpoint for: {', '.join(missing)} -- run those commands first")
        return 1
    models = {"rcnn": load_rcnn(paths["rcnn"], val.class_names),
              "fast_rcnn": load_fast_rcnn(paths["fast_rcnn"], val.class_names, cache)}

    print(f"# test time per image: {len(val)} validation images, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch threads, torch {torch.__version__}\n")
    print("| stage | box AP | ms/img | proposals ms | network ms | parts (ms) |")
    print("|---|---:|---:|---:|---:|---|")
    rows = {}
    for stage, model in models.items():
        ev = evaluate(model, val)
        rows[stage] = ev
        parts = ", ".join(f"{k} {v:.1f}" for k, v in ev["timing_ms"].items())
        print(f"| {stage} | {ev['box']['AP']:.1f} | {ev['ms_per_image']:.1f} | {ev['ms_proposals']:.1f} "
              f"| {ev['ms_network']:.1f} | {parts} |")
    r, f = rows["rcnn"], rows["fast_rcnn"]
    print(f"\nFast R-CNN over R-CNN: network {r['ms_network'] / f['ms_network']:.1f}x faster, "
          f"whole image (proposals included) {r['ms_per_image'] / f['ms_per_image']:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
