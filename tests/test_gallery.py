"""The committed gallery (docs/figures) is the figure command's output: every lecture figure, no
stray file, each small, each listed with a sentence in docs/README.md, and README shows some."""

from __future__ import annotations

import re
from pathlib import Path

from stages.figures.gallery import FIGURES

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "figures"
MAX_BYTES = 400_000  # small enough to commit, large enough to read on a slide


def test_the_gallery_holds_exactly_the_figures_of_the_command():
    assert sorted(p.name for p in GALLERY.iterdir()) == sorted(spec.filename for spec in FIGURES)


def test_every_gallery_picture_is_a_small_png():
    for path in GALLERY.iterdir():
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
        assert len(data) < MAX_BYTES, f"{path}: {len(data)} bytes (regenerate with a lower --dpi)"


def test_docs_list_every_figure_with_a_sentence_and_the_command():
    text = (ROOT / "docs" / "README.md").read_text()
    assert "python -m stages.figures --out docs/figures --dpi 80 --palette" in text
    for spec in FIGURES:
        line = next((l for l in text.splitlines() if f"figures/{spec.filename}" in l), None)
        assert line is not None, f"docs/README.md does not list {spec.filename}"
        assert len(re.findall(r"[A-Za-z]{3,}", line.split(spec.filename)[-1])) >= 5, \
            f"docs/README.md: {spec.filename} needs a sentence"


def test_readme_shows_gallery_pictures_that_exist():
    shown = re.findall(r"!\[[^\]]*\]\((docs/figures/[^)]+)\)", (ROOT / "README.md").read_text())
    assert len(shown) >= 3
    for path in shown:
        assert (ROOT / path).is_file(), path
