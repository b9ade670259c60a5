"""Result tables: the one formatter behind every table the project prints.

Three tables share it: one row per result record (`format_table`, printed by every stage command),
the comparison of the stages (``stages/compare_report.py``) and Mask R-CNN's ablations
(``stages/mask_rcnn/ablation.py``). Each builds its rows of cells (strings) and hands them to
`format_rows`, as aligned text for a terminal or as Markdown.

Cell conventions (the same in all three tables)
-----------------------------------------------
    AP values    percent with one decimal, "n/a" where COCO reports -1 (undefined: no ground truth
                 of that size; the sentence of `explain_missing` is printed once under the table)
    "-"          a value that does not exist, e.g. the mask AP of a stage that predicts no masks
    params       1234567 -> "1.2M"                                                 (`format_count`)
    words        left-aligned (the first ``text_columns`` columns); numbers right-aligned

Map of this module
------------------
    generic:         format_count, format_cell, align_columns, format_rows
    result records:  COLUMNS, result_cells, missing_explanations, format_table
"""

from __future__ import annotations

from stages.evaluation.coco import METRIC_NAMES, explain_missing
from stages.evaluation.result import Result


# ------------------------------------------------------------------------------------------------
# Cells and rows: the generic formatter
# ------------------------------------------------------------------------------------------------

def format_count(n: int) -> str:
    """1234567 -> "1.2M", 45600 -> "45.6K", 999 -> "999"."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return str(int(n))


def format_cell(column: str, value) -> str:
    """One value of a table in the column named ``column``: None -> "-", words as they are,
    "params" -> `format_count`, -1 in an AP column -> "n/a", any other number with one decimal."""
    if value is None:
        return "-"  # e.g. the mask AP of a stage without masks
    if isinstance(value, str):
        return value
    if column == "params":
        return format_count(value)
    if column == "steps":
        return str(value)
    if value == -1 and "AP" in column:
        return "n/a"  # undefined (no ground truth in that size range), explained under the table
    return f"{value:.1f}"


def align_columns(rows: list[list[str]], text_columns: int) -> list[str]:
    """Rows of cells (the first row the header) -> the lines of an aligned text table: the first
    ``text_columns`` columns left-aligned, numbers right-aligned, a dashed rule under the header."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if c < text_columns else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(row, widths))).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def format_rows(header, rows: list[list[str]], text_columns: int, markdown: bool = False) -> str:
    """A table of ``header`` (column names) and ``rows`` (lists of cells, strings): aligned text,
    or with ``markdown`` a Markdown table (words left-aligned ``---``, numbers right ``---:``)."""
    if not markdown:
        return "\n".join(align_columns([list(header)] + [list(row) for row in rows], text_columns))
    align = ["---" if c < text_columns else "---:" for c in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# The table of result records: one row per run
# ------------------------------------------------------------------------------------------------

COLUMNS = ("stage", "variant", "box AP", "AP50", "AP75", "APs", "APm", "APl",
           "mask AP", "mask AP50", "mask AP75", "train s", "steps", "ms/img", "proposals ms",
           "network ms", "params")
TEXT_COLUMNS = 2  # stage, variant


def result_cells(r: Result) -> list[str]:
    """One record as the cells of a row of `COLUMNS`."""
    mask = [r.mask[k] for k in ("AP", "AP50", "AP75")] if r.mask else [None, None, None]
    values = ([r.stage, r.variant] + [r.box[k] for k in METRIC_NAMES] + mask
              + [r.train_time_s, r.steps, r.ms_per_image, r.ms_proposals, r.ms_network, r.params])
    return [format_cell(column, value) for column, value in zip(COLUMNS, values)]


def missing_explanations(results: list[Result]) -> list[str]:
    """Each distinct explain_missing sentence once, over box and mask metrics of all results."""
    seen = []
    for r in results:
        for sentence in explain_missing(r.box) + explain_missing(r.mask or {}):
            if sentence not in seen:
                seen.append(sentence)
    return seen


def format_table(results: list[Result]) -> str:
    """An aligned text table, one row per result; "n/a" (= -1) explained once below it."""
    table = format_rows(COLUMNS, [result_cells(r) for r in results], TEXT_COLUMNS)
    notes = missing_explanations(results)
    return "\n".join([table] + ([""] + ["n/a: " + sentence for sentence in notes] if notes else []))
