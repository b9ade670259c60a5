"""How much slower are our readable box ops than torchvision's C++ kernels?

Times ``box_iou``, ``nms``, ``batched_nms``, ``roi_pool`` and ``roi_align`` from
``stages.ops.kernels("ours")`` against ``kernels("torchvision")`` on the same random boxes, checks
that both give the same result (``roi_align``: equal to 1e-4, since it sums in another order), and
prints a markdown table (median of ``--repeats`` runs, milliseconds)::

    python benchmarks/bench_ops.py                 # 2000 boxes, about the RPN's post-NMS count
    python benchmarks/bench_ops.py --n 300 --threads 1

The boxes look like proposals: a 512 x 512 image, sides from 8 to 128 pixels, uniform scores,
``--classes`` categories for ``batched_nms``. ``roi_align`` pools the same boxes, as RoIs of two
images, from a stride-16 map (32 x 32, ``--channels`` channels) to 7 x 7 with 2 x 2 points per bin
(Mask R-CNN's box head), alone and with its backward pass (what a training step pays);
``roi_pool`` pools them to 7 x 7 by max over quantised bins (Fast R-CNN's RoI pooling).

``main(argv)`` parses the flags and calls ``benchmark(n=..., repeats=..., ...)`` (the same settings
as keyword arguments), which prints the table and returns its numbers ({op: {"ours_ms",
"torchvision_ms", "ratio", "same"}}), so ``benchmarks/run_all.py`` can call it.

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


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="number of boxes")
    parser.add_argument("--classes", type=int, default=20, help="categories for batched_nms")
    parser.add_argument("--channels", type=int, default=96, help="roi_align's feature channels (96: our C3)")
    parser.add_argument("--iou-threshold", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    return benchmark(**vars(parser.parse_args(argv)))


def benchmark(*, n: int = 2000, classes: int = 20, channels: int = 96, iou_threshold: float = 0.5,
              repeats: int = 7, seed: int = 0, threads: int | None = None) -> dict:
    """What ``main`` runs, its flags as keyword arguments: prints the table, returns its numbers."""
    if threads is not None:
        torch.set_num_threads(threads)

    boxes, scores, idxs = random_proposals(n, classes, seed)
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, channels, 32, 32, generator=g, requires_grad=True)  # 512 px / stride 16
    rois = torch.cat([torch.arange(n)[:, None] % 2, boxes], dim=1)  # (n, 5), alternate images
    align = dict(output_size=7, spatial_scale=1 / 16, sampling_ratio=2, aligned=True)

    def align_and_backward(k):
        pooled = k.roi_align(features, rois, **align)
        (grad,) = torch.autograd.grad(pooled.sum(), features)
        return grad

    ours, theirs = kernels("ours"), kernels("torchvision")
    calls = {  # op -> how to call it on an implementation k
        "box_iou": lambda k: k.box_iou(boxes, boxes),
        "nms": lambda k: k.nms(boxes, scores, iou_threshold),
        "batched_nms": lambda k: k.batched_nms(boxes, scores, idxs, iou_threshold),
        "roi_pool": lambda k: k.roi_pool(features.detach(), rois, output_size=7,
                                         spatial_scale=1 / 16),  # no autograd graph
        "roi_align": lambda k: k.roi_align(features.detach(), rois, **align),
        "roi_align + backward": align_and_backward,
    }

    print(f"{n} boxes, {classes} classes, IoU threshold {iou_threshold}, "
          f"roi_align on {tuple(features.shape)} to 7 x 7, "
          f"{torch.get_num_threads()} torch threads, median of {repeats}, "
          f"torch {torch.__version__}\n")
    print("| op | ours (ms) | torchvision (ms) | ours / torchvision | same result |")
    print("|---|---:|---:|---:|---|")
    results = {}
    for op, call in calls.items():
        a, b = call(ours), call(theirs)
        same = torch.allclose(a, b, atol=1e-4) if op.startswith("roi_align") else torch.equal(a, b)
        ms_ours = median_ms(lambda: call(ours), repeats)
        ms_theirs = median_ms(lambda: call(theirs), repeats)
        print(f"| {op} | {ms_ours:.2f} | {ms_theirs:.2f} | {ms_ours / ms_theirs:.1f}x | {same} |")
        results[op] = {"ours_ms": ms_ours, "torchvision_ms": ms_theirs,
                       "ratio": ms_ours / ms_theirs, "same": bool(same)}
    return results


if __name__ == "__main__":
    main()
