"""Every paper citation and every file the docs name must exist.

Scanned: README.md, the pages docs/*.md, benchmarks/report.md and every Markdown cell of
notebooks/*.ipynb (fenced code blocks included, one line at a time). The facts are in ``tests/paper_facts.py``.

**Citations.** "Table 2" / "Table 2c" / "Tables 2c/2d", "sec. 3.1.2" / "§3", "Eq. 1" / "Eq. 1-3",
"Figure 3" / "Fig. 3" and "Appendix C" / "App. C" (with lists and ranges: "sec. 2.2, 2.3",
"Table 2c and 2d"). A paper's section is "sec."; the word "section" is one of our documents'
(below). Each citation is attributed to a paper by one rule:

1. the nearest paper name *before* it in the same sentence ("Mask R-CNN Table 2d", "R-CNN's
   Table 2", "(Fast R-CNN sec. 2.3)"; in "Faster R-CNN and Mask R-CNN Table 2c" it is Mask
   R-CNN's); names are those of ``Paper.names``, matched whole ("FPN" but not "ResNet-50-FPN",
   "R-CNN" but not the "R-CNN" inside "Mask R-CNN");
2. else the subject of the innermost Markdown heading that names a paper: the *last* paper the
   heading names ("## Stage 3: Faster R-CNN"; "## 6 · Faster R-CNN → Mask R-CNN" is Mask
   R-CNN's); a notebook's headings carry over from cell to cell, a heading ends at the next of the
   same or a higher level, and the project's name "R-CNN Stages" names no paper;
3. else the citation fails: the sentence must name its paper.

A sentence ends at ".", "!" or "?" followed by a capital (not after "sec.", "Eq.", "et al." and
the like), at a blank line, a heading, a list item or a table row.

The cited part must be in the paper's list. A sentence that cites a table and quotes a number
that ``paper_facts`` puts in *another* table of the same paper (and in none it cites) fails too:
decimals, and whole numbers from 100 up, are compared.

**Internal references.** "section N" / "Sections N-M" is a section of notebook NN when it follows
"notebook NN, " or a table cell's "NN (" ("## N ·" headings); else of ``benchmarks/report.md`` when
the sentence names report.md or is in it ("## N." headings); else of the notebook it is in. In the
README and the docs pages it must say which.

**Files.** Paths under ``stages/``, ``benchmarks/``, ``tests/``, ``notebooks/``, ``docs/`` and
``.ci/`` (a trailing "/" asks for a folder; ``<placeholder>`` or "..." checks the folder before
it), bare names of ``.py`` / ``.ipynb`` / ``.md`` files (some file of that name in the project),
and module paths ``stages.a.b`` (a module or package, then at most one name defined at its top
level: ``stages.ops.kernels``) must exist. ``runs/`` and ``data/`` are generated: not checked.

**Forbidden.** No text file of the project may mention the design file kept outside it.
"""

from __future__ import annotations

import ast
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from paper_facts import PAPERS, Paper

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "report.md",
        *NOTEBOOKS]

PROJECT_NAME = "R-CNN Stages"
_NAMES = sorted(((name, paper) for paper in PAPERS for name in paper.names),
                key=lambda item: -len(item[0]))
PAPER_BY_NAME = dict(_NAMES)
PAPER_NAME = re.compile(r"(?<![\w-])(" + "|".join(re.escape(n) for n, _ in _NAMES) + r")(?![\w-])")

KIND_WORDS = {
    "table": r"Tables?",
    "section": r"(?:[Ss]ecs?\.|§)",
    "equation": r"(?:Eqs?\.|Equations?)",
    "figure": r"(?:Figs?\.|Figures?)",
    "appendix": r"(?:Appendix|Appendices|App\.)",
}
_NUM = r"\d+(?:\.\d+)*[a-z]?(?![\w])"
_LETTER = r"[A-Z](?![\w])"
_SEP = r"\s*(?:,|/|&|and|or|-|–|to)\s*"
CITATION = re.compile("|".join(
    rf"(?<![\w.])(?P<{kind}>{words})\s*(?P<{kind}_labels>{_LETTER if kind == 'appendix' else _NUM}"
    rf"(?:{_SEP}{_LETTER if kind == 'appendix' else _NUM})*)"
    for kind, words in KIND_WORDS.items()))
LABEL = re.compile(rf"{_NUM}|{_LETTER}|[-–]|to")
INTERNAL_SECTION = re.compile(r"(?<![\w.])[Ss]ections?\s+(\d+(?:\s*(?:,|-|–|and|to)\s*\d+)*)(?![\w.]\d)")
NUMBER = re.compile(r"(?<![\w.,-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w]|\.\d)")

PATH = re.compile(r"(?<![\w./-])((?:stages|benchmarks|tests|notebooks|docs|runs|data|\.ci)/[\w./<>*-]*)")
BARE_FILE = re.compile(r"(?<![\w./-])([\w-]+\.(?:py|ipynb|md))(?![\w/])")
MODULE = re.compile(r"(?<![\w./-])(stages(?:\.\w+)+)")
GENERATED = ("runs", "data")
FORBIDDEN = re.compile(r"design\.md", re.I)  # the design file lives outside the project

ABBREVIATIONS = ("sec.", "secs.", "Sec.", "Eq.", "Eqs.", "Fig.", "Figs.", "App.", "al.", "e.g.",
                 "i.e.", "vs.", "cf.", "No.", "approx.")
SENTENCE_END = re.compile(r"[.!?]\s+(?=[A-Z*`\"“_(\[])")


@dataclass
class Unit:
    """One sentence (or heading, table row, code line) and where it is."""
    text: str
    where: str
    subject: Paper | None  # the heading's paper (rule 2)


# -- splitting Markdown into sentences -------------------------------------------------------------

def heading_subject(text: str) -> Paper | None:
    names = PAPER_NAME.findall(text.replace(PROJECT_NAME, ""))
    return PAPER_BY_NAME[names[-1]] if names else None


def split_sentences(paragraph: str) -> list[str]:
    sentences, start = [], 0
    for m in SENTENCE_END.finditer(paragraph):
        word = paragraph[:m.start() + 1].rsplit(None, 1)[-1]
        if word.endswith(ABBREVIATIONS):
            continue
        sentences.append(paragraph[start:m.start() + 1])
        start = m.end()
    sentences.append(paragraph[start:])
    return [s.strip() for s in sentences if s.strip()]


class Splitter:
    """Markdown sources of one document -> Units; the heading stack carries over between sources."""

    HEADING = re.compile(r"^(#{1,6})\s+(.*)")
    STARTS_BLOCK = re.compile(r"^\s*(\||[-*+]\s|\d+\.\s)")

    def __init__(self):
        self.headings: list[tuple[int, Paper | None]] = []

    def subject(self) -> Paper | None:
        return next((paper for _, paper in reversed(self.headings) if paper is not None), None)

    def units(self, text: str, where: str) -> list[Unit]:
        out: list[Unit] = []
        paragraph: list[str] = []

        def flush():
            if paragraph:
                joined = re.sub(r"\s+", " ", " ".join(paragraph))
                out.extend(Unit(s, where, self.subject()) for s in split_sentences(joined))
                paragraph.clear()

        in_code = False
        for line in text.splitlines():
            if line.strip().startswith("```"):
                flush()
                in_code = not in_code
            elif in_code:
                out.append(Unit(line.strip(), where, self.subject()))
            elif not line.strip():
                flush()
            elif m := self.HEADING.match(line):
                flush()
                level = len(m.group(1))
                while self.headings and self.headings[-1][0] >= level:
                    self.headings.pop()
                self.headings.append((level, heading_subject(m.group(2))))
                out.append(Unit(m.group(2).strip(), where, self.subject()))
            else:
                if self.STARTS_BLOCK.match(line):
                    flush()
                paragraph.append(line)
        flush()
        return out


def document_units(path: Path) -> list[Unit]:
    """README.md / report.md: the whole file; a notebook: its Markdown cells, named by index."""
    rel = path.relative_to(ROOT).as_posix()
    splitter = Splitter()
    if path.suffix != ".ipynb":
        return splitter.units(path.read_text(encoding="utf-8"), rel)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [unit for i, cell in enumerate(cells) if cell["cell_type"] == "markdown"
            for unit in splitter.units("".join(cell["source"]), f"{rel} cell {i}")]


# -- what exists -----------------------------------------------------------------------------------

def expand(labels: str) -> list[str]:
    """'2c/2d' -> ['2c', '2d']; '1-3' -> ['1', '2', '3']; '2.2, 2.3 and 4' -> ['2.2', '2.3', '4']."""
    tokens = LABEL.findall(labels)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("-", "–", "to") and out and i + 1 < len(tokens) \
                and out[-1].isdigit() and tokens[i + 1].isdigit():
            out.extend(str(n) for n in range(int(out[-1]) + 1, int(tokens[i + 1]) + 1))
            i += 2
            continue
        if token not in ("-", "–", "to"):
            out.append(token)
        i += 1
    return out


def numbers_in(text: str) -> list[float]:
    values = []
    for m in NUMBER.finditer(text):
        value = float(m.group(1).replace(",", "") + (m.group(2) or ""))
        if m.group(2) or value >= 100:
            values.append(value)
    return values


def covers(cited: str, table: str) -> bool:
    """Citing Table 2 covers its panels 2a..2e; citing 2c covers 2c only."""
    return table == cited or (table[:-1] == cited and table[-1].isalpha())


def check_citations(unit: Unit) -> list[str]:
    problems = []
    names = [(m.start(), PAPER_BY_NAME[m.group(1)]) for m in PAPER_NAME.finditer(unit.text)]
    cited_tables: dict[str, list[str]] = {}
    papers: dict[str, Paper] = {}
    for m in CITATION.finditer(unit.text):
        kind = next(k for k in KIND_WORDS if m.group(k))
        before = [paper for start, paper in names if start < m.start()]
        paper = before[-1] if before else unit.subject
        if paper is None:
            problems.append(f"{unit.where}: '{m.group(0)}' names no paper (name it in the "
                            f"sentence or the heading): {unit.text!r}")
            continue
        parts = paper.parts(kind)
        for label in expand(m.group(f"{kind}_labels")):
            if label not in parts:
                has = ", ".join(parts) if parts else "none"
                problems.append(f"{unit.where}: '{m.group(0)}' cites {paper.names[0]} {kind} "
                                f"{label}, which the paper does not have ({kind}s listed: {has}); "
                                f"in: {unit.text!r}")
            elif kind == "table":
                cited_tables.setdefault(paper.key, []).append(label)
                papers[paper.key] = paper
    if cited_tables:  # quoted numbers attached to the right table
        bare = CITATION.sub(" ", unit.text)
        for key, cited in cited_tables.items():
            paper = papers[key]
            for value in numbers_in(bare):
                holders = [t for t, values in paper.numbers.items() if value in values]
                if holders and not any(covers(c, t) for c in cited for t in holders):
                    problems.append(
                        f"{unit.where}: {value:g} is {paper.names[0]} Table {'/'.join(holders)}'s, "
                        f"but the sentence cites {paper.names[0]} Table {'/'.join(cited)} only (a "
                        f"citation belongs to the nearest paper named before it): {unit.text!r}")
    return problems


def numbered_sections(text: str, marker: str) -> set[str]:
    return set(re.findall(rf"^##\s+(\d+)\s*{marker}", text, re.M))


REPORT_SECTIONS = numbered_sections((ROOT / "benchmarks" / "report.md").read_text(encoding="utf-8"),
                                    r"\.")


NOTEBOOK_SECTIONS = {
    path.name[:2]: numbered_sections("\n".join("".join(c["source"]) for c in json.loads(
        path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "markdown"), "·")
    for path in NOTEBOOKS}
OTHER_NOTEBOOK = re.compile(r"(?:notebook\s+|\|\s*)(\d\d)(?:'s)?,?\s*\(?\s*$")


def check_internal_sections(unit: Unit, own: set[str] | None) -> list[str]:
    problems = []
    for m in INTERNAL_SECTION.finditer(unit.text):
        other = OTHER_NOTEBOOK.search(unit.text[:m.start()])
        in_report = "report.md" in unit.text or unit.where.startswith("benchmarks/report.md")
        if other and other.group(1) in NOTEBOOK_SECTIONS:
            sections, what = NOTEBOOK_SECTIONS[other.group(1)], f"notebook {other.group(1)}"
        elif in_report:
            sections, what = REPORT_SECTIONS, "benchmarks/report.md"
        else:
            sections, what = own, "this notebook"
        if sections is None:
            problems.append(f"{unit.where}: '{m.group(0)}' of which document? {unit.text!r}")
            continue
        for label in expand(m.group(1)):
            if label not in sections:
                problems.append(f"{unit.where}: '{m.group(0)}': {what} has no section {label} "
                                f"(it has {', '.join(sorted(sections, key=int))}): {unit.text!r}")
    return problems


def _project_files() -> tuple[set[str], list[Path]]:
    names, texts = set(), []
    skip = {".git", ".venv", "__pycache__", ".pytest_cache", "node_modules"}
    for folder, dirs, files in os.walk(ROOT):
        top = Path(folder) == ROOT
        dirs[:] = [d for d in dirs if not (d in skip or d.endswith(".egg-info") or top and d in GENERATED)]
        for f in files:
            names.add(f)
            path = Path(folder) / f
            if path.suffix in (".py", ".md", ".ipynb", ".txt", ".toml", ".ini", ".cfg", ".yml",
                               ".yaml") or path.parent.name == ".ci":
                texts.append(path)
    return names, texts


FILE_NAMES, TEXT_FILES = _project_files()


def defined_names(module: Path) -> set[str]:
    names = set()
    for node in ast.parse(module.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def check_module(dotted: str) -> str | None:
    parts = dotted.strip(".").split(".")
    for i in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:i])
        module = base.with_suffix(".py") if base.with_suffix(".py").is_file() else base / "__init__.py"
        if module.is_file():
            rest = parts[i:]
            if not rest or rest[0] in defined_names(module):
                return None
            return f"{'.'.join(parts[:i])} defines no {rest[0]}"
    return "no such module"


def check_files(unit: Unit) -> list[str]:
    problems = []
    text = unit.text
    for m in PATH.finditer(text):
        path = m.group(1).rstrip(".,;:)")
        if path.split("/")[0] in GENERATED:
            continue
        folder_only = path.endswith("/")
        for cut in ("<", "*", "..."):
            if cut in path:
                path, folder_only = path.split(cut)[0].rsplit("/", 1)[0] + "/", True
        target = ROOT / path
        if not (target.is_dir() if folder_only else target.exists()):
            problems.append(f"{unit.where}: '{m.group(1)}' does not exist: {unit.text!r}")
    for m in BARE_FILE.finditer(text):
        if m.group(1) not in FILE_NAMES:
            problems.append(f"{unit.where}: no file '{m.group(1)}' in the project: {unit.text!r}")
    for m in MODULE.finditer(text):
        why = check_module(m.group(1))
        if why:
            problems.append(f"{unit.where}: module path '{m.group(1)}': {why}: {unit.text!r}")
    if FORBIDDEN.search(text):
        problems.append(f"{unit.where}: mentions a file outside the project: {unit.text!r}")
    return problems


def check_units(units: list[Unit], own_sections: set[str] | None = None) -> list[str]:
    problems = []
    for unit in units:
        problems += check_citations(unit) + check_internal_sections(unit, own_sections) + check_files(unit)
    return problems


def check_document(path: Path) -> list[str]:
    own = None
    if path.suffix == ".ipynb":
        own = NOTEBOOK_SECTIONS[path.name[:2]]
    elif path.name == "report.md":
        own = REPORT_SECTIONS
    return check_units(document_units(path), own)


def check_markdown(text: str, where: str = "text", own_sections: set[str] | None = None) -> list[str]:
    return check_units(Splitter().units(text, where), own_sections)


# -- the repository --------------------------------------------------------------------------------

@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_citation_and_file_exists(path):
    problems = check_document(path)
    assert not problems, f"{len(problems)} wrong citation(s) or reference(s):\n" + "\n".join(problems)


def test_no_text_file_mentions_the_design_file():
    hits = [p.relative_to(ROOT).as_posix() for p in TEXT_FILES
            if FORBIDDEN.search(p.read_text(encoding="utf-8", errors="replace"))]
    assert not hits, f"these files mention a file that is not part of the project: {hits}"


# -- the checker itself ----------------------------------------------------------------------------

def test_a_wrong_table_fails_and_the_right_one_passes():
    assert check_markdown("Mask R-CNN Table 2c measures RoIAlign.") == []
    for fake in ("Mask R-CNN Table 2f measures RoIAlign.", "Mask R-CNN Table 12 measures it."):
        problems = check_markdown(fake, "fake.md")
        assert len(problems) == 1 and "fake.md" in problems[0]
        assert "Mask R-CNN table" in problems[0] and "2a, 2b, 2c" in problems[0], problems


@pytest.mark.parametrize("text, ok", [
    ("R-CNN's Table 2 has 54.2 -> 58.5 mAP.", True),
    ("as shown (Fast R-CNN sec. 2.3).", True),
    ("the box coding of Faster R-CNN Eq. 2 is used.", True),
    ("R-CNN Appendix C fits ridge regressors.", True),
    ("Fast R-CNN sec. 2.2, 2.3 and 5.2 say so.", True),
    ("Fast R-CNN Eq. 1-3 and Figure 1 say so.", True),
    ("Mask R-CNN Table 2c/2d measure it.", True),
    ("Fast R-CNN Eq. 1-6 say so.", False),          # the paper has Eqs. 1-5
    ("Fast R-CNN Appendix A says so.", False),      # no appendices
    ("Fast R-CNN sec. 2.2, 2.9 say so.", False),
    ("Faster R-CNN and Mask R-CNN Table 2c.", True),   # the nearest name before it
    ("Mask R-CNN and Faster R-CNN Table 2c.", False),
    ("ResNet-50-FPN Table 2c.", False),             # a backbone's name is not the FPN paper's
    ("The loss of Eq. 1.", False),                  # no paper named
    ("## Stage 3: Faster R-CNN\n\nThe loss of Eq. 1.", True),          # the heading's paper
    ("## 6 · Faster R-CNN → Mask R-CNN\n\nRoIAlign (Table 2d).", True),
    ("## Stage 3: Faster R-CNN\n\n## Other\n\nThe loss of Eq. 1.", False),  # the heading ended
])
def test_attribution(text, ok):
    problems = check_markdown(text)
    assert (problems == []) == ok, problems


def test_a_number_from_another_table_fails():
    assert check_markdown("Mask R-CNN's box AP 37.3 -> 38.2 (Table 3).") == []
    problems = check_markdown("Mask R-CNN's box AP 37.3 -> 38.2 (Table 2d).")
    assert len(problems) == 2 and "Table 3's" in problems[0], problems
    assert check_markdown("Mask R-CNN Table 2: RoIPool 23.6 against RoIAlign 30.9.") == []


def test_a_missing_file_or_module_fails():
    good = ("`stages/mask_rcnn/model.py`, benchmarks/bench_ops.py, `tests/...`, `notebooks/`, "
            "`runs/whatever/x.json`, stages.faster_rcnn.rpn, `stages.ops.kernels(\"torchvision\")`, "
            "`01_rcnn.ipynb`.")
    assert check_markdown(good) == []
    for bad in ("`stages/mask_rcnn/nope.py`", "see docs/guide.md", "`notebooks/09_more.ipynb`",
                "stages.faster_rcnn.nope", "stages.ops.no_such_name", "`stages/rcnn/model.py/`",
                "`nope_at_all.py`", "DESIGN" + ".md"):
        assert check_markdown(bad + " here."), bad


def test_internal_section_references():
    assert check_markdown("`benchmarks/report.md`, section 7 has them.") == []
    assert check_markdown("`benchmarks/report.md`, sections 5-9 have them.") == []
    assert check_markdown("`benchmarks/report.md`, section 42 has them.")
    assert check_markdown("section 2 shows it.", own_sections={"1", "2"}) == []
    assert check_markdown("section 3 shows it.", own_sections={"1", "2"})
    assert check_markdown("notebook 04, section 6 has them.", own_sections=set()) == []
    assert check_markdown("notebook 04, section 60 has them.", own_sections={"60"})
    assert check_markdown("| 02 (section 5) |", own_sections=set()) == []
