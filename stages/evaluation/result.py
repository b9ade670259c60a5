"""One result record per run: what a stage measured, saved as ``metrics.json``.

Every stage command writes one ``Result`` into its ``--out`` folder; ``python -m stages.compare``,
the benchmarks and the notebooks read them back. The record holds the numbers of `evaluate`
(``evaluator.py``: box and mask APs in percent, -1 = undefined; test ms per image, split into
proposals and network) and what the run knows about itself (stage, data, training seconds,
parameter count, seed). ``tables.py`` prints records as a table.

Map of this module
------------------
    Result            the record: from_evaluation (wrap evaluate's dict), to_dict / from_dict,
                      save / load (atomic JSON)
    ResultFileError   a result file that exists but cannot be read as a record
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from stages.files import write_json


class ResultFileError(ValueError):
    """A result file that exists but is not valid JSON or not a result record."""


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class Result:
    """What one run of one stage measured: a row of the comparison table."""
    stage: str                # "rcnn", "fast_rcnn", ...
    variant: str              # e.g. "proposals=selective_search pool=roi"
    data: str                 # the data source, e.g. "synthetic seed=0"
    box: dict                 # coco_metrics of boxes
    mask: dict | None         # coco_metrics of masks, or None
    train_time_s: float
    ms_per_image: float
    ms_proposals: float
    ms_network: float
    timing_ms: dict           # {part: ms per image}
    params: int
    n_train: int
    n_val: int
    device: str
    seed: int
    steps: int | None = None  # optimizer steps of training (R-CNN: its CNN's mini-batches)
    stopped_by: str | None = None  # what ended training: "epochs", "time_budget" or "steps"
    created: str = dataclasses.field(default_factory=_now_iso)  # ISO 8601, UTC
    notes: list = dataclasses.field(default_factory=list)
    # {"box": {class name: {"AP", "AP50"}}, "mask": ...}: each class's AP ({} in older records)
    per_class: dict = dataclasses.field(default_factory=dict)
    # {"box": TIDE's breakdown, "mask": ...} (stages.evaluation.errors.breakdown): the AP50 each
    # error type costs ({} in older records)
    errors: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def from_evaluation(cls, ev: dict, *, stage: str, variant: str, data: str, train_time_s: float,
                        params: int, n_train: int, device: str, seed: int,
                        steps: int | None = None, stopped_by: str | None = None) -> "Result":
        """Wrap the dict returned by `evaluate` with what the run knows about itself."""
        return cls(stage=stage, variant=variant, data=data, box=ev["box"], mask=ev["mask"],
                   train_time_s=float(train_time_s), ms_per_image=ev["ms_per_image"],
                   ms_proposals=ev["ms_proposals"], ms_network=ev["ms_network"],
                   timing_ms=dict(ev["timing_ms"]), params=int(params), n_train=int(n_train),
                   n_val=ev["n_images"], device=str(device), seed=int(seed), steps=steps,
                   stopped_by=stopped_by, notes=list(ev["notes"]),
                   per_class=dict(ev.get("per_class") or {}), errors=dict(ev.get("errors") or {}))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "Result":
        """The inverse of to_dict. Unknown keys are ignored (records written by a newer version)."""
        if not isinstance(d, dict):
            raise ValueError(f"a result record is a JSON object, not {type(d).__name__}")
        fields = dataclasses.fields(cls)
        required = [f.name for f in fields
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [name for name in required if name not in d]
        if missing:
            raise ValueError(f"not a result record: missing {', '.join(missing)}")
        return cls(**{f.name: d[f.name] for f in fields if f.name in d})

    def save(self, path) -> Path:
        """Write atomically as JSON (an interrupted run leaves the old file or the new one)."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path) -> "Result":
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise FileNotFoundError(f"no result file at {path}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ResultFileError(f"{path} is not valid JSON ({e}); delete it and rerun") from None
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ResultFileError(f"{path}: {e}") from None
