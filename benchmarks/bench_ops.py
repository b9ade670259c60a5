"""How much slower are our readable box ops than torchvision's C++ kernels?

Times ``box_iou``, ``nms`` and ``batched_nms`` from ``stages.ops.kernels("ours")`` against
``kernels("torchvision")`` on the same random boxes, checks that both give the same result, and
prints a markdown table (median of ``--repeats`` runs, milliseconds)::

    python benchmarks/bench_ops.py                 # 2000 boxes, about the RPN's post-NMS count
    python benchmarks/bench_ops.py --n 300 --threads 1

The boxes look like proposals: a 512 x 512 image, sides from 8 to 128 pixels, uniform scores,
``--classes`` categories for ``batched_nms``.

On a small virtual machine the timings of the (N, N) ``box_iou`` vary 2-3x from run to run (fresh
memory is slow to fault in), so compare ratios from the same run, and run it twice.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

from stages.ops import kernels  # noqa: E402


def random_proposals(n: int, n_classes: int, seed: int, image_size: float = 512.0):
    """n boxes (x1, y1, x2, y2) [n, 4], scores [n] and class indices [n]."""
    g = torch.Generator().manual_seed(seed)
    x1y1 = torch.rand(n, 2, generator=g) * image_size  # (n, 2)
    wh = 8 + torch.rand(n, 2, generator=g) * 120  # (n, 2), sides 8..128 px
    boxes = torch.cat([x1y1, x1y1 + wh], dim=1)  # (n, 4)
    scores = torch.rand(n, generator=g)  # (n,)
    idxs = torch.randint(0, n_classes, (n,), generator=g)  # (n,)
    return boxes, scores, idxs


def median_ms(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of boxes")
    parser.add_argument("--classes", type=int, default=20, help="categories for batched_nms")
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    boxes, scores, idxs = random_proposals(args.n, args.classes, args.seed)
    ours, theirs = kernels("ours"), kernels("torchvision")
    calls = {  # op -> how to call it on an implementation k
        "box_iou": lambda k: k.box_iou(boxes, boxes),
        "nms": lambda k: k.nms(boxes, scores, args.iou_threshold),
        "batched_nms": lambda k: k.batched_nms(boxes, scores, idxs, args.iou_threshold),
    }

    print(f"{args.n} boxes, {args.classes} classes, IoU threshold {args.iou_threshold}, "
          f"{torch.get_num_threads()} torch threads, median of {args.repeats}, "
          f"torch {torch.__version__}\n")
    print("| op | ours (ms) | torchvision (ms) | ours / torchvision | same result |")
    print("|---|---:|---:|---:|---|")
    for op, call in calls.items():
        same = torch.equal(call(ours), call(theirs))
        ms_ours = median_ms(lambda: call(ours), args.repeats)
        ms_theirs = median_ms(lambda: call(theirs), args.repeats)
        print(f"| {op} | {ms_ours:.2f} | {ms_theirs:.2f} | {ms_ours / ms_theirs:.1f}x | {same} |")


if __name__ == "__main__":
    main()
