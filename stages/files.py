"""Atomic file writing: nothing a user made is lost, nothing half-written is left behind.

Every output of the project (datasets, checkpoints, metrics, figures) is first written to a
temporary file in the destination folder, then moved into place with ``os.replace``, which is
atomic on POSIX and Windows. An interrupted run therefore leaves either the old file or the new
one, never a truncated mix. The file gets the permissions any new file would (0644 under the usual
umask 022): ``tempfile.mkstemp`` makes its file private (0600), which on a shared machine would
hide a run's results from everyone else.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process's umask (read, then put back)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), "wb")


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), "w")


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """JSON with sorted keys, so that the same object always gives the same bytes."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=True) + "\n")


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (the format follows the file extension)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"))
