"""Mask R-CNN's ablations (He et al. 2017, Table 2) on our data: one run per variant, one table.

Table 2 of the paper changes one thing at a time against its default and reports mask AP / AP50 /
AP75 on COCO minival. The rows we reproduce, each a switch of ``python -m stages.mask_rcnn``
(``config.py``), all trained on the same data, split and time budget:

    table  name        flags (config fields changed)              the paper, mask AP / AP50 / AP75
    -      align       (the default: RoIAlign, mean of 2 x 2      30.3 / 51.2 / 31.5 (R-50-C4)
                       points, per-class sigmoid, one level)
    2c     roi_pool    --pool roi (RoIPool in both branches)      26.9 / 48.8 / 26.4
    2c     align_ours  --pool-kernel ours (mean, our kernel)      -  (a control, see below)
    2c     align_max   --pool-kernel ours --align-reduce max      30.2 / 51.0 / 31.8
    2b     softmax     --mask-loss softmax (classes compete)      24.8 / 44.1 / 25.1
    2a     fpn         --fpn --input-scale 1 (the pyramid, P2     R-50-C4 30.3 against R-50-FPN 33.6
                       at stride 4, on the image as it is)

Each row's deltas are against the default, except RoIAlign (max): only our kernel has the max, and
it trains and tests at another speed than torchvision's, so within one time budget it would also
differ in the number of steps. It is compared with ``align_ours``, the default computed by the
same kernel: the two rows differ in the reduction alone. The ms/img of our kernel's rows time our
readable Python RoIAlign and are not comparable with the others'.

What the paper showed, and what these rows should echo in direction (not in magnitude: our data,
backbone and budget are tiny): RoIAlign beats RoIPool, most of all at AP75 (the quantisation
misplaces masks by a fraction of a cell); max and mean hardly differ; per-class sigmoid masks beat
a softmax over classes; FPN beats a single level (in our 2-minute budget it does not: see
``MaskRCNNConfig.fpn``).

    results = run_variants(["align", "roi_pool"], "runs/ablation", RunConfig(time_budget=120))
    print(ablation_table(results))            # or load_results("runs/ablation")

Each variant is trained by stage 4's own function (``stages.mask_rcnn.__main__
.train_and_evaluate``) with the variant's changes over one Mask R-CNN config
(``dataclasses.replace``), into its own folder.

``benchmarks/ablate_mask_rcnn.py`` is the command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stages.evaluation.result import Result, ResultFileError
from stages.evaluation.tables import format_rows
from stages.mask_rcnn.__main__ import train_and_evaluate  # what the stage command runs
from stages.mask_rcnn.config import MaskRCNNConfig
from stages.training import distributed
from stages import run
from stages.flags import RunConfig
from stages.training.engine import CHECKPOINT
from stages.run import METRICS

DEFAULT = "align"


@dataclass(frozen=True)
class Variant:
    name: str  # the run's folder under the ablation folder, and the --variants choice
    table: str  # which part of the paper's Table 2 it echoes
    label: str  # the row's name in the table
    changes: tuple = ()  # (field, value) pairs over the MaskRCNNConfig every variant shares
    baseline: str = DEFAULT  # the variant its deltas are taken against
    ours_kernel: bool = False  # timed with our Python RoIAlign: ms/img not comparable


VARIANTS = {v.name: v for v in (
    Variant("align", "-", "RoIAlign (mean), sigmoid, one level: default"),
    Variant("roi_pool", "2c", "RoIPool (both branches)", (("pool", "roi"),)),
    Variant("align_ours", "2c", "RoIAlign (mean), our kernel", (("pool_kernel", "ours"),),
            ours_kernel=True),
    Variant("align_max", "2c", "RoIAlign (max), our kernel",
            (("pool_kernel", "ours"), ("align_reduce", "max")), baseline="align_ours",
            ours_kernel=True),
    Variant("softmax", "2b", "softmax over classes (masks compete)", (("mask_loss", "softmax"),)),
    Variant("fpn", "2a", "FPN P2..P5 on the image as it is",
            (("fpn", True), ("input_scale", 1.0), ("rpn_lambda", 5.0))),
)}


def run_variants(names, runs_dir, run_cfg: RunConfig = RunConfig(time_budget=120.0),
                 cfg: MaskRCNNConfig | None = None, *, retrain: bool = False) -> dict[str, Result]:
    """Train and evaluate each variant into ``runs_dir/<name>``: ``{name: Result}``, in order.

    Every variant gets the same run settings ``run_cfg`` (data, budget, epochs, ``long_side``,
    ...; its ``out`` is the variant's folder, replaced when it holds a trained run) and the same
    config ``cfg`` (None: stage 4's command defaults, ``run.command_defaults``), with its own
    ``changes`` over it. A variant whose ``metrics.json`` exists for the same data is read back
    instead of trained again, unless ``retrain`` (the budget and settings are not compared:
    ``retrain`` after changing them).
    """
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}: choose from {list(VARIANTS)}")
    if distributed.launched():  # every process would run every variant and write its records
        raise SystemExit("error: the ablation runs its variants in one process; train one variant "
                         "with torchrun -m stages.mask_rcnn and its flags instead")
    shared = cfg if cfg is not None else run.command_defaults(MaskRCNNConfig)
    results = {}
    for name in names:
        out = Path(runs_dir) / name
        reuse = None
        if (out / METRICS).exists() and not retrain:
            try:
                reuse = Result.load(out / METRICS)
            except ResultFileError as e:
                print(f"[ablation] {name}: {e}; training it again")
            if reuse is not None and reuse.data != run_cfg.data:
                print(f"[ablation] {name}: {out / METRICS} was trained on {reuse.data}, "
                      f"not {run_cfg.data}; training it again")
                reuse = None
        if reuse is not None:
            print(f"[ablation] {name}: reused {out / METRICS} (--retrain trains it again)")
            results[name] = reuse
            continue
        changes = dict(VARIANTS[name].changes)
        print(f"[ablation] {name}: stage 4 with {changes or 'its defaults'}, into {out}")
        results[name] = train_and_evaluate(
            dataclasses.replace(run_cfg, out=str(out),  # this script's own folder, trained again
                                overwrite=(out / CHECKPOINT).exists()),
            dataclasses.replace(shared, **changes))
    return results


def load_results(runs_dir) -> dict[str, Result]:
    """The variants that have a ``runs_dir/<name>/metrics.json``, in the order of ``VARIANTS``."""
    return {name: Result.load(Path(runs_dir) / name / METRICS) for name in VARIANTS
            if (Path(runs_dir) / name / METRICS).exists()}


# ------------------------------------------------------------------------------------------------
# The table: one row per variant, each number with its delta against the row's baseline
# ------------------------------------------------------------------------------------------------

COLUMNS = ("table", "variant", "box AP", "AP50", "AP75", "mask AP", "AP50", "AP75", "ms/img")
TEXT_COLUMNS = 2  # table, variant
METRICS_SHOWN = (("box", "AP"), ("box", "AP50"), ("box", "AP75"),
                 ("mask", "AP"), ("mask", "AP50"), ("mask", "AP75"))


def _value(r: Result, part: str, key: str) -> float | None:
    """An AP in percent, or None where it is missing or undefined (-1)."""
    metrics = getattr(r, part) or {}
    v = metrics.get(key, -1)
    return None if v == -1 else float(v)


def _delta_cell(value: float | None, base: float | None) -> str:
    """``45.2``, or ``40.1 (-5.1)`` against a baseline value."""
    if value is None:
        return "n/a"
    if base is None:
        return f"{value:.1f}"
    delta = round(value - base, 1) + 0.0  # + 0.0: -0.0 becomes 0.0, shown "+0.0"
    return f"{value:.1f} ({delta:+.1f})"


def baseline_of(name: str, results: dict[str, Result]) -> str | None:
    """The variant a row's deltas are against: its own baseline, else the default, else none."""
    if name == DEFAULT:
        return None
    for candidate in (VARIANTS[name].baseline if name in VARIANTS else DEFAULT, DEFAULT):
        if candidate in results and candidate != name:
            return candidate
    return None


def _rows(results: dict[str, Result]) -> list[list[str]]:
    order = [n for n in VARIANTS if n in results] + [n for n in results if n not in VARIANTS]
    rows = []
    for name in order:
        r, variant = results[name], VARIANTS.get(name, Variant(name, "?", name))
        base = results.get(baseline_of(name, results))
        cells = [_delta_cell(_value(r, part, key), _value(base, part, key) if base else None)
                 for part, key in METRICS_SHOWN]
        ms = _delta_cell(r.ms_per_image, base.ms_per_image if base else None)
        label = variant.label + (" *" if variant.ours_kernel else "")
        rows.append([variant.table, label, *cells, ms])
    return rows


def _notes(results: dict[str, Result]) -> list[str]:
    notes = []
    if DEFAULT in results:
        notes.append(f"(+/-x): the difference from the row `{VARIANTS[DEFAULT].label}`, "
                     f"unless said below")
    else:
        notes.append(f"no `{DEFAULT}` run: no deltas against the default")
    for name in results:
        base = baseline_of(name, results)
        if base is not None and base != DEFAULT:
            notes.append(f"`{VARIANTS[name].label}` is against `{VARIANTS[base].label}` (the same "
                         f"kernel: only the reduction differs)")
    if any(VARIANTS[n].ours_kernel for n in results if n in VARIANTS):
        notes.append("*: our Python RoIAlign (the max exists only there); its ms/img is not "
                     "comparable with torchvision's kernel in the other rows")
    first = next(iter(results.values()), None)
    if first is not None:
        datas = sorted({r.data for r in results.values()})
        notes.append(f"data {', '.join(datas)}; {first.n_val} val images; training "
                     + ", ".join(f"{n} {r.train_time_s:.0f} s" for n, r in results.items())
                     + ("" if len(datas) == 1 else "; NOTE: the rows come from different data"))
    return notes


def ablation_table(results: dict[str, Result]) -> str:
    """An aligned text table shaped like the paper's Table 2, with deltas; notes below it."""
    table = format_rows(COLUMNS, _rows(results), TEXT_COLUMNS)
    return "\n".join([table, ""] + [n.replace("`", "") for n in _notes(results)])


def ablation_markdown(results: dict[str, Result]) -> str:
    """The same table in Markdown."""
    table = format_rows(COLUMNS, _rows(results), TEXT_COLUMNS, markdown=True)
    return "\n".join([table, ""] + ["- " + n for n in _notes(results)]) + "\n"
