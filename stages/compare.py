"""``python -m stages.compare``: every stage on the same data and split -> one table, one plot.

    python -m stages.compare                                  all four stages, quick preset
    python -m stages.compare --stages rcnn fast_rcnn          two generations only
    python -m stages.compare --peers                          + torchvision's Faster / Mask R-CNN
    python -m stages.compare --from-scratch                   + Mask R-CNN from random weights
    python -m stages.compare --retrain                        train again even what could be reused

What it shows is the story of the four papers in numbers, as in the Mask R-CNN paper's Table 1
(AP, AP50, AP75, APs/m/l, mask AP) with the time columns of the Fast and Faster R-CNN papers beside
it: test time per image, split into proposals and network, falls generation by generation
(Fast R-CNN: one CNN pass per image instead of one per region; Faster R-CNN: an RPN on the shared
features instead of selective search), while AP holds or rises.

How it runs
-----------
Each stage is its own command (``python -m stages.<stage>``) with a ``main(argv)`` that trains,
evaluates and writes ``metrics.json`` (the shared ``Result`` record) and ``checkpoint.pt`` into its
``--out``. ``compare`` calls each stage's ``main`` in turn, in this process, with the same shared
run flags (``RunConfig``'s: ``--data --val-data --preset --epochs --time-budget --eval-every`` ...)
and ``--out <out>/<stage>``. Nothing here trains or evaluates a model itself.

Reuse. After a stage finishes, ``<out>/<stage>/compare_settings.json`` records the settings it was
run with. A later ``compare`` with the same settings reads that stage's ``metrics.json`` instead of
training again ("reused"); a run that was interrupted (the record says "running" and a checkpoint
was written since it started) goes on with the stage's own ``--resume`` ("resumed").
``--retrain`` ignores both.

Writes into --out (default runs, the folder the stage commands, notebooks and figures use too):
``<stage>/`` (each stage's own outputs),
``comparison.json`` (the rows, the full result records, the settings, the ratios),
``comparison.csv``, ``comparison.md`` and ``comparison.png`` (AP against test time; where the
test time goes; validation AP against seconds of training, from each run's ``--eval-every``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import importlib
import io as text_io
import json
import math
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from stages.training import io
from stages.training.cli import RunConfig, add_dataclass_args, command_parser
from stages.figures.draw import PALETTE, validation_curve
from stages.training.engine import CHECKPOINT
from stages.evaluation.loop import METRIC_NAMES, Result, align_columns, explain_missing, format_count
from stages.training.run import METRICS, read_history

SETTINGS = "compare_settings.json"
DEFAULT_OUT = Path("runs")  # the one place for runs: stage commands write runs/<stage> too


# ------------------------------------------------------------------------------------------------
# What is compared: one line per stage (and per torchvision peer)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One row of the comparison: which command makes it and what that generation changed."""
    name: str       # the --stages name and the folder under --out
    module: str     # the module run as ``python -m <module>``
    title: str      # the paper's name, for tables and plots
    proposals: str  # where the regions come from
    pooling: str    # how a region becomes a fixed-size feature
    peer: str | None = None  # for torchvision peers: the ``kind`` passed to ``run_peer``
    extra_argv: tuple = ()  # flags of its own, after the shared ones
    ablation_of: str | None = None  # the stage this row changes one thing of (not a generation)
    unused: tuple = ()  # shared run flags its command does not take


# Modules are named as strings, not imported, because a stage that is not built yet must only be
# skipped (``load_main``), not break ``compare`` for the stages that are.
STAGES = (
    Entry("rcnn", "stages.rcnn", "R-CNN", "selective search", "crop + warp (227 px in paper)",
          unused=("eval_every",)),  # R-CNN's AP exists only once its SVMs are trained
    Entry("fast_rcnn", "stages.fast_rcnn", "Fast R-CNN", "selective search", "RoIPool"),
    Entry("faster_rcnn", "stages.faster_rcnn", "Faster R-CNN", "RPN", "RoIPool"),
    Entry("mask_rcnn", "stages.mask_rcnn", "Mask R-CNN", "RPN", "RoIAlign"),
)
# torchvision's models on the same backbone, trained on the same data (the project's target: "ours
# must match or beat these at the same budget, measured side by side in one run")
PEER_MODULE = "stages.torchvision.peers"  # python -m stages.torchvision.peers faster_rcnn|mask_rcnn
PEERS = (
    Entry("torchvision_faster_rcnn", PEER_MODULE, "torchvision Faster R-CNN", "RPN",
          "RoIAlign", peer="faster_rcnn"),
    Entry("torchvision_mask_rcnn", PEER_MODULE, "torchvision Mask R-CNN", "RPN",
          "RoIAlign", peer="mask_rcnn"),
)
STAGE_NAMES = tuple(e.name for e in STAGES)
# --from-scratch: what R-CNN sec. 2.3's "supervised pre-training" buys. The same Mask R-CNN, the
# same network and budget, started from random weights instead of ImageNet's.
FROM_SCRATCH = Entry("mask_rcnn_from_scratch", "stages.mask_rcnn", "Mask R-CNN, random init",
                     "RPN", "RoIAlign", extra_argv=("--pretrained", "none"),
                     ablation_of="mask_rcnn")

# The run flags every stage shares and compare passes through unchanged (``RunConfig``'s fields
# minus --out, --resume and --eval-only, which compare sets itself). All but "progress" decide
# what a stage learns or records, so they are the settings a reused result must match.
PASSED = tuple(f.name for f in dataclasses.fields(RunConfig)
               if f.name not in ("out", "resume", "eval_only"))
NOT_SETTINGS = ("progress",)
# Validation AP during training, for the third panel of comparison.png (AP against training
# seconds). Evaluation time is not counted in a stage's budget; each costs a few seconds.
EVAL_EVERY = 40.0


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m stages.compare", __doc__)
    parser.add_argument("--stages", nargs="+", default=list(STAGE_NAMES), choices=STAGE_NAMES,
                        metavar="STAGE", help=f"stages to compare, from {', '.join(STAGE_NAMES)} "
                                              f"(default: all four)")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help=f"output folder: <out>/<stage> for each stage's run, <out>/comparison.* "
                             f"(default: {DEFAULT_OUT}, where the notebooks and figures look)")
    parser.add_argument("--retrain", action="store_true",
                        help="train every stage again, even one trained with these settings")
    parser.add_argument("--peers", action="store_true",
                        help="add torchvision's Faster R-CNN and Mask R-CNN as rows")
    parser.add_argument("--from-scratch", action="store_true",
                        help="add the row 'Mask R-CNN from random weights' beside the ImageNet-"
                             "pretrained one: what pre-training buys (R-CNN sec. 2.3)")
    add_dataclass_args(parser, RunConfig, "passed to every stage",
                       skip=("out", "resume", "eval_only"), defaults={"eval_every": EVAL_EVERY})
    return parser


def stage_argv(args: argparse.Namespace, out_dir: Path, entry: Entry) -> list[str]:
    """The command line a stage gets: the shared flags as given to compare (but not those the
    stage does not take, ``entry.unused``), and its own --out."""
    argv = []
    for name in PASSED:
        value = getattr(args, name)
        flag = "--" + name.replace("_", "-")
        if name in entry.unused or value is None:
            continue
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv + ["--out", str(out_dir)]


def stage_settings(args: argparse.Namespace, entry: Entry) -> dict:
    """What a reused result must have been run with (JSON-ready, compared with ``==``)."""
    values = {name: getattr(args, name) for name in PASSED
              if name not in NOT_SETTINGS and name not in entry.unused}
    # the same folder, however it is written: a notebook's "../data" is the command's "data"
    values["data_root"] = str(Path(values["data_root"]).resolve())
    return {"module": entry.module, "peer": entry.peer, "extra_argv": list(entry.extra_argv),
            **values}


# ------------------------------------------------------------------------------------------------
# Running one stage: import its command, decide train / resume / reuse, call it
# ------------------------------------------------------------------------------------------------

def load_main(entry: Entry):
    """The function that runs ``entry``: ``main(argv)`` of ``python -m <module>``, or for a peer
    ``lambda argv: run_peer(kind, argv)``. Returns ``(function, None)`` or ``(None, why not)``."""
    try:
        module = importlib.import_module(entry.module)
        if entry.peer is None and hasattr(module, "__path__"):  # a package: -m runs __main__
            module = importlib.import_module(entry.module + ".__main__")
    except ModuleNotFoundError as e:
        if e.name and (entry.module == e.name or entry.module.startswith(e.name + ".")
                       or e.name.startswith(entry.module + ".")):
            return None, f"{entry.module} is not built yet"
        return None, f"{entry.module} cannot be imported ({e})"
    except ImportError as e:
        return None, f"{entry.module} cannot be imported ({e})"
    if entry.peer is not None:
        run_peer = getattr(module, "run_peer", None)
        if run_peer is None:
            return None, f"{entry.module} has no run_peer(kind, argv) yet"
        return (lambda argv: run_peer(entry.peer, argv)), None
    if not hasattr(module, "main"):
        return None, f"{entry.module} has no main(argv)"
    return module.main, None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_record(out_dir: Path) -> dict | None:
    """``compare_settings.json`` of a stage folder, or None (absent or unreadable: train anew)."""
    try:
        record = json.loads((out_dir / SETTINGS).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def plan(out_dir: Path, settings: dict, retrain: bool) -> str:
    """"reuse", "resume" or "train" for the stage folder ``out_dir`` and the requested settings.

    reuse   the record says "finished" with the same settings, and metrics.json is the very file
            that run wrote (same SHA-256: a stage run by hand into this folder since then makes
            it a different file) next to its checkpoint.pt
    resume  same settings, and checkpoint.pt was written by that run: since it started (it was
            interrupted) or, finished, not touched since (then only metrics.json is missing)
    train   anything else, or --retrain
    """
    record = read_record(out_dir)
    if retrain or record is None or record.get("settings") != settings:
        return "train"
    ckpt, metrics = out_dir / CHECKPOINT, out_dir / METRICS
    if not ckpt.exists():
        return "train"
    if (record.get("status") == "finished" and metrics.exists()
            and record.get("metrics_sha256") == _sha256(metrics)):
        return "reuse"
    status, ckpt_time = record.get("status"), ckpt.stat()
    if status == "running" and ckpt_time.st_mtime >= record.get("started_unix", math.inf):
        return "resume"
    if status == "finished" and ckpt_time.st_mtime_ns == record.get("checkpoint_mtime_ns"):
        return "resume"
    return "train"


def write_record(out_dir: Path, settings: dict, argv: list[str], status: str,
                 started: float) -> None:
    """``compare_settings.json``: "running" before a stage starts, "finished" once it is done."""
    record = {"settings": settings, "argv": argv, "status": status, "started_unix": started}
    if status == "finished":
        record["metrics_sha256"] = _sha256(out_dir / METRICS)
        record["checkpoint_mtime_ns"] = (out_dir / CHECKPOINT).stat().st_mtime_ns
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    io.write_json(out_dir / SETTINGS, record)


def run_entry(entry: Entry, main, args: argparse.Namespace, out: Path) -> tuple[Result, str]:
    """Train (or resume, or reuse) one stage; returns its result record and what was done."""
    out_dir = out / entry.name
    settings = stage_settings(args, entry)
    action = plan(out_dir, settings, args.retrain)
    if action == "reuse":
        result = Result.load(out_dir / METRICS)
        print(f"[compare] {entry.name}: reused {out_dir / METRICS} (trained with the same "
              f"settings; --retrain trains it again)")
        return result, "reused"
    argv = (stage_argv(args, out_dir, entry) + list(entry.extra_argv)
            + (["--resume"] if action == "resume" else []))
    if action == "resume":
        print(f"[compare] {entry.name}: an unfinished run with the same settings left "
              f"{out_dir / CHECKPOINT}: resuming it")
    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_record(out_dir, settings, argv, "running", started)
    kind = f" {entry.peer}" if entry.peer else ""
    print(f"[compare] python -m {entry.module}{kind} {' '.join(argv)}")
    result = main(argv)
    if not isinstance(result, Result):  # a command that returns nothing: read what it wrote
        result = Result.load(out_dir / METRICS)
    write_record(out_dir, settings, argv, "finished", started)
    return result, "resumed" if action == "resume" else "trained"


ENTRIES = {e.name: e for e in STAGES + PEERS + (FROM_SCRATCH,)}


def ensure_run(name: str, runs: str | Path = DEFAULT_OUT, argv: list[str] | tuple = ()) -> Path:
    """The run ``<runs>/<name>`` exactly as ``python -m stages.compare`` makes it (its shared flags
    ``argv``, else compare's defaults): reused when compare has made it with these settings,
    resumed when it was interrupted, trained now otherwise. Returns its folder. The notebooks
    read their stage's run this way: after the README's main command nothing trains again, and a
    run they train is one the next ``compare`` reuses."""
    if name not in ENTRIES:
        raise ValueError(f"unknown run {name!r}: expected one of {', '.join(ENTRIES)}")
    args = build_parser().parse_args(["--out", str(runs), *argv])
    main, why = load_main(ENTRIES[name])
    if main is None:
        raise SystemExit(f"error: {why}")
    run_entry(ENTRIES[name], main, args, Path(runs))
    return Path(runs) / name


# ------------------------------------------------------------------------------------------------
# The table: one row per stage, as numbers (JSON, CSV) and as text (terminal, Markdown)
# ------------------------------------------------------------------------------------------------

@dataclass
class Row:
    entry: Entry
    result: Result
    status: str  # trained | resumed | reused
    # validation box AP against seconds of training: [(seconds, AP), ...], from the run's
    # losses.json (--eval-every), ending in the final result's point
    curve: list = dataclasses.field(default_factory=list)


def learning_curve(out_dir: Path, result: Result) -> list:
    """[(seconds of training, validation box AP), ...] of one run: the evaluations in its
    ``losses.json`` (``--eval-every``), then its final result. R-CNN, whose AP exists only once
    its SVMs are trained, has the final point alone."""
    seconds, values = validation_curve(read_history(out_dir), "val_box_AP",
                                       (result.train_time_s, result.box["AP"], None))
    return [(round(t, 2), v) for t, v in zip(seconds, values) if v != -1]


COLUMNS = ("stage", "proposals", "pooling",
           "box AP", "AP50", "AP75", "APs", "APm", "APl", "mask AP", "mask AP50", "mask AP75",
           "train s", "test ms/img", "proposals ms", "network ms", "params")
TEXT_COLUMNS = 3  # the first three are words (left-aligned); the rest numbers (right-aligned)


def row_values(row: Row) -> dict:
    """One row as {column: value}: AP in % (-1 = undefined), None for a stage without masks."""
    r = row.result
    mask = r.mask or {}
    return {"stage": row.entry.title, "proposals": row.entry.proposals,
            "pooling": row.entry.pooling,
            **{("box AP" if k == "AP" else k): r.box[k] for k in METRIC_NAMES},
            **{"mask " + k: mask.get(k) for k in ("AP", "AP50", "AP75")},
            "train s": r.train_time_s, "test ms/img": r.ms_per_image,
            "proposals ms": r.ms_proposals, "network ms": r.ms_network, "params": r.params}


def _cell(column: str, value) -> str:
    if value is None:
        return "-"  # this stage has no masks
    if isinstance(value, str):
        return value
    if column == "params":
        return format_count(value)
    if value == -1 and ("AP" in column):
        return "n/a"  # undefined (no ground truth in that size range), explained under the table
    return f"{value:.1f}"


def _cells(rows: list[Row]) -> list[list[str]]:
    return [[_cell(c, v) for c, v in row_values(row).items()] for row in rows]


def _notes(rows: list[Row]) -> list[str]:
    seen = []
    for row in rows:
        for sentence in explain_missing(row.result.box) + explain_missing(row.result.mask or {}):
            if sentence not in seen:
                seen.append(sentence)
    return seen


def format_comparison(rows: list[Row]) -> str:
    """The aligned text table printed at the end."""
    lines = align_columns([list(COLUMNS)] + _cells(rows), TEXT_COLUMNS)
    notes = _notes(rows)
    if notes:
        lines += [""] + ["n/a: " + s for s in notes]
    return "\n".join(lines)


def format_comparison_markdown(rows: list[Row], ratios: list[str], settings: str) -> str:
    align = ["---" if c < TEXT_COLUMNS else "---:" for c in range(len(COLUMNS))]
    lines = ["# R-CNN stages compared", "", settings, "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in _cells(rows)]
    lines += ["", "- mask AP \"-\": the stage predicts no masks."]
    lines += ["- n/a: " + s for s in _notes(rows)]
    if ratios:
        lines += ["", "## Between generations", ""] + ["- " + s for s in ratios]
    return "\n".join(lines) + "\n"


def format_csv(rows: list[Row]) -> str:
    """Numbers as measured (no rounding): AP in %, -1 where undefined (COCO's convention, as in
    metrics.json); an empty cell where a stage has no masks."""
    buffer = text_io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row_values(row).values()])
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# Ratios between generations: what each paper claimed, measured here
# ------------------------------------------------------------------------------------------------

# The papers time the network without the proposals: Fast R-CNN's Table 4 ("excluding object
# proposal time") puts R-CNN at 47.0 s and Fast R-CNN at 0.32 s per image with VGG16 on a GPU, 146x;
# in Faster R-CNN's Table 5 selective search takes 1510 ms per image, the RPN 10 ms. Our images
# and networks are small, so the project's targets are smaller:
NETWORK_TARGETS = {("rcnn", "fast_rcnn"): 12.0}  # network ms, R-CNN / Fast R-CNN
PROPOSAL_TARGET = 20.0  # proposal ms, selective search / RPN


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def _verdict(ratio: float, target: float | None, what: str = "target") -> str:
    if target is None:
        return ""
    return f" ({what} >= {target:g}x: {'met' if ratio >= target else 'NOT met'})"


def generation_ratios(rows: list[Row]) -> list[str]:
    """Sentences: test time of each generation over the next (all of it, and the network alone);
    selective search over the RPN; each torchvision peer beside our stage of the same name."""
    ours = [r for r in rows if r.entry.peer is None and r.entry.ablation_of is None]
    lines = []
    for a, b in zip(ours, ours[1:]):
        x, y = a.result, b.result
        total = _ratio(x.ms_per_image, y.ms_per_image)
        network = _ratio(x.ms_network, y.ms_network)
        target = NETWORK_TARGETS.get((a.entry.name, b.entry.name))
        lines.append(f"{a.entry.title} / {b.entry.title}: test ms per image "
                     f"{x.ms_per_image:.1f} / {y.ms_per_image:.1f} = {total:.1f}x; network ms "
                     f"(proposals excluded, as in the papers) {x.ms_network:.1f} / "
                     f"{y.ms_network:.1f} = {network:.1f}x{_verdict(network, target)}")
    searched = [r for r in ours if r.entry.proposals == "selective search"]
    learned = [r for r in ours if r.entry.proposals.startswith("RPN")]
    if searched and learned:
        ss, rpn = searched[-1], learned[0]  # the two neighbouring generations
        if rpn.result.ms_proposals > 0:
            ratio = _ratio(ss.result.ms_proposals, rpn.result.ms_proposals)
            lines.append(f"proposal ms per image, selective search ({ss.entry.title}) / RPN "
                         f"({rpn.entry.title}): {ss.result.ms_proposals:.1f} / "
                         f"{rpn.result.ms_proposals:.1f} = {ratio:.0f}x"
                         f"{_verdict(ratio, PROPOSAL_TARGET, 'speed target')}; the target's "
                         f"other half, recall at least selective search's, is measured by "
                         f"benchmarks/bench_rpn_proposals.py")
        else:
            lines.append(f"proposal ms per image: {rpn.entry.title} reports no proposal time "
                         f"(timing['proposals']), so selective search / RPN is not measured")
    by_name = {r.entry.name: r for r in ours}
    for ablation in (r for r in rows if r.entry.ablation_of is not None):
        mine = by_name.get(ablation.entry.ablation_of)
        if mine is not None:
            lines.append(f"{mine.entry.title} from ImageNet weights / {ablation.entry.title}: "
                         f"{_ap_versus(mine, ablation)} (the same network and budget: what "
                         f"pre-training buys)")
    for peer in (r for r in rows if r.entry.peer is not None):
        mine = by_name.get(peer.entry.peer)
        if mine is not None:
            lines.append(f"{mine.entry.title} ours / {peer.entry.title}: {_ap_versus(mine, peer)}, "
                         f"test ms per image {mine.result.ms_per_image:.1f} vs "
                         f"{peer.result.ms_per_image:.1f}")
    return lines


def _ap_versus(a: Row, b: Row) -> str:
    """"box AP 65.1 vs 19.9, mask AP 67.6 vs 21.1" (the mask part when both predict masks)."""
    text = f"box AP {a.result.box['AP']:.1f} vs {b.result.box['AP']:.1f}"
    if a.result.mask and b.result.mask:
        text += f", mask AP {a.result.mask['AP']:.1f} vs {b.result.mask['AP']:.1f}"
    return text


# ------------------------------------------------------------------------------------------------
# The figure: accuracy against speed, and where the test time goes
# ------------------------------------------------------------------------------------------------

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
    for i, row in enumerate(rows):
        colour = PALETTE[i % len(PALETTE)]
        x, box = row.result.ms_per_image, row.result.box["AP"]
        if box != -1:
            ax.scatter([x], [box], s=70, color=colour, edgecolor="black", zorder=3,
                       marker="D" if row.entry.peer else "o")
            offset = (7, -13) if row.entry.peer else (7, 5)  # peers labelled below: less overlap
            ax.annotate(row.entry.title, (x, box), xytext=offset, textcoords="offset points",
                        fontsize=9, color=colour, fontweight="bold")
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
                va="center", fontsize=9)
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
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8)


def plot_comparison(rows: list[Row], subtitle: str = "") -> Figure:
    fig = Figure(figsize=(19, 5.2))
    left, middle, right = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1.1, 0.9]})
    plot_accuracy_vs_speed(left, rows)
    plot_time_split(middle, rows)
    plot_learning_curves(right, rows)
    title = "From R-CNN to Mask R-CNN on the same data"
    fig.suptitle(title + (f"\n{subtitle}" if subtitle else ""))
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------

def check_writable(out: Path) -> None:
    """Fail now, not after an hour of training, if the output folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise SystemExit(f"error: cannot write to the output folder --out {out}: "
                         f"{e.strerror or e}") from None


def short_data(spec: str) -> str:
    """``coco:/long/path/train.json:/long/path/images`` -> ``coco:train.json:images``."""
    kind, _, rest = spec.partition(":")
    return kind + (":" + ":".join(Path(p).name for p in rest.split(":")) if rest else "")


def describe(args: argparse.Namespace) -> str:
    budget = "the preset's" if args.time_budget is None else f"{args.time_budget:g} s"
    epochs = "the preset's" if args.epochs is None else str(args.epochs)
    return (f"data {short_data(args.data)}, preset {args.preset}, epochs {epochs}, "
            f"time budget {budget} per stage, seed {args.seed}, device {args.device}")


def save_comparison(out: Path, rows: list[Row], ratios: list[str], args) -> list[Path]:
    settings = {name: getattr(args, name) for name in PASSED if name not in NOT_SETTINGS}
    document = {"settings": settings, "columns": list(COLUMNS),
                "rows": [{**row_values(r), "name": r.entry.name, "status": r.status} for r in rows],
                "curves": {r.entry.name: r.curve for r in rows},
                "results": {r.entry.name: r.result.to_dict() for r in rows},
                "ratios": ratios,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return [io.write_json(out / "comparison.json", document),
            io.write_text(out / "comparison.csv", format_csv(rows)),
            io.write_text(out / "comparison.md",
                          format_comparison_markdown(rows, ratios, describe(args))),
            io.save_figure(plot_comparison(rows, describe(args)), out / "comparison.png")]


def main(argv: list[str] | None = None) -> list[Row]:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    check_writable(out)
    chosen = [e for e in STAGES if e.name in args.stages]  # the order of the generations
    if args.from_scratch:
        chosen.append(FROM_SCRATCH)
    if args.peers:
        chosen += PEERS

    runnable = []  # import everything first: a missing stage is reported before any training
    for entry in chosen:
        main_fn, why = load_main(entry)
        if main_fn is not None:
            runnable.append((entry, main_fn))
        elif entry.peer is not None:
            raise SystemExit(f"error: --peers needs {PEER_MODULE}.run_peer(kind, argv) "
                             f"(kind 'faster_rcnn' or 'mask_rcnn', returning a Result): {why}")
        else:
            print(f"[compare] skipping {entry.name} ({entry.title}): {why}")
    if not runnable:
        raise SystemExit("error: none of the chosen stages can run yet: " + ", ".join(args.stages))

    print(f"[compare] {len(runnable)} runs into {out}: {describe(args)}")
    rows, t_all = [], time.perf_counter()
    for i, (entry, main_fn) in enumerate(runnable, 1):
        kind = "peer" if entry.peer else "stage"
        print(f"\n[compare] {kind} {i}/{len(runnable)}: {entry.name} ({entry.title}) ...",
              flush=True)
        t0 = time.perf_counter()
        try:
            result, status = run_entry(entry, main_fn, args, out)
            curve = learning_curve(out / entry.name, result)
        except BaseException:
            print(f"[compare] {entry.name} stopped after {time.perf_counter() - t0:.0f} s; the "
                  f"same command again reuses the runs finished before it and resumes this one "
                  f"from its checkpoint, if it wrote one")
            raise
        print(f"[compare] {kind} {i}/{len(runnable)}: {entry.name} {status} in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        rows.append(Row(entry, result, status, curve))

    ratios = generation_ratios(rows)
    print(f"\n[compare] {describe(args)}")
    print(format_comparison(rows))
    if ratios:
        print("\n" + "\n".join(ratios))
    paths = save_comparison(out, rows, ratios, args)
    reused = sum(r.status == "reused" for r in rows)
    print(f"\n[compare] {len(rows)} runs ({reused} reused) in {time.perf_counter() - t_all:.0f} s; "
          f"wrote {', '.join(str(p) for p in paths)}")
    return rows


# ------------------------------------------------------------------------------------------------
# Reading a saved comparison back (notebook 05 reads runs/comparison.json instead of training again)
# ------------------------------------------------------------------------------------------------

def load_comparison(path: Path) -> tuple[list[Row], argparse.Namespace]:
    """The rows of a ``comparison.json`` written by ``save_comparison``, and the settings it was run
    with (``describe(settings)`` gives the subtitle of its table and plot). The inverse of
    ``save_comparison``: the rows print, plot and give ``generation_ratios`` as they did then."""
    path = Path(path)
    document = json.loads(path.read_text())
    entries = ENTRIES
    unknown = [r["name"] for r in document["rows"] if r["name"] not in entries]
    if unknown:
        raise ValueError(f"{path}: rows of unknown stages {unknown}; known: {', '.join(entries)}")
    curves = document.get("curves", {})  # absent in files written before the AP-time panel
    rows = [Row(entries[r["name"]], Result.from_dict(document["results"][r["name"]]), r["status"],
                [tuple(p) for p in curves.get(r["name"], [])])
            for r in document["rows"]]
    return rows, argparse.Namespace(**document["settings"])


if __name__ == "__main__":
    main()
