"""README's test command is exactly what CI runs, and its commands name real modules."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

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
