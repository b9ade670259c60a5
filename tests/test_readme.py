"""README's test command is exactly what CI runs, its commands name real modules, and the numbers
it quotes from its comparison run are that run's record (``benchmarks/readme_run.json``)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from stages.evaluation.tables import format_cell

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    command = next(line for line in ci_lines if "pytest" in line)
    assert command in (ROOT / "README.md").read_text(), \
        f"README.md must give the test command that .ci/run runs: {command}"


def test_readme_main_command_runs_an_existing_module():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"Set up and run the main job.*?```bash\n(.*?)\n```", readme, re.S).group(1)
    module = re.search(r"python -m ([\w.]+)\s*$", block).group(1)
    assert importlib.util.find_spec(module) is not None, f"README's main command runs {module}"


# -- the README's numbers are the stated run's ------------------------------------------------------
#
# `benchmarks/readme_run.json` is the record of the run that the README states (command, commit,
# machine, date): every row of its comparison, its ratios and its wall times. The tables of the
# README and of docs/comparison.md, the run's times and its ratios must be that record, printed by
# the project's own formatter (`stages.evaluation.tables.format_cell`: one decimal, "-" for a value
# that does not exist, "n/a" for COCO's -1, params as "621.4K").

RECORD = json.loads((ROOT / "benchmarks" / "readme_run.json").read_text())
ROWS = {row["stage"]: row for row in RECORD["rows"]}
RUN_PAGES = [ROOT / "README.md", ROOT / "docs" / "comparison.md"]

# A table column -> the record's field. The error breakdown (docs/comparison.md) names TIDE's dAP
# fields by their error type, and its "loc at IoU 0.75" column is the record's "dAP loc@75" (the
# same breakdown at IoU 0.75, `python -m stages.errors runs/<stage> --t-f 0.75`). Every column of a
# run table is checked: none is exempt.
FIELD = {"box AP50": "AP50", "all FP": "dAP FP", "all FN": "dAP FN", "loc at IoU 0.75": "dAP loc@75",
         **{kind: f"dAP {kind}" for kind in ("cls", "loc", "both", "dupe", "bkg", "missed")}}


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Every Markdown table of a page: its rows of cells, the header first, the rule dropped."""
    tables, rows = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def run_tables(page: Path) -> list[list[list[str]]]:
    """The tables of ``page`` whose rows are the record's stages, one row each."""
    return [t for t in markdown_tables(page.read_text()) if t[0][0] == "stage" and len(t) > 1
            and all(row[0] in ROWS for row in t[1:])]


def minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s"


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_comparison_tables_are_the_stated_runs_record(page):
    tables = run_tables(page)
    assert tables, f"{page.name}: no table of the comparison's stages"
    wrong = []
    for header, *rows in tables:
        # every row of the record, ours and the peers' (`--peers`), in the record's order
        assert [row[0] for row in rows] == list(ROWS), \
            f"{page.name}: a table of the run has rows {[row[0] for row in rows]}, the record {list(ROWS)}"
        for column in header[1:]:
            field = FIELD.get(column, column)
            assert field in RECORD["rows"][0], f"{page.name}: the record has no column {column!r}"
            for row in rows:
                assert ROWS[row[0]][field] is not None or "mask" in field, \
                    f"{page.name}: {row[0]} {column} is null in the record"
                expected = format_cell(field, ROWS[row[0]][field])
                if row[header.index(column)] != expected:
                    wrong.append(f"{row[0]} {column}: {row[header.index(column)]} (record: {expected})")
    assert not wrong, f"{page.name} differs from benchmarks/readme_run.json:\n" + "\n".join(wrong)


def test_readme_compact_table_holds_every_stages_box_ap_and_mask_ap():
    header, *rows = run_tables(ROOT / "README.md")[0]
    assert [row[0] for row in rows] == [row["stage"] for row in RECORD["rows"]]
    assert {"box AP", "mask AP"} <= set(header)


@pytest.mark.parametrize("page", RUN_PAGES + [ROOT / "notebooks" / "05_compare.ipynb"],
                         ids=lambda p: p.relative_to(ROOT).as_posix())
def test_run_times_are_the_records_wall_times(page):
    """Every "N min M s" that a page (or notebook 05, which walks through the same run) quotes is
    one of the stated run's recorded wall times."""
    text = page.read_text()
    quoted = re.findall(r"\d+ min \d+ s", re.sub(r"\s+", " ", text))
    wall = RECORD["wall_s"]
    # the record's wall times, and what the peers' two rows added to the four stages (`--peers`)
    recorded = {minutes(s) for s in wall.values()} | {minutes(wall["six_runs"] - wall["four_stages"])}
    assert minutes(wall["four_stages"]) == "12 min 11 s"
    assert minutes(RECORD["wall_s"]["four_stages"]) in quoted
    assert set(quoted) <= recorded, f"{page.name} quotes {set(quoted) - recorded}, not in the record"


def test_readme_states_the_run_with_its_numbers_and_ratios():
    readme = (ROOT / "README.md").read_text()
    section = re.search(r"^## The four stages compared\n(.*?)(?=^## )", readme, re.S | re.M).group(1)
    section = re.sub(r"\s+", " ", section)
    for fact in (f"`{RECORD['command']}`", RECORD["commit"], RECORD["date"], "2 CPU cores",
                 minutes(RECORD["wall_s"]["four_stages"])):
        assert fact in section, f"the README's comparison does not state its run's {fact}"
    ratios = " ".join(RECORD["ratios"])
    for ratio in re.findall(r"(\d+(?:\.\d+)?)x\b", section):
        assert f"= {ratio}x" in ratios, f"README's {ratio}x is none of the record's ratios"


def test_validation_curves_quoted_are_the_records():
    """docs/comparison.md: "Validation box AP at 40 / 80 / 120 s of training: Fast R-CNN 54.6 / ..."."""
    text = re.sub(r"\s+", " ", (ROOT / "docs" / "comparison.md").read_text())
    for row in RECORD["rows"]:
        points = RECORD["curves"][row["name"]]
        if len(points) > 1:
            quoted = f"{row['stage']} " + " / ".join(f"{ap:.1f}" for _, ap in points)
            assert quoted in text, f"docs/comparison.md does not quote the record's curve: {quoted}"
