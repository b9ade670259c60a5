"""Sliding windows against selective search: how many boxes, how much recall, how much time.

R-CNN's first lesson (sec. 2.1): on the first ``--n`` validation images of the built-in data,
print for each proposal method the proposals per image, the recall of the ground truth at IoU
0.5 and 0.7 with all of them, and the milliseconds per image; then the recall after the first
n proposals, for several n::

    python benchmarks/bench_proposals.py                   # 100 validation images
    python benchmarks/bench_proposals.py --n 20 --no-cache # time selective search afresh
    python benchmarks/bench_proposals.py --sw-stride 0.25  # denser windows: recall vs cost

Selective search goes through the proposal cache of ``stages.rcnn`` (under
``<data-root>/proposals``); a cached entry reports the milliseconds measured when it was
computed. ``--no-cache`` computes everything now, on one process, and times that.

``main(argv)`` prints the report and returns it (``proposal_report``'s dict, per method), so
``benchmarks/run_all.py`` can call it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

from stages.data.sources import load_dataset  # noqa: E402
from stages.rcnn.config import RCNNConfig  # noqa: E402
from stages.rcnn.proposers import (TOP_N, compute_proposals,  # noqa: E402
                                   format_proposal_report, proposal_report)
from stages.selective_search import CACHE_DIR  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="validation images (default: 100)")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                        help="read/write selective search through the disk cache")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sw-stride", type=float, default=RCNNConfig.sw_stride)
    parser.add_argument("--ss-scale", type=float, default=RCNNConfig.ss_scale)
    args = parser.parse_args(argv)

    _, val = load_dataset(args.data, args.data_root)
    n = min(args.n, len(val))
    items = [val[i] for i in range(n)]
    images, gt = [im for im, _ in items], [t["boxes"] for _, t in items]
    cfg = RCNNConfig(sw_stride=args.sw_stride, ss_scale=args.ss_scale, workers=args.workers)
    cache_root = Path(args.data_root) / CACHE_DIR if args.cache else None
    methods = {}
    for method in ("sliding_window", "selective_search"):
        boxes, seconds, summary = compute_proposals(
            images, dataclasses.replace(cfg, proposals=method), cache_root,
            args.workers if args.cache else 1)
        print(f"# {summary}")
        methods[method] = (boxes, seconds)
    report = proposal_report(gt, methods)

    print(f"\n{n} validation images, {sum(len(g) for g in gt)} objects\n")
    print(format_proposal_report(report))
    print("\nrecall after the first n proposals (IoU 0.5 / 0.7):")
    print(f"{'n':>6}  " + "  ".join(f"{name:>20}" for name in report))
    for top in TOP_N:
        cells = [f"{r['recall'][0.5][top]:>9.3f} / {r['recall'][0.7][top]:<8.3f}"
                 for r in report.values()]
        print(f"{top:>6}  " + "  ".join(f"{c:>20}" for c in cells))
    return report


if __name__ == "__main__":
    main()
