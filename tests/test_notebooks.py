"""Every notebook executes from top to bottom in quick mode, and defines no library code.

And each reads before it runs: it embeds the gallery figures of its ideas (GitHub shows notebooks
committed without outputs), its setup is one call into ``stages.notebook``, and it has exercises
with their answers one click away.
"""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path

import nbformat
import pytest
import torch
from nbclient import NotebookClient

from stages.notebook import setup, show_source
from stages.ops import BoxCoder, nms

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_defines_no_functions_or_classes(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)), \
                    f"{path.name} defines {node.name}: library code belongs in stages/"


TRAINING = [p for p in NOTEBOOKS if p.name[:2] in ("01", "02", "03", "04")]  # they train and evaluate


def assigned(source: str) -> dict[str, str]:
    """Name -> the source of the value bound to it, for ``a = x`` and ``a, b = x, y`` in ``source``."""
    pairs = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    pairs[target.id] = ast.unparse(node.value)
                elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    pairs.update({t.id: ast.unparse(v) for t, v in zip(target.elts, node.value.elts)
                                  if isinstance(t, ast.Name)})
    return pairs


@pytest.mark.parametrize("path", TRAINING, ids=[p.name for p in TRAINING])
def test_notebook_takes_its_device_from_one_cell(path):
    """DEVICE is set once, in the setup cell, from ``stages.notebook.setup`` (STAGES_DEVICE, default
    auto: a GPU when there is one), and every training and evaluation call uses it; the stage
    commands' flags carry the same device (``test_setup_reads_the_environment``)."""
    nb = nbformat.read(path, as_version=4)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    assert assigned(code[0]).get("DEVICE") == "nb.device", "the setup cell should set DEVICE = nb.device"
    assert sum("DEVICE" in assigned(source) for source in code) == 1
    calls = [node for source in code for node in ast.walk(ast.parse(source))
             if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", ""))
             in ("evaluate", "train_with_recipe")]
    assert calls, "no training or evaluation call found"
    for call in calls:
        name = getattr(call.func, "attr", getattr(call.func, "id", ""))
        positional = call.args[2:3] if name == "evaluate" else []  # evaluate(model, data, device)
        passed = [ast.unparse(a) for a in positional] + [ast.unparse(k.value) for k in call.keywords
                                                         if k.arg == "device"]
        assert passed == ["DEVICE"], f"{path.name}: {ast.unparse(call)[:80]} does not pass DEVICE"
    assert 'device="cpu"' not in "\n".join(code)
    assert "STAGES_DEVICE" not in "\n".join(code), "the device comes from setup(), nowhere else"


def test_setup_reads_the_environment(data_root, monkeypatch, tmp_path):
    """The variables the notebook test sets reach what the notebooks use: quick mode's data, the
    device and the folders, and the stage command's flags (``compare.ensure_run``)."""
    monkeypatch.setenv("STAGES_QUICK", "1")
    monkeypatch.setenv("STAGES_DATA_ROOT", str(data_root))
    monkeypatch.setenv("STAGES_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("STAGES_DEVICE", "cpu")
    nb = setup("04")
    assert nb.quick and nb.device == torch.device("cpu") and nb.device_flag == "cpu"
    assert nb.data_root == data_root and nb.runs == tmp_path / "runs"
    assert (len(nb.train), len(nb.val)) == (24, 12)  # quick mode's synthetic set
    argv = nb.command_argv
    assert argv[argv.index("--device") + 1] == "cpu" and argv[argv.index("--data-root") + 1] == str(data_root)
    assert argv[argv.index("--data") + 1] == f"coco:{nb.folder / 'train.json'}:{nb.folder / 'images'}"
    assert argv[argv.index("--val-data") + 1] == f"coco:{nb.folder / 'val.json'}:{nb.folder / 'images'}"
    assert argv[argv.index("--time-budget") + 1] == "10"

    for name in ("STAGES_QUICK", "STAGES_DEVICE", "STAGES_RUNS", "STAGES_DATA_ROOT"):
        monkeypatch.delenv(name)
    nb = setup("05")  # no data: notebook 05 reads the comparison's record
    assert not nb.quick and nb.device_flag == "auto" and nb.train is None and nb.command_argv == []
    assert nb.runs == Path("../runs") and nb.data_root == Path("../data")  # run from notebooks/
    with pytest.raises(ValueError, match="no notebook '06'"):
        setup("06")


def test_show_source_prints_the_package_lines(capsys):
    """``show_source`` prints the lines as they are in the file, headed by the file and the line
    numbers, the docstring left out; a marker that no line holds is an error, not a wrong slice."""
    show_source(BoxCoder.encode, start="p_x, p_y", end="t_h = ")
    header, *lines = capsys.readouterr().out.splitlines()
    assert header.startswith("# stages/ops/box_coder.py, BoxCoder.encode, lines ")
    first, last = map(int, header.rsplit(" ", 1)[1].split("-"))
    source = (ROOT / "stages" / "ops" / "box_coder.py").read_text().splitlines()
    assert [line.strip() for line in lines] == [line.strip() for line in source[first - 1:last]]
    assert lines[0].startswith("p_x, p_y") and lines[-1].startswith("t_h = w_h * torch.log(g_h / p_h)")

    show_source(nms)
    out = capsys.readouterr().out
    assert "def nms(" in out and "Greedy non-maximum suppression" not in out and "return order[keep]" in out
    with pytest.raises(ValueError, match="no line contains"):
        show_source(nms, start="no such line")


FIGURE = re.compile(r"!\[[^\]]+\]\((\.\./docs/figures/[^)\s]+\.png)\)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_embeds_gallery_figures(path):
    """GitHub shows a notebook committed without outputs: each embeds the gallery figures of its
    ideas (``docs/figures``, ``python -m stages.figures``) as Markdown images, with alt text, and
    every image it links exists."""
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    links = FIGURE.findall(markdown)
    assert links, f"{path.name} embeds no figure of docs/figures"
    assert markdown.count("](../docs/") == len(links), "a docs/ image without alt text, or not a PNG"
    missing = [link for link in links if not (path.parent / link).is_file()]
    assert not missing, f"{path.name} links figures that do not exist: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_setup_is_one_call(path):
    """The first code cell is a few lines, one call into ``stages.notebook``: what the notebooks
    all need before their first idea (quick mode, device, folders, data) has one home."""
    nb = nbformat.read(path, as_version=4)
    first = next(cell.source for cell in nb.cells if cell.cell_type == "code")
    assert f'setup("{path.name[:2]}")' in first and "from stages.notebook import setup" in first
    assert len(first.strip().splitlines()) <= 8, f"{path.name}: the setup cell has grown:\n{first}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_has_exercises_with_answers(path):
    """At least two exercises, each followed in its cell by its answer, folded: one click away."""
    nb = nbformat.read(path, as_version=4)
    exercises = [cell.source for cell in nb.cells if cell.cell_type == "markdown" and "**Exercise.**" in cell.source]
    assert len(exercises) >= 2, f"{path.name} has {len(exercises)} exercise(s)"
    for source in exercises:
        after = source[source.index("**Exercise.**"):]
        assert "<details><summary>Answer</summary>" in after and "</details>" in after, source[:80]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_in_quick_mode(path, data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("STAGES_QUICK", "1")
    monkeypatch.setenv("STAGES_DATA_ROOT", str(data_root))
    monkeypatch.setenv("STAGES_RUNS", str(tmp_path / "runs"))
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "error"]
    assert not errors
    assert any(o.output_type == "display_data" for c in nb.cells if c.cell_type == "code"
               for o in c.get("outputs", [])), "the notebook should draw at least one figure"
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
