"""The comparison's figure: accuracy against speed, where the test time goes, what training buys.

Drawn from the rows of ``stages/compare_report.py`` (one ``Row`` per run: its entry, its
``Result`` and its learning curve). ``python -m stages.compare`` saves the whole figure as
``comparison.png``; notebook 05 draws the first two panels; ``python -m stages.figures`` redraws
it from ``comparison.json`` as ``13_comparison.png``.

    plot_accuracy_vs_speed   box AP (and mask AP) against test ms per image, log x: the papers'
                             story as one path from R-CNN (slow) to Faster / Mask R-CNN (fast)
    plot_time_split          test ms per image = proposal ms + network ms, one bar per row
                             (Fast R-CNN's Table 4 and Faster R-CNN's Table 5 time the two apart)
    plot_learning_curves     validation box AP against seconds of training (``--eval-every``)
    plot_error_breakdown     one stacked bar per row: the box AP50 each of TIDE's error types
                             costs (``stages/evaluation/errors.py``): why each generation gains
    plot_comparison          the four, two by two, one Figure

Markers: a circle is one of our stages, a diamond a torchvision peer, an open square mask AP.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import matplotlib
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from stages.figures.draw import PALETTE

if TYPE_CHECKING:  # only for the annotations: keeps ``import stages.figures...`` light
    from stages.compare_report import Row


def _ms(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.1f}"


def plot_accuracy_vs_speed(ax, rows: list[Row]) -> None:
    """Box AP (filled: a circle for ours, a diamond for torchvision) and mask AP (open square)
    against test ms per image, log x: one decade of speed is as wide as the next."""
    xs = [r.result.ms_per_image for r in rows]
    ours = [(r.result.ms_per_image, r.result.box["AP"]) for r in rows
            if r.entry.peer is None and r.entry.ablation_of is None]
    if len(ours) > 1:  # the generations in order: the path the papers took
        ax.plot(*zip(*ours), color="#999999", linestyle="--", linewidth=1, zorder=1)
    points = [(math.log10(r.result.ms_per_image), r.result.box["AP"]) for r in rows]

    def higher_neighbours(i: int) -> int:  # points close to point i (on the plot) and above it
        lx, ly = points[i]
        return sum(abs(lx - x) < 0.35 and 0 < y - ly < 10 or (y == ly and j < i)
                   for j, (x, y) in enumerate(points) if j != i and abs(lx - x) < 0.35)

    for i, row in enumerate(rows):
        colour = PALETTE[i % len(PALETTE)]
        x, box = row.result.ms_per_image, row.result.box["AP"]
        if box != -1:
            ax.scatter([x], [box], s=90, color=colour, edgecolor="black", zorder=3,
                       marker="D" if row.entry.peer else "o")
            # the topmost of a cluster labelled above its point, each one lower a line below
            below = higher_neighbours(i)
            offset = (10, 6) if not below else (10, -18 * below)
            ax.annotate(row.entry.title, (x, box), xytext=offset, textcoords="offset points",
                        fontsize=12, color=colour, fontweight="bold")
        if row.result.mask and row.result.mask["AP"] != -1:
            ax.scatter([x], [row.result.mask["AP"]], s=70, marker="s", facecolor="white",
                       edgecolor=colour, linewidth=2, zorder=3)
    ax.set_xscale("log")
    ax.set_xlim(min(xs) / 2, max(xs) * 3)  # room for the labels on the right
    ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))  # ticks at 1, 2, 5, 10, 20, 50, ...
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # "20", not "2 x 10^1"
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, 100)
    ax.set_xlabel("test time per image (ms, log scale; left is faster)")
    ax.set_ylabel("COCO AP (%), higher is better")
    ax.set_title("Accuracy against speed")
    ax.grid(True, which="major", alpha=0.3)
    handles = [Line2D([], [], marker="o", linestyle="", color="grey", markeredgecolor="black",
                      markersize=8, label="box AP")]
    if any(r.entry.peer for r in rows):
        handles.append(Line2D([], [], marker="D", linestyle="", color="grey",
                              markeredgecolor="black", markersize=7, label="box AP, torchvision"))
    handles.append(Line2D([], [], marker="s", linestyle="", markerfacecolor="white",
                          markeredgecolor="grey", markeredgewidth=2, markersize=8, label="mask AP"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14),
              ncol=len(handles))  # below the axes: no point or label is hidden


def plot_time_split(ax, rows: list[Row]) -> None:
    """One stacked bar per stage: proposal ms + network ms = test ms per image (linear axis, so
    the lengths add up; each bar is labelled with its numbers, which keeps a 10 ms bar readable
    beside a 200 ms one)."""
    proposal_colour, network_colour = "#ff7f0e", "#1f77b4"
    y = list(range(len(rows)))
    proposals = [max(r.result.ms_proposals, 0.0) for r in rows]
    network = [max(r.result.ms_network, 0.0) for r in rows]
    ax.barh(y, proposals, color=proposal_colour, label="proposals")
    ax.barh(y, network, left=proposals, color=network_colour, label="network (features + heads)")
    longest = max(p + n for p, n in zip(proposals, network)) or 1.0
    for i, (p, n) in enumerate(zip(proposals, network)):
        ax.text(p + n + 0.01 * longest, i, f"{_ms(p + n)} ms = {_ms(p)} + {_ms(n)}",
                va="center", fontsize=11)
    ax.set_yticks(y, [r.entry.title for r in rows])
    ax.invert_yaxis()  # the first generation on top
    ax.set_xlim(0, longest * 1.55)  # room for the labels
    ax.set_xlabel("test time per image (ms)")
    ax.set_title("Where the test time goes")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(handles=[Patch(color=proposal_colour, label="proposals"),
                       Patch(color=network_colour, label="network (features + heads)")],
              loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # below: bars stay clear


def plot_learning_curves(ax, rows: list[Row]) -> None:
    """Validation box AP against seconds of training, one line per row: what a budget buys.
    (R-CNN's seconds are its CNN's fine-tuning and the SVMs' and regressors' fitting; its one
    point is the trained model's.)"""
    for i, row in enumerate(rows):
        if not row.curve:
            continue
        seconds, values = zip(*row.curve)
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(seconds, values, "-" if len(values) > 1 else "", marker="D" if row.entry.peer else "o",
                color=colour, markeredgecolor="black", label=row.entry.title)
    ax.set_ylim(0, 100)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds of training")
    ax.set_ylabel("validation box AP (%)")
    ax.set_title("What the training budget buys")
    ax.grid(True, alpha=0.3)
    if any(row.curve for row in rows):  # (rows read from a file written before the curves: none)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=10)


# one colour per error type, the order of TIDE's figures: the two that move a box first
ERROR_COLOURS = {"cls": "#e15759", "loc": "#f28e2b", "both": "#b07aa1", "dupe": "#59a14f",
                 "bkg": "#4e79a7", "missed": "#9c755f"}
ERROR_LABELS = {"cls": "cls: wrong class", "loc": "loc: box off", "both": "both",
                "dupe": "dupe: second box", "bkg": "bkg: box on nothing",
                "missed": "missed: no box"}


def plot_error_breakdown(ax, rows: list[Row]) -> None:
    """One stacked bar per row: the box AP50 points that fixing each of TIDE's error types would
    add (dAP), each type its colour, the bar labelled with the row's AP50. The dAPs are measured
    one type at a time, so a bar is their sum, not exactly 100 - AP50 (the fixes interact)."""
    y = list(range(len(rows)))
    left = [0.0] * len(rows)
    for kind, colour in ERROR_COLOURS.items():
        values = [(r.result.errors.get("box") or {}).get("dAP", {}).get(kind, 0.0) for r in rows]
        ax.barh(y, values, left=left, color=colour, label=ERROR_LABELS[kind])
        for i, v in enumerate(values):
            if v >= 1.2:  # a number where it fits
                ax.text(left[i] + v / 2, i, f"{v:.1f}", ha="center", va="center", fontsize=10,
                        color="white", fontweight="bold")
        left = [a + v for a, v in zip(left, values)]
    longest = max(left) if left and max(left) > 0 else 1.0
    for i, row in enumerate(rows):
        b = row.result.errors.get("box")
        ax.text(left[i] + 0.01 * longest, i, f"AP50 {b['ap50']:.1f}" if b else "no breakdown",
                va="center", fontsize=11)
    ax.set_yticks(y, [r.entry.title for r in rows])
    ax.invert_yaxis()  # the first generation on top
    ax.set_xlim(0, longest * 1.3)
    ax.set_xlabel("box AP50 points that fixing the error type would add (dAP)")
    ax.set_title("Why each generation gains: the AP50 each error type costs (TIDE)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=10)


# text sizes that stay legible when the 16-inch figure is a 1920-px slide (12 pt and more there)
FONTS = {"font.size": 12, "axes.titlesize": 14, "axes.labelsize": 13, "xtick.labelsize": 12,
         "ytick.labelsize": 12, "legend.fontsize": 11}


def plot_comparison(rows: list[Row], subtitle: str = "") -> Figure:
    """The four panels, two by two; ``subtitle`` (the run's settings) under the title, which says
    what to look for."""
    with matplotlib.rc_context(FONTS):
        fig = Figure(figsize=(16, 11.5))
        (top_left, top_right), (bottom_left, bottom_right) = fig.subplots(2, 2)
        plot_accuracy_vs_speed(top_left, rows)
        plot_time_split(top_right, rows)
        plot_learning_curves(bottom_left, rows)
        plot_error_breakdown(bottom_right, rows)
        title = ("From R-CNN to Mask R-CNN on the same data: up and to the left is better; the "
                 "shorter a bar at the right, the fewer AP50 points lost to errors")
        fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""), fontsize=15)
        fig.tight_layout()
    return fig
