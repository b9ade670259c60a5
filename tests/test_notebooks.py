"""Every notebook executes from top to bottom in quick mode, and defines no library code."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_defines_no_functions_or_classes(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            for node in ast.walk(ast.parse(cell.source)):
                assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)), \
                    f"{path.name} defines {node.name}: library code belongs in stages/"


TRAINING = [p for p in NOTEBOOKS if p.name[:2] in ("01", "02", "03", "04")]  # they train and evaluate


@pytest.mark.parametrize("path", TRAINING, ids=[p.name for p in TRAINING])
def test_notebook_takes_its_device_from_one_cell(path):
    """DEVICE is set once, in the setup cell (STAGES_DEVICE, default auto: a GPU when there is one),
    and every training and evaluation call, and the stage commands' flags, use it."""
    nb = nbformat.read(path, as_version=4)
    code = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    setup = code[0] if "DEVICE = " in code[0] else code[1]
    assert 'DEVICE = choose_device(DEVICE_FLAG)' in setup and '"--device", DEVICE_FLAG' in setup
    assert sum("DEVICE = " in source for source in code) == 1
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
