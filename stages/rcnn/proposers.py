"""Proposals for R-CNN: the two methods behind one call, computed in parallel, and their report.

The methods themselves live in their own modules: ``stages.rcnn.sliding_windows`` (R-CNN's
baseline) and ``stages.selective_search`` with its disk cache ``ProposalCache`` (shared with Fast
R-CNN). Here:

    make_proposer(cfg)            image [3, H, W] -> boxes [P, 4]: what the model calls at test time
    compute_proposals(images)     the proposals of many images, with the seconds each one took:
                                  selective search through the cache, on several processes
    proposal_report(...)          the first lesson of the stage: recall of the ground truth at IoU
                                  0.5 and 0.7 against the number of proposals per image, and the
                                  milliseconds per image, for each method
    report_methods(cfg)           the methods the report compares: sliding windows and the three
                                  selective searches (the package, OpenCV fast, OpenCV quality)
    compare_methods(...)          their proposals for a few images, the run's own on all of them
                                  and the others, which cost more, on the first few (the cache
                                  keeps them for the next run)
    format_proposal_report, plot_recall   the report printed, and drawn for the notebook

Why selective search (sec. 2.1)? Sliding windows must try every size, shape and position, so
they need thousands of windows per image to cover the objects, and they rarely fit one tightly
(low recall at IoU 0.7). Selective search proposes the boxes of *image regions*, which follow
object boundaries: a hundred of them cover most of our synthetic shapes, at a cost of ~0.1 s per
image. Photos need the paper's diversified search (OpenCV's modes): hundreds to thousands of boxes
and 0.2-0.8 s per 256-px photo (``stages.selective_search``).

Where the time goes: at test time the model runs its proposer on every image (live, not from the
cache), so the evaluator's wall clock and the "proposals" time agree. Training images are read
through the cache, which keeps the seconds each computation took, so a second run trains in
less wall time but reports the same proposal cost.
"""

from __future__ import annotations

import dataclasses
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
SS_METHODS = ("package", "opencv_fast", "opencv_quality")  # SelectiveSearchConfig.ss_method
OTHER_METHOD_IMAGES = 20  # the selective searches a run does not use, on this many images only:
#                           OpenCV's quality mode takes ~1 s per 256-px photo


def report_methods(cfg: RCNNConfig) -> dict[str, RCNNConfig]:
    """The report's rows, ``{name: the config that proposes them}``: sliding windows, then
    selective search by each method. The run's own method keeps its settings (``ss_max_boxes``
    among them) and its name says "(this run)"; the others give all their boxes."""
    own = cfg.ss_method or "package"
    rows = {"sliding_window": dataclasses.replace(cfg, proposals="sliding_window")}
    for method in SS_METHODS:
        mine = cfg.proposals == "selective_search" and method == own
        name = f"selective_search {method}" + (" (this run)" if mine else "")
        rows[name] = dataclasses.replace(cfg, proposals="selective_search", ss_method=method,
                                         ss_max_boxes=cfg.ss_max_boxes if method == own else None)
    return rows


def compare_methods(images: list[Tensor], gt_boxes: list[Tensor], cfg: RCNNConfig, cache_root=None,
                    workers: int = 1, other_images: int = OTHER_METHOD_IMAGES) -> dict:
    """``proposal_report`` of every row of ``report_methods(cfg)`` on ``images``: sliding windows
    and the run's own proposals on all of them, the other selective searches on the first
    ``other_images`` only (each row's ``"images"`` says how many), through the cache."""
    methods = {}
    for name, row_cfg in report_methods(cfg).items():
        cheap = (row_cfg.proposals == "sliding_window"
                 or row_cfg.selective_search() == cfg.selective_search())  # the run's own
        subset = images if cheap else images[:other_images]
        boxes, seconds, _ = compute_proposals(subset, row_cfg, cache_root, workers)
        methods[name] = (boxes, seconds)
    return proposal_report(gt_boxes, methods)


def proposal_report(gt_boxes: list[Tensor], methods: dict, top_n: tuple = TOP_N) -> dict:
    """Recall of ``gt_boxes`` (one [N_i, 4] per image) for each method.

    methods: ``{name: (boxes per image, seconds per image)}``; a method with fewer images than
    ``gt_boxes`` is scored on the first ones. Returns ``{name: {"recall": {0.5: {n: r}, 0.7:
    {n: r}}, "recall_all": {0.5: r, 0.7: r}, "mean_proposals": float, "ms_per_image": float,
    "images": int}}``. Each method's proposals are taken in their own order (the package: its
    hierarchy, small to large; OpenCV: its ranking, large first; sliding windows: size by size),
    as R-CNN uses them (all of them, or the first ``ss_max_boxes``).
    """
    report = {}
    for name, (boxes, seconds) in methods.items():
        gt = gt_boxes[:len(boxes)]
        recall = proposal_recall(boxes, gt, top_n=top_n)
        all_n = max((len(b) for b in boxes), default=0)
        full = proposal_recall(boxes, gt, top_n=(max(all_n, 1),))  # every proposal
        report[name] = {"recall": {t: recall[t] for t in (0.5, 0.7)},
                        "recall_all": {t: full[t][max(all_n, 1)] for t in (0.5, 0.7)},
                        "mean_proposals": recall["mean_proposals"],
                        "ms_per_image": 1000 * float(np.mean(seconds)) if seconds else 0.0,
                        "images": len(boxes)}
    return report


def format_proposal_report(report: dict) -> str:
    """One row per method: images scored, proposals per image, recall at 0.5 / 0.7 with all of
    them, ms per image."""
    width = max([18, *(len(name) for name in report)])
    lines = [f"{'method':<{width}} {'images':>6} {'proposals/img':>13} {'recall@0.5':>10} "
             f"{'recall@0.7':>10} {'ms/img':>8}"]
    for name, r in report.items():
        lines.append(f"{name:<{width}} {r['images']:>6} {r['mean_proposals']:>13.0f} "
                     f"{r['recall_all'][0.5]:>10.3f} {r['recall_all'][0.7]:>10.3f} "
                     f"{r['ms_per_image']:>8.1f}")
    return "\n".join(lines)


def plot_recall(ax, report: dict) -> None:
    """Recall against proposals per image (log x), one colour per method, solid at IoU 0.5 and
    dashed at 0.7; each line ends at the mean number of proposals with the recall of all of them.
    The legend sits below the axes, where it hides no line."""
    from matplotlib.lines import Line2D

    styles = {0.5: "-", 0.7: "--"}
    handles = []
    for i, (name, r) in enumerate(report.items()):
        colour = f"C{i}"
        for t, style in styles.items():
            ns = sorted(n for n in r["recall"][t] if n < r["mean_proposals"])
            xs = ns + [r["mean_proposals"]]
            ys = [r["recall"][t][n] for n in ns] + [r["recall_all"][t]]
            ax.plot(xs, ys, style, marker="o", ms=3, color=colour)
        handles.append(Line2D([], [], color=colour, marker="o", ms=3,
                              label=f"{name} ({r['ms_per_image']:.0f} ms/img)"))
    handles += [Line2D([], [], color="0.3", linestyle=style, label=f"IoU {t}")
                for t, style in styles.items()]
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image (first n)")
    ax.set_ylabel("recall of ground truth")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2,
              frameon=False)
