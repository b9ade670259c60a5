"""Reuse a run trained with the same settings: ``compare_settings.json`` in each run folder.

After ``python -m stages.compare`` (or a notebook's ``compare.ensure_run``) finishes a stage, the
record in ``<out>/<stage>/compare_settings.json`` says what the run was trained with: the shared
flags and the stage's whole config as the code built it (so a run trained before a default
changed is trained again, not reused). A later
comparison with the same settings reads the run's ``metrics.json`` instead of training again; a
run that was interrupted resumes from its checkpoint. ``plan`` decides; ``write_record`` writes
the record, "running" before the stage starts and "finished" once it is done.

How a record knows its run is the one in the folder (and not one trained there by hand since):
the SHA-256 of the ``metrics.json`` it finished with, the modification time of its checkpoint,
and when it started.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from stages import files
from stages.training.engine import CHECKPOINT
from stages.run import METRICS

SETTINGS = "compare_settings.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_record(out_dir: Path) -> dict | None:
    """``compare_settings.json`` of a run folder, or None (absent or unreadable: train anew)."""
    try:
        record = json.loads((out_dir / SETTINGS).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def same_settings(saved, wanted: dict) -> bool:
    """Whether a record's settings are ``wanted``. A setting added since the record was written
    (``steps``, say) is missing from it; the run had it at its default, ``None``."""
    if not isinstance(saved, dict):
        return False
    return {**{k: None for k in wanted if k not in saved}, **saved} == wanted


def plan(out_dir: Path, settings: dict, retrain: bool) -> str:
    """"reuse", "resume" or "train" for the run folder ``out_dir`` and the requested settings.

    reuse   the record says "finished" with the same settings, and metrics.json is the very file
            that run wrote (same SHA-256: a stage run by hand into this folder since then makes
            it a different file) next to its checkpoint.pt
    resume  same settings, and checkpoint.pt was written by that run: since it started (it was
            interrupted) or, finished, not touched since (then only metrics.json is missing)
    train   anything else, or ``retrain``
    """
    record = read_record(out_dir)
    if retrain or record is None or not same_settings(record.get("settings"), settings):
        return "train"
    ckpt, metrics = out_dir / CHECKPOINT, out_dir / METRICS
    if not ckpt.exists():
        return "train"
    status = record.get("status")
    if status == "finished" and metrics.exists() and record.get("metrics_sha256") == _sha256(metrics):
        return "reuse"
    if status == "running" and ckpt.stat().st_mtime >= record.get("started_unix", math.inf):
        return "resume"
    if status == "finished" and ckpt.stat().st_mtime_ns == record.get("checkpoint_mtime_ns"):
        return "resume"
    return "train"


def write_record(out_dir: Path, settings: dict, run: dict, status: str, started: float) -> None:
    """``compare_settings.json``: the ``settings`` a reuse must match, the ``run`` settings the
    stage got (its ``RunConfig`` as a dict: its folder, --resume, ...), and ``status``: "running"
    before the stage starts, "finished" once it is done."""
    record = {"settings": settings, "run": run, "status": status, "started_unix": started}
    if status == "finished":
        record["metrics_sha256"] = _sha256(out_dir / METRICS)
        record["checkpoint_mtime_ns"] = (out_dir / CHECKPOINT).stat().st_mtime_ns
        record["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    files.write_json(out_dir / SETTINGS, record)
