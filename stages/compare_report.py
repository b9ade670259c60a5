"""The comparison report: every stage's result side by side, and the ratios between generations.

What it shows is the story of the four papers in numbers, as in the Mask R-CNN paper's Table 1
(AP, AP50, AP75, APs/m/l, mask AP) with the time columns of the Fast and Faster R-CNN papers beside
it: test time per image, split into proposals and network, falls generation by generation
(Fast R-CNN: one CNN pass per image instead of one per region; Faster R-CNN: an RPN on the shared
features instead of selective search), while AP holds or rises.

``python -m stages.compare`` (``stages/compare.py``, the command beside this module) trains the
stages and hands their result records (``stages/evaluation/result.py``) to this module; notebook 05
and ``benchmarks/bench_stages.py`` read the same rows back. The plots of the same rows are in
``stages/figures/comparison.py``. This module imports neither of them.

Naming: a *row* is one run (``Row``: which entry made it, its ``Result``, whether it was trained,
resumed or reused, and its learning curve); an *entry* is the description of one line of the
comparison (``Entry``: name, which stage runs it, paper title, where the proposals come from, how
a region is pooled, and for a torchvision peer or an ablation, which of our stages it stands
beside); ``stages.compare`` lists them.

Map of this module
------------------
    a row:           Entry, Row, learning_curve (validation box AP against seconds of training)
    the table:       COLUMNS, row_values (numbers) -> format_comparison (text),
                     format_comparison_markdown, format_csv
    the errors:      ERROR_COLUMNS (TIDE's dAP of each error type, boxes), error_cells ->
                     format_errors: why each generation gains, one row per stage;
                     error_changes: what each step between generations removed and added
    the ratios:      NETWORK_TARGETS, PROPOSAL_TARGET, generation_ratios (sentences, with verdicts)
    the files:       write_comparison (comparison.json, .csv, .md) and read_comparison, its inverse
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from stages.evaluation.coco import METRIC_NAMES
from stages.evaluation.result import Result
from stages.evaluation.tables import format_cell, format_rows, missing_explanations
from stages.training.loss_figure import validation_curve
from stages import files
from stages.run import read_history


# ------------------------------------------------------------------------------------------------
# A row: one run of one stage
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entry:
    """One line of the comparison: what runs it and what that generation changed."""
    name: str       # the --stages name and the folder under --out
    stage: str      # what runs it: ``stages.run_stage.run_stage(stage, ...)``
    title: str      # the paper's name, for tables and plots
    proposals: str  # where the regions come from
    pooling: str    # how a region becomes a fixed-size feature
    peer: str | None = None  # for torchvision peers: our stage it stands beside
    changes: tuple = ()  # (field, value) pairs over the stage's default config
    ablation_of: str | None = None  # the stage this row changes one thing of (not a generation)
    unused: tuple = ()  # shared run settings (``RunConfig`` fields) its stage does not read


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


# ------------------------------------------------------------------------------------------------
# The table: one row per stage, as numbers (JSON, CSV) and as text (terminal, Markdown)
# ------------------------------------------------------------------------------------------------

COLUMNS = ("stage", "proposals", "pooling",
           "box AP", "AP50", "AP75", "APs", "APm", "APl", "mask AP", "mask AP50", "mask AP75",
           "train s", "steps", "stopped by", "test ms/img", "proposals ms", "network ms", "params")
TEXT_COLUMNS = 3  # the first three are words (left-aligned); the rest right-aligned (numbers,
#                   and "stopped by", a word in a column of numbers)
# what ended each stage's training: its time budget ("--time-budget", the quick preset's rule),
# "--steps N", or its epochs (the full preset's rule); steps compare machines, seconds one machine
STOPPED_BY = {"time_budget": "time", "steps": "steps", "epochs": "epochs"}


# TIDE's error types (stages/evaluation/errors.py), of the boxes at IoU 0.5: "dAP loc" is the
# AP50 that moving every mislocalised box onto its object would add; "dAP FP" / "dAP FN" what
# dropping every false positive / finding every missed object would add. None in a record
# written before the breakdown existed.
ERROR_TYPES = ("cls", "loc", "both", "dupe", "bkg", "missed")
# "dAP loc@75": the same breakdown at IoU 0.75, its loc: the AP75 that placing every box of
# IoU 0.1-0.75 onto its object would add (where AP50 and AP75 part ways)
ERROR_COLUMNS = tuple(f"dAP {t}" for t in ERROR_TYPES) + ("dAP FP", "dAP FN", "dAP loc@75")


def error_values(result: Result, kind: str = "box") -> dict:
    """{"dAP cls": .., ..., "dAP FN": .., "dAP loc@75": ..} of the run's boxes (or masks), None
    where unknown."""
    b, strict = result.errors.get(kind), result.errors.get(f"{kind}_t75")
    if not b:
        return {c: None for c in ERROR_COLUMNS}
    return {**{f"dAP {t}": b["dAP"][t] for t in ERROR_TYPES},
            "dAP FP": b["dAP_fp"], "dAP FN": b["dAP_fn"],
            "dAP loc@75": strict["dAP"]["loc"] if strict else None}


def row_values(row: Row) -> dict:
    """One row as {column: value}: AP in % (-1 = undefined), None for a stage without masks;
    then the TIDE columns (``ERROR_COLUMNS``)."""
    r = row.result
    mask = r.mask or {}
    return {"stage": row.entry.title, "proposals": row.entry.proposals,
            "pooling": row.entry.pooling,
            **{("box AP" if k == "AP" else k): r.box[k] for k in METRIC_NAMES},
            **{"mask " + k: mask.get(k) for k in ("AP", "AP50", "AP75")},
            "train s": r.train_time_s, "steps": r.steps,
            "stopped by": STOPPED_BY.get(r.stopped_by, r.stopped_by),
            "test ms/img": r.ms_per_image,
            "proposals ms": r.ms_proposals, "network ms": r.ms_network, "params": r.params,
            **error_values(r)}


def row_cells(row: Row) -> list[str]:
    """One row as the cells of the printed table ("n/a" = undefined, "-" = no masks)."""
    values = row_values(row)
    return [format_cell(column, values[column]) for column in COLUMNS]


ERROR_TABLE = ("stage", "box AP50") + ERROR_COLUMNS
ERRORS_EXPLAINED = ("dAP: the box AP50 that fixing one error type would add (TIDE, IoU 0.5; "
                    "python -m stages.errors RUN_FOLDER gives the counts). cls: right box, wrong "
                    "class; loc: right class, box off (IoU 0.1-0.5); both; dupe: a second box on "
                    "a found object; bkg: a box on nothing; missed: an object no box found. FP / "
                    "FN: every false positive dropped / every object found. loc@75: the same "
                    "breakdown at IoU 0.75, the AP75 that well-placed boxes would add.")


def error_cells(row: Row) -> list[str]:
    """The row of the errors table: the stage, its box AP50, the dAP of each error type."""
    b = row.result.errors.get("box")
    dap = error_values(row.result)
    return ([row.entry.title, f"{b['ap50']:.1f}" if b else "-"]
            + [f"{dap[c]:.1f}" if dap[c] is not None else "-" for c in ERROR_COLUMNS])


def format_errors(rows: list[Row], markdown: bool = False) -> str:
    """Why each generation gains: the TIDE breakdown of every row's boxes, one row per stage."""
    return format_rows(ERROR_TABLE, [error_cells(row) for row in rows], 1, markdown=markdown)


def error_changes(rows: list[Row], at_least: float = 0.5) -> list[str]:
    """One sentence per step between our generations: box AP50 and AP75 before and after, and the
    error types whose dAP fell (the errors the step removed) or rose (added) by ``at_least``
    points or more, largest first, e.g. "R-CNN -> Fast R-CNN: AP50 64.8 -> 81.6, AP75 ... ;
    removed loc 21.8 -> 6.6, bkg ...; added missed 0.6 -> 6.6"."""
    ours = [r for r in rows if r.entry.peer is None and r.entry.ablation_of is None
            and r.result.errors.get("box")]
    lines = []
    for a, b in zip(ours, ours[1:]):
        x, y = a.result.errors["box"]["dAP"], b.result.errors["box"]["dAP"]
        moved = sorted(((y[t] - x[t], t) for t in ERROR_TYPES), key=lambda m: -abs(m[0]))

        def listed(sign: int) -> str:
            parts = [f"{t} {x[t]:.1f} -> {y[t]:.1f}" for d, t in moved if sign * d >= at_least]
            return ", ".join(parts) or "none"

        lines.append(f"{a.entry.title} -> {b.entry.title}: box AP50 {a.result.box['AP50']:.1f} -> "
                     f"{b.result.box['AP50']:.1f}, AP75 {a.result.box['AP75']:.1f} -> "
                     f"{b.result.box['AP75']:.1f}; errors removed (dAP fell): {listed(-1)}; "
                     f"added (dAP rose): {listed(1)}")
    return lines


def format_comparison(rows: list[Row]) -> str:
    """The aligned text table printed at the end, then the errors table."""
    table = format_rows(COLUMNS, [row_cells(row) for row in rows], TEXT_COLUMNS)
    notes = missing_explanations([row.result for row in rows])
    lines = [table] + ([""] + ["n/a: " + s for s in notes] if notes else [])
    if any(row.result.errors for row in rows):
        lines += ["", "Where the AP50 goes (TIDE's error types, boxes):", format_errors(rows),
                  ERRORS_EXPLAINED] + error_changes(rows)
    return "\n".join(lines)


def format_comparison_markdown(rows: list[Row], ratios: list[str], settings: str) -> str:
    """``comparison.md``: a title, the ``settings`` line, the table, its notes and the ratios."""
    lines = ["# R-CNN stages compared", "", settings, "",
             format_rows(COLUMNS, [row_cells(row) for row in rows], TEXT_COLUMNS, markdown=True)]
    lines += ["", "- mask AP \"-\": the stage predicts no masks."]
    lines += ["- n/a: " + s for s in missing_explanations([row.result for row in rows])]
    if any(row.result.errors for row in rows):
        lines += ["", "## Where the AP50 goes (TIDE's error types, boxes)", "",
                  format_errors(rows, markdown=True), "", ERRORS_EXPLAINED, ""]
        lines += ["- " + s for s in error_changes(rows)]
    if ratios:
        lines += ["", "## Between generations", ""] + ["- " + s for s in ratios]
    return "\n".join(lines) + "\n"


def format_csv(rows: list[Row]) -> str:
    """Numbers as measured (no rounding): AP in %, -1 where undefined (COCO's convention, as in
    metrics.json); an empty cell where a stage has no masks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS + ERROR_COLUMNS)
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


def speed_ratio(a: float, b: float) -> float:
    """a / b: how many times faster b is than a (infinite when b took no time)."""
    return a / b if b > 0 else math.inf


def verdict(ratio: float, target: float | None, what: str = "target") -> str:
    """" (target >= 12x: met)", or "" where the project sets no target."""
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
        total = speed_ratio(x.ms_per_image, y.ms_per_image)
        network = speed_ratio(x.ms_network, y.ms_network)
        target = NETWORK_TARGETS.get((a.entry.name, b.entry.name))
        lines.append(f"{a.entry.title} / {b.entry.title}: test ms per image "
                     f"{x.ms_per_image:.1f} / {y.ms_per_image:.1f} = {total:.1f}x; network ms "
                     f"(proposals excluded, as in the papers) {x.ms_network:.1f} / "
                     f"{y.ms_network:.1f} = {network:.1f}x{verdict(network, target)}")
    searched = [r for r in ours if r.entry.proposals == "selective search"]
    learned = [r for r in ours if r.entry.proposals.startswith("RPN")]
    if searched and learned:
        ss, rpn = searched[-1], learned[0]  # the two neighbouring generations
        if rpn.result.ms_proposals > 0:
            ratio = speed_ratio(ss.result.ms_proposals, rpn.result.ms_proposals)
            lines.append(f"proposal ms per image, selective search ({ss.entry.title}) / RPN "
                         f"({rpn.entry.title}): {ss.result.ms_proposals:.1f} / "
                         f"{rpn.result.ms_proposals:.1f} = {ratio:.0f}x"
                         f"{verdict(ratio, PROPOSAL_TARGET, 'speed target')}; the target's "
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
# The files: comparison.json (everything, to read back), comparison.csv and comparison.md
# ------------------------------------------------------------------------------------------------

def write_comparison(out: Path, rows: list[Row], ratios: list[str], settings: dict,
                     subtitle: str) -> list[Path]:
    """Write ``comparison.json`` (the rows, the full result records, the learning curves, the run
    ``settings`` and the ``ratios``), ``comparison.csv`` and ``comparison.md`` (headed by the
    ``subtitle``, one line of settings) into ``out``. Returns their paths."""
    out = Path(out)
    document = {"settings": settings, "columns": list(COLUMNS + ERROR_COLUMNS),
                "rows": [{**row_values(r), "name": r.entry.name, "status": r.status} for r in rows],
                "curves": {r.entry.name: r.curve for r in rows},
                "results": {r.entry.name: r.result.to_dict() for r in rows},
                "ratios": ratios,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return [files.write_json(out / "comparison.json", document),
            files.write_text(out / "comparison.csv", format_csv(rows)),
            files.write_text(out / "comparison.md", format_comparison_markdown(rows, ratios, subtitle))]


def read_comparison(path: Path, entries: dict) -> tuple[list[Row], dict]:
    """The rows of a ``comparison.json`` written by `write_comparison`, and the settings it was
    written with. ``entries`` = {name: Entry}, the comparison's entries (``stages.compare.ENTRIES``):
    each row is rebuilt with its entry, so the rows print and give `generation_ratios` as they did
    then. A row of a name not in ``entries`` is a ValueError that lists the known names."""
    path = Path(path)
    document = json.loads(path.read_text())
    unknown = [r["name"] for r in document["rows"] if r["name"] not in entries]
    if unknown:
        raise ValueError(f"{path}: rows of unknown stages {unknown}; known: {', '.join(entries)}")
    curves = document.get("curves", {})  # absent in files written before the AP-time panel
    rows = [Row(entries[r["name"]], Result.from_dict(document["results"][r["name"]]), r["status"],
                [tuple(p) for p in curves.get(r["name"], [])])
            for r in document["rows"]]
    return rows, document["settings"]
