"""Sliding windows against three selective searches: how many boxes, how much recall, how much time.

R-CNN's first lesson (sec. 2.1), on the built-in synthetic set and on real photos: for each data
source, on its first ``--n`` validation images, print for each proposal method the proposals per
image, the recall of the ground truth at IoU 0.5 and 0.7 with all of them, and the milliseconds
per image; then the recall after the first n proposals, for several n (what a cap
``--ss-max-boxes n`` keeps)::

    python benchmarks/bench_proposals.py                    # synthetic, then Penn-Fudan if present
    python benchmarks/bench_proposals.py --data synthetic   # one source
    python benchmarks/bench_proposals.py --no-cache         # time selective search afresh
    python benchmarks/bench_proposals.py --sw-stride 0.25   # denser windows: recall vs cost

The methods (``stages.selective_search``): sliding windows, R-CNN's baseline; selective search by
the ``selectivesearch`` package (one hierarchy, the readable version, made for our 128-px shapes);
by OpenCV's fast and quality modes (the paper's diversified search); and OpenCV's modes capped at
their first ``--caps`` boxes (their ranking puts large regions first), rows named ``[:n]``. Images
longer than ``--long-side`` (256) pixels, as Penn-Fudan's photos, are resized to it, as the
stages' ``--long-side 256`` reads them; a source that is not there is skipped, and said so.

Selective search goes through the proposal cache of ``stages.rcnn`` (under
``<data-root>/proposals``); a cached entry reports the milliseconds measured when it was
computed (on ``--workers`` processes). ``--no-cache`` computes everything now, on one process,
one image at a time on one core, and times that.

``main(argv)`` parses the flags and calls ``benchmark(n=..., data=[...], ...)`` (the same settings
as keyword arguments), which prints the reports and returns them, ``{source: proposal_report's
dict}``, so ``benchmarks/run_all.py`` can call it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

from stages.data.datasets import DatasetError  # noqa: E402
from stages.data.sources import load_dataset  # noqa: E402
from stages.data.transforms import val_transforms  # noqa: E402
from stages.rcnn.config import RCNNConfig  # noqa: E402
from stages.rcnn.proposers import (SS_METHODS, TOP_N, compute_proposals,  # noqa: E402
                                   format_proposal_report, proposal_report)
from stages.selective_search import CACHE_DIR  # noqa: E402

PENNFUDAN = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "PennFudanPed"
DATA = ("synthetic", f"pennfudan:{PENNFUDAN}")
TOP = tuple(sorted({*TOP_N, 300, 750}))  # the recall table's n: TOP_N and two more caps


def load_validation(spec: str, data_root: str, long_side: int, n: int):
    """``(images, gt_boxes, what)`` of the first ``n`` validation images of ``spec``, those with a
    longer side than ``long_side`` resized to it (``val_transforms(long_side)``, as ``--long-side``
    makes the stages read them), or ``(None, None, why)`` when the source is not there."""
    try:
        _, val = load_dataset(spec, data_root)
        items = [val[i] for i in range(min(n, len(val)))]
    except (DatasetError, OSError) as e:
        return None, None, f"skipped: {str(e).splitlines()[0]}"
    resize = val_transforms(long_side)
    items = [resize(im, t) if max(im.shape[-2:]) > long_side else (im, t) for im, t in items]
    sides = [max(im.shape[-2:]) for im, _ in items]  # the long side of each image, pixels
    what = (f"{len(items)} validation images (long side {min(sides, default=0)} to "
            f"{max(sides, default=0)} px), {sum(len(t['boxes']) for _, t in items)} objects")
    return [im for im, _ in items], [t["boxes"] for _, t in items], what


def bench_source(images, gt, cfg: RCNNConfig, cache_root, workers: int, caps: tuple) -> dict:
    """Every method's proposals of ``images``, scored: ``proposal_report``'s dict."""
    rows = {}
    sw_cfg = dataclasses.replace(cfg, proposals="sliding_window")
    windows, seconds, summary = compute_proposals(images, sw_cfg)
    print(f"# {summary}")
    rows["sliding_window"] = (windows, seconds)
    for method in SS_METHODS:
        ss_cfg = dataclasses.replace(cfg, proposals="selective_search", ss_method=method)
        boxes, seconds, summary = compute_proposals(images, ss_cfg, cache_root, workers)
        print(f"# {method}: {summary}")
        name = f"selective_search {method}"
        rows[name] = (boxes, seconds)
        if method == "package":
            continue
        for cap in caps:  # the first `cap` of the same boxes: the same search, so the same time
            if cap < max(len(b) for b in boxes):
                rows[f"{name}[:{cap}]"] = ([b[:cap] for b in boxes], seconds)
    return proposal_report(gt, rows, top_n=TOP)


def print_recall_table(report: dict) -> None:
    """Recall at IoU 0.5 / 0.7 after the first n proposals of each uncapped method."""
    full = {name.replace("selective_search ", ""): r for name, r in report.items()
            if "[:" not in name}  # the capped rows are the first n of these
    print("\nrecall after the first n proposals (IoU 0.5 / 0.7):")
    print(f"{'n':>6}  " + "  ".join(f"{name:>15}" for name in full))
    for top in TOP:
        cells = [f"{r['recall'][0.5][top]:.3f} / {r['recall'][0.7][top]:.3f}"
                 for r in full.values()]
        print(f"{top:>6}  " + "  ".join(f"{c:>15}" for c in cells))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100,
                        help="validation images per source (default: 100)")
    parser.add_argument("--data", nargs="+", default=list(DATA),
                        help="the sources, --data specs (default: synthetic and Penn-Fudan)")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--long-side", type=int, default=256,
                        help="larger images resized to this long side, pixels (default: 256)")
    parser.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                        help="read/write selective search through the disk cache")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--caps", type=int, nargs="*", default=[500, 750, 1000],
                        help="also score OpenCV's first this many boxes (default: 500 750 1000)")
    parser.add_argument("--sw-stride", type=float, default=RCNNConfig.sw_stride)
    parser.add_argument("--ss-scale", type=float, default=RCNNConfig.ss_scale)
    parser.add_argument("--ss-min-size", type=int, default=RCNNConfig.ss_min_size)
    return benchmark(**vars(parser.parse_args(argv)))


def benchmark(*, n: int = 100, data: Sequence[str] = DATA, data_root: str = "data",
              long_side: int = 256, cache: bool = True, workers: int = 2,
              caps: Sequence[int] = (500, 750, 1000), sw_stride: float = RCNNConfig.sw_stride,
              ss_scale: float = RCNNConfig.ss_scale,
              ss_min_size: int = RCNNConfig.ss_min_size) -> dict:
    """What ``main`` runs, its flags as keyword arguments (``data``: the sources, as --data takes
    them): prints the reports, returns them."""
    cfg = RCNNConfig(sw_stride=sw_stride, ss_scale=ss_scale,
                     ss_min_size=ss_min_size, workers=workers)
    cache_root = Path(data_root) / CACHE_DIR if cache else None
    workers = workers if cache else 1
    reports = {}
    for spec in data:
        images, gt, what = load_validation(spec, data_root, long_side, n)
        print(f"\n== {spec}: {what}")
        if images is None:
            continue
        report = bench_source(images, gt, cfg, cache_root, workers, tuple(caps))
        print()
        print(format_proposal_report(report))
        print_recall_table(report)
        reports[spec] = report
    return reports


if __name__ == "__main__":
    main()
