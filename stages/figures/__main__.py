"""``python -m stages.figures``: the lecture figures (``stages.figures.gallery``)."""

from stages.figures.gallery import main

if main().failed:
    raise SystemExit(1)
