"""Proposals for R-CNN: the two methods behind one call, computed in parallel, and their report.

The methods themselves live in their own modules: ``stages.rcnn.sliding_windows`` (R-CNN's
baseline) and ``stages.selective_search`` with its disk cache ``ProposalCache`` (shared with Fast
R-CNN). Here:

    make_proposer(cfg)            image [3, H, W] -> boxes [P, 4]: what the model calls at test time
    compute_proposals(images)     the proposals of many images, with the seconds each one took:
                                  selective search through the cache, on several processes
    proposal_report(...)          the first lesson of the stage: recall of the ground truth at IoU
                                  0.5 and 0.7 against the number of proposals per image, and the
                                  milliseconds per image, for both methods
    format_proposal_report, plot_recall   the report printed, and drawn for the notebook

Why selective search (sec. 2.1)? Sliding windows must try every size, shape and position, so
they need thousands of windows per image to cover the objects, and they rarely fit one tightly
(low recall at IoU 0.7). Selective search proposes the boxes of *image regions*, which follow
object boundaries: a hundred of them cover most objects, at a cost of ~0.1-0.3 s per image.

Where the time goes: at test time the model runs its proposer on every image (live, not from the
cache), so the evaluator's wall clock and the "proposals" time agree. Training images are read
through the cache, which keeps the seconds each computation took, so a second run trains in
less wall time but reports the same proposal cost.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stages.rcnn.config import RCNNConfig
from stages.rcnn.sliding_windows import sliding_windows
from stages.evaluation import proposal_recall
from stages.selective_search import ProposalCache, selective_search


class SlidingWindowProposer:
    """image [3, H, W] -> every window of the config (``stages.rcnn.sliding_windows``)."""

    def __init__(self, cfg: RCNNConfig):
        self.cfg = cfg.sliding_window()

    def __call__(self, image: Tensor) -> Tensor:
        return sliding_windows(tuple(image.shape[-2:]), self.cfg)


class SelectiveSearchProposer:
    """image [3, H, W] -> selective-search boxes, computed now (``stages.selective_search``)."""

    def __init__(self, cfg: RCNNConfig):
        self.cfg = cfg.selective_search()

    def __call__(self, image: Tensor) -> Tensor:
        return selective_search(image, self.cfg)


def make_proposer(cfg: RCNNConfig):
    """The proposer ``--proposals`` names."""
    if cfg.proposals == "sliding_window":
        return SlidingWindowProposer(cfg)
    return SelectiveSearchProposer(cfg)


def _cached_selective_search(job):
    """Runs in a worker process: one image through the cache -> (boxes, seconds, was cached)."""
    cache, image = job
    hits = cache.hits
    boxes, seconds = cache.get(image)
    return boxes, seconds, cache.hits > hits


def _one_thread():
    torch.set_num_threads(1)  # each worker is one process on one core


def compute_proposals(images: list[Tensor], cfg: RCNNConfig, cache_root=None, workers: int = 1):
    """Proposals for many images: ``(boxes [P_i, 4] per image, seconds per image, summary)``.

    Sliding windows are computed here (milliseconds). Selective search goes through the cache
    under ``cache_root`` (no cache if None); missing entries are computed on ``workers``
    processes. The seconds are per image as measured when each was computed, whichever process
    did it, so that they stay comparable with the test-time timing.
    """
    if cfg.proposals == "sliding_window" or cache_root is None:  # computed here, one by one
        proposer, boxes, seconds = make_proposer(cfg), [], []
        for image in images:
            t0 = time.perf_counter()
            boxes.append(proposer(image))
            seconds.append(time.perf_counter() - t0)
        what = ("sliding windows" if cfg.proposals == "sliding_window"
                else "selective search (no cache)")
        return boxes, seconds, f"{what} computed for {len(images)} images"
    cache = ProposalCache(Path(cache_root), cfg.selective_search())
    jobs = [(cache, image) for image in images]
    t0 = time.perf_counter()
    if workers > 1 and len(images) > 1:
        # fork: the workers start at once and inherit the imports; one torch thread each
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_one_thread) as pool:
            results = list(pool.map(_cached_selective_search, jobs, chunksize=8))
    else:
        results = [_cached_selective_search(job) for job in jobs]
    wall = time.perf_counter() - t0
    boxes = [r[0] for r in results]
    seconds = [r[1] for r in results]
    n_cached = sum(r[2] for r in results)
    n_new = len(images) - n_cached
    summary = (f"selective search: {n_cached} of {len(images)} images read from the cache "
               f"({cache.folder}), {n_new} computed in {wall:.0f} s on {workers} processes; "
               f"{1000 * np.mean(seconds) if seconds else 0:.0f} ms per image as measured")
    return boxes, seconds, summary


# ------------------------------------------------------------------------------------------------
# The proposal report: recall against the number of proposals, and time
# ------------------------------------------------------------------------------------------------

TOP_N = (10, 25, 50, 100, 200, 500, 1000, 2000, 5000)


def proposal_report(gt_boxes: list[Tensor], methods: dict, top_n: tuple = TOP_N) -> dict:
    """Recall of ``gt_boxes`` (one [N_i, 4] per image) for each method.

    methods: ``{name: (boxes per image, seconds per image)}``. Returns ``{name: {"recall":
    {0.5: {n: r}, 0.7: {n: r}}, "mean_proposals": float, "ms_per_image": float}}``. Each method's
    proposals are taken in their own order (selective search: its hierarchy, small to large;
    sliding windows: size by size), as R-CNN uses them (all of them).
    """
    report = {}
    for name, (boxes, seconds) in methods.items():
        recall = proposal_recall(boxes, gt_boxes, top_n=top_n)
        all_n = max((len(b) for b in boxes), default=0)
        full = proposal_recall(boxes, gt_boxes, top_n=(max(all_n, 1),))  # every proposal
        report[name] = {"recall": {t: recall[t] for t in (0.5, 0.7)},
                        "recall_all": {t: full[t][max(all_n, 1)] for t in (0.5, 0.7)},
                        "mean_proposals": recall["mean_proposals"],
                        "ms_per_image": 1000 * float(np.mean(seconds)) if seconds else 0.0}
    return report


def format_proposal_report(report: dict) -> str:
    """One row per method: proposals per image, recall at 0.5 / 0.7 with all of them, ms/img."""
    lines = [f"{'method':<18} {'proposals/img':>13} {'recall@0.5':>10} {'recall@0.7':>10} "
             f"{'ms/img':>8}"]
    for name, r in report.items():
        lines.append(f"{name:<18} {r['mean_proposals']:>13.0f} {r['recall_all'][0.5]:>10.3f} "
                     f"{r['recall_all'][0.7]:>10.3f} {r['ms_per_image']:>8.1f}")
    return "\n".join(lines)


def plot_recall(ax, report: dict) -> None:
    """Recall against proposals per image (log x), one line per method and IoU threshold; each
    line ends at the mean number of proposals with the recall of all of them."""
    styles = {0.5: "-", 0.7: "--"}
    for i, (name, r) in enumerate(report.items()):
        colour = f"C{i}"
        for t, style in styles.items():
            ns = sorted(n for n in r["recall"][t] if n < r["mean_proposals"])
            xs = ns + [r["mean_proposals"]]
            ys = [r["recall"][t][n] for n in ns] + [r["recall_all"][t]]
            ax.plot(xs, ys, style, marker="o", ms=3, color=colour,
                    label=f"{name}, IoU {t} ({r['ms_per_image']:.0f} ms/img)")
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image (first n)")
    ax.set_ylabel("recall of ground truth")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
