"""The fine-tuning recipe, measured: which choices make stage 4 learn fastest from ImageNet weights.

    python benchmarks/bench_finetune.py                          every variant, 60 s of training each
    python benchmarks/bench_finetune.py --budget 90 --variants base bn_trained
    python benchmarks/bench_finetune.py --stage fast_rcnn        the same variants for stage 2

The papers fine-tune an ImageNet-trained CNN and say which choices matter (Fast R-CNN sec. 4.5,
"which layers to fine-tune?"); torchvision and detectron2 freeze batch norm when they fine-tune.
Each variant below changes one thing from ``base`` (today's defaults: the stage config's), trains
the stage for the same ``--budget`` seconds on the same data and seed, one after the other in this
one process, and prints one table: box AP / AP50 / AP75, mask AP / AP75, training steps, images
seen and the last loss. Seconds buy different step counts on a loaded machine, so read the steps
column too. The winners are cited in ``stages/backbone.py`` (``BackboneConfig``) and the stage
configs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

from stages import run  # noqa: E402
from stages.training.engine import LOSSES  # noqa: E402

# name -> the flags that differ from the stage's defaults
VARIANTS = {
    "base": [],
    "bn_trained": ["--no-frozen-bn"],
    "freeze_0": ["--freeze-at", "0"],
    "freeze_2": ["--freeze-at", "2"],
    "freeze_3": ["--freeze-at", "3"],
    "sgd_lr0.01": ["--optimizer", "sgd", "--lr", "0.01"],
    "sgd_lr0.02": ["--optimizer", "sgd", "--lr", "0.02"],
    "adamw_lr1e-4": ["--optimizer", "adamw", "--lr", "1e-4"],
    "adamw_lr3e-4": ["--optimizer", "adamw", "--lr", "3e-4"],
    "adamw_lr3e-3": ["--optimizer", "adamw", "--lr", "3e-3"],
    "adamw_lr1e-3": ["--optimizer", "adamw", "--lr", "1e-3"],
    "batch_4": ["--images-per-batch", "4"],
    "batch_8": ["--images-per-batch", "8"],
    "warmup_0": ["--warmup-steps", "1"],
    "warmup_200": ["--warmup-steps", "200"],
    "no_clip": ["--clip-grad-norm", "0"],
    "rois_128": ["--rois-per-image", "128"],
    "beta_0.11": ["--smooth-l1-beta", "0.1111"],
    "lambda_2": ["--loss-lambda", "2"],
    "from_scratch": ["--pretrained", "none", "--no-frozen-bn", "--freeze-at", "0"],
    "tiny_from_scratch": ["--backbone", "tiny"],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_finetune.py",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="mask_rcnn", choices=("fast_rcnn", "faster_rcnn", "mask_rcnn"))
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training per variant")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--runs", default="runs/finetune", help="one folder per variant in here")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="flags given to every variant (after the variant's own)")
    return parser


def run_variant(stage: str, name: str, budget: float, runs: Path, extra: list[str]) -> dict:
    main = importlib.import_module(f"stages.{stage}.__main__").main
    out = runs / stage / name
    argv = [*VARIANTS[name], "--time-budget", str(budget), "--out", str(out), "--no-progress", *extra,
            *run.overwrite_flag(out)]  # this benchmark's own folder, trained again
    print(f"== {name}: python -m stages.{stage} {' '.join(argv)}", flush=True)
    result = main(argv)
    history = json.loads((out / LOSSES).read_text())
    batch = next((int(a) for f, a in zip(argv, argv[1:]) if f == "--images-per-batch"), None)
    return {"variant": name, "box": result.box, "mask": result.mask, "steps": len(history),
            "batch": batch, "loss": history[-1]["loss"] if history else float("nan"),
            "train_s": result.train_time_s}


def format_rows(rows: list[dict]) -> str:
    head = f"{'variant':<20} {'box AP':>6} {'AP50':>5} {'AP75':>5} {'mask AP':>7} {'mAP75':>5} {'steps':>5} {'loss':>6}"
    lines = [head, "-" * len(head)]
    for r in rows:
        m = r["mask"] or {}
        lines.append(f"{r['variant']:<20} {r['box']['AP']:>6.1f} {r['box']['AP50']:>5.1f} "
                     f"{r['box']['AP75']:>5.1f} {m.get('AP', float('nan')):>7.1f} "
                     f"{m.get('AP75', float('nan')):>5.1f} {r['steps']:>5d} {r['loss']:>6.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    rows = []
    for name in args.variants:
        rows.append(run_variant(args.stage, name, args.budget, Path(args.runs), args.extra))
        print(format_rows(rows), flush=True)
    print(f"\nstage {args.stage}, {args.budget:.0f} s of training per variant, one after the other")
    print(format_rows(rows))
    return rows


if __name__ == "__main__":
    main()
