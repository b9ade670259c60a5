"""``python -m stages.compare``: every stage on the same data and split -> one table, one plot.

    python -m stages.compare                                  all four stages, quick preset
    python -m stages.compare --stages rcnn fast_rcnn          two generations only
    python -m stages.compare --peers                          + torchvision's Faster / Mask R-CNN
    python -m stages.compare --from-scratch                   + Mask R-CNN from random weights
    python -m stages.compare --retrain                        train again even what could be reused
    python -m stages.compare --steps 500                      500 optimizer steps per stage, not seconds

Seconds or steps. The quick preset gives every stage the same seconds of training: a fair race on
one machine, but a GPU takes many more steps in a second than a laptop. ``--steps N`` gives every
stage N optimizer steps (R-CNN: N mini-batches of its CNN) instead: the same training on any
machine, comparable across machines. The table's "steps" and "stopped by" columns say how many
each stage took and which rule ended it ("time", "steps" or "epochs").

What it shows is the story of the four papers in numbers, as in the Mask R-CNN paper's Table 1
(AP, AP50, AP75, APs/m/l, mask AP) with the time columns of the Fast and Faster R-CNN papers beside
it: test time per image, split into proposals and network, falls generation by generation
(Fast R-CNN: one CNN pass per image instead of one per region; Faster R-CNN: an RPN on the shared
features instead of selective search), while AP holds or rises.

How it runs
-----------
Each stage is its own command (``python -m stages.<stage>``), a thin wrapper around one typed
function that trains, evaluates and writes ``metrics.json`` (the shared ``Result`` record) and
``checkpoint.pt`` into its folder. ``compare`` calls those functions in turn, in this process
(``stages.run_stage.run_stage(stage, run, cfg)``), with the same shared run settings
(``RunConfig``'s: ``--data --val-data --preset --epochs --time-budget --steps`` ...) and
``out=<out>/<stage>``, and each stage's default config. Nothing here trains or evaluates a model
itself: the table and the ratios are made by ``stages/compare_report.py``, the plot by
``stages/figures/comparison.py``.

Reuse (``stages/compare_reuse.py``). After a stage finishes, ``<out>/<stage>/compare_settings.json``
records the settings it was run with. A later ``compare`` with the same settings reads that stage's ``metrics.json`` instead of
training again ("reused"); a run that was interrupted (the record says "running" and a checkpoint
was written since it started) goes on with the stage's own ``--resume`` ("resumed").
``--retrain`` ignores both. A stage folder that holds a run compare cannot reuse or resume (other
settings, or a stage run there by hand) is never overwritten: it is moved aside to
``<stage>.previous-<date>T<time>`` first, and compare says so; only ``--retrain`` replaces it.

Why each generation gains: every row carries TIDE's error breakdown of its boxes (the AP50 that
fixing each error type would add: cls, loc, both, dupe, bkg, missed; and loc at IoU 0.75, what
separates AP75 from AP50), printed as a second table with a sentence per step between generations
(what it removed, what it added) and drawn as the fourth panel. ``python -m stages.errors
RUN_FOLDER`` (or ``RESULTS.json ANNOTATIONS.json``, any COCO files) gives one run's counts.

Writes into --out (default runs, the folder the stage commands, notebooks and figures use too):
``<stage>/`` (each stage's own outputs),
``comparison.json`` (the rows, the full result records, the settings, the ratios),
``comparison.csv``, ``comparison.md`` and ``comparison.png`` (AP against test time; where the
test time goes; validation AP against seconds of training, from each run's ``--eval-every``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from datetime import datetime
from pathlib import Path

from stages.compare_report import (Entry, Row, format_comparison, generation_ratios,
                                   learning_curve, read_comparison, write_comparison)
from stages.compare_reuse import plan, write_record
from stages.evaluation.result import Result
from stages.fast_rcnn.config import FastRCNNConfig
from stages.rcnn.config import RCNNConfig
from stages.figures.comparison import plot_comparison
from stages.run_stage import default_config, run_stage
from stages.training import distributed
from stages import files
from stages.flags import RunConfig, add_dataclass_args, command_parser
from stages.training.engine import CHECKPOINT
from stages.run import METRICS

DEFAULT_OUT = Path("runs")  # the one place for runs: stage commands write runs/<stage> too


# ------------------------------------------------------------------------------------------------
# What is compared: one line per stage (and per torchvision peer)
# ------------------------------------------------------------------------------------------------

STAGES = (
    Entry("rcnn", "rcnn", "R-CNN", "selective search", "crop + warp (227 px in paper)",
          unused=("eval_every",  # R-CNN's AP exists only once its SVMs are trained
                  "checkpoint_every")),  # its checkpoints: the fine-tuned CNN, then the SVMs
    Entry("fast_rcnn", "fast_rcnn", "Fast R-CNN", "selective search", "RoIPool"),
    Entry("faster_rcnn", "faster_rcnn", "Faster R-CNN", "RPN", "RoIPool"),
    Entry("mask_rcnn", "mask_rcnn", "Mask R-CNN", "RPN", "RoIAlign"),
)
# torchvision's models on the same backbone, trained on the same data (the project's target: "ours
# must match or beat these at the same budget, measured side by side in one run";
# stages.torchvision.peers), each beside our stage of the same name
PEERS = (
    Entry("torchvision_faster_rcnn", "torchvision_faster_rcnn", "torchvision Faster R-CNN", "RPN",
          "RoIAlign", peer="faster_rcnn"),
    Entry("torchvision_mask_rcnn", "torchvision_mask_rcnn", "torchvision Mask R-CNN", "RPN",
          "RoIAlign", peer="mask_rcnn"),
)
STAGE_NAMES = tuple(e.name for e in STAGES)
# --from-scratch: what R-CNN sec. 2.3's "supervised pre-training" buys. The same Mask R-CNN, the
# same network and budget, started from random weights instead of ImageNet's.
FROM_SCRATCH = Entry("mask_rcnn_from_scratch", "mask_rcnn", "Mask R-CNN, random init", "RPN",
                     "RoIAlign", changes=(("pretrained", "none"),), ablation_of="mask_rcnn")
ENTRIES = {e.name: e for e in STAGES + PEERS + (FROM_SCRATCH,)}

# The run settings every stage shares and compare passes through unchanged (``RunConfig``'s
# fields minus out, resume, eval_only and overwrite, which compare sets itself). All but
# "progress" and "checkpoint_every" decide what a stage learns or records, so they are the
# settings a reused result must match.
SET_BY_COMPARE = ("out", "resume", "eval_only", "overwrite")
PASSED = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in SET_BY_COMPARE)
NOT_SETTINGS = ("progress", "checkpoint_every")
# Validation AP during training, for the third panel of comparison.png (AP against training
# seconds). Evaluation time is not counted in a stage's budget; each costs a few seconds.
EVAL_EVERY = 40.0


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("python -m stages.compare", __doc__)
    parser.add_argument("--stages", nargs="+", default=list(STAGE_NAMES), choices=STAGE_NAMES,
                        metavar="STAGE", help=f"stages to compare, from {', '.join(STAGE_NAMES)} "
                                              f"(default: all four)")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help=f"output folder: <out>/<stage> for each stage's run, <out>/comparison.* "
                             f"(default: {DEFAULT_OUT}, where the notebooks and figures look)")
    parser.add_argument("--retrain", action="store_true",
                        help="train every stage again, even one trained with these settings")
    parser.add_argument("--peers", action="store_true",
                        help="add torchvision's Faster R-CNN and Mask R-CNN as rows")
    parser.add_argument("--from-scratch", action="store_true",
                        help="add the row 'Mask R-CNN from random weights' beside the ImageNet-"
                             "pretrained one: what pre-training buys (R-CNN sec. 2.3)")
    add_dataclass_args(parser, RunConfig, "passed to every stage",
                       skip=SET_BY_COMPARE, defaults={"eval_every": EVAL_EVERY},
                       from_data=("long_side",))
    return parser


def stage_run(args: argparse.Namespace, entry: Entry, **set_by_compare) -> RunConfig:
    """The run settings a stage gets: the shared ones as given to compare (but not those the
    stage does not read, ``entry.unused``, nor those not given, which keep their defaults), and
    ``set_by_compare`` (its ``out``; ``resume`` or ``overwrite``)."""
    given = {name: getattr(args, name, None) for name in PASSED  # a caller's Namespace may
             if name not in entry.unused}                        # lack a newer setting
    return RunConfig(**{k: v for k, v in given.items() if v is not None}, **set_by_compare)


def stage_settings(args: argparse.Namespace, entry: Entry) -> dict:
    """What a reused result must have been run with (JSON-ready, compared with ``==``)."""
    values = {name: getattr(args, name, None) for name in PASSED
              if name not in NOT_SETTINGS and name not in entry.unused}
    # the same folder, however it is written: a notebook's "../data" is the command's "data"
    values["data_root"] = str(Path(values["data_root"]).resolve())
    # and the stage's whole config as this version of the code builds it: a run trained before a
    # default changed (a wider head, say) is not reused as if it were today's
    config = json.loads(json.dumps(dataclasses.asdict(default_config(entry.stage, **dict(entry.changes)))))
    return {"stage": entry.stage, "peer": entry.peer, "changes": dict(entry.changes), **values,
            "config": config}


def shown(run: RunConfig) -> str:
    """The run settings that differ from their defaults, as Python: "data='synthetic', ..."."""
    defaults = RunConfig()
    return ", ".join(f"{f.name}={getattr(run, f.name)!r}" for f in dataclasses.fields(RunConfig)
                     if getattr(run, f.name) != getattr(defaults, f.name))


# ------------------------------------------------------------------------------------------------
# Running one stage: decide train / resume / reuse, call it
# ------------------------------------------------------------------------------------------------

def run_entry(entry: Entry, args: argparse.Namespace, out: Path) -> tuple[Result, str]:
    """Train (or resume, or reuse) one stage; returns its result record and what was done."""
    out_dir = out / entry.name
    settings = stage_settings(args, entry)
    action = plan(out_dir, settings, args.retrain)
    if action == "reuse":
        result = Result.load(out_dir / METRICS)
        print(f"[compare] {entry.name}: reused {out_dir / METRICS} (trained with the same "
              f"settings; --retrain trains it again)")
        return result, "reused"
    if action == "train" and (out_dir / CHECKPOINT).exists():
        if not args.retrain:  # a run compare did not make with these settings: keep it
            aside = out_dir.with_name(f"{out_dir.name}.previous-"
                                      f"{datetime.now().strftime('%Y-%m-%dT%H%M%S')}")
            out_dir.rename(aside)
            print(f"[compare] {entry.name}: {out_dir} held a run with other settings (or one run "
                  f"by hand); moved it to {aside} (--retrain replaces instead)")
    replace = action == "train" and (out_dir / CHECKPOINT).exists()  # --retrain
    run = stage_run(args, entry, out=str(out_dir), resume=action == "resume", overwrite=replace)
    cfg = default_config(entry.stage, **dict(entry.changes))
    if action == "resume":
        print(f"[compare] {entry.name}: an unfinished run with the same settings left "
              f"{out_dir / CHECKPOINT}: resuming it (the stage's --resume)")
    started = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_record(out_dir, settings, dataclasses.asdict(run), "running", started)
    changes = "".join(f", {k}={v!r}" for k, v in entry.changes)
    print(f"[compare] run_stage({entry.stage!r}, RunConfig({shown(run)}){changes})")
    result = run_stage(entry.stage, run, cfg)
    if not isinstance(result, Result):  # a stage that returns nothing: read what it wrote
        result = Result.load(out_dir / METRICS)
    write_record(out_dir, settings, dataclasses.asdict(run), "finished", started)
    return result, "resumed" if action == "resume" else "trained"


def ensure_run(name: str, runs: str | Path = DEFAULT_OUT, argv: list[str] | tuple = ()) -> Path:
    """The run ``<runs>/<name>`` exactly as ``python -m stages.compare`` makes it (its shared flags
    ``argv``, else compare's defaults): reused when compare has made it with these settings,
    resumed when it was interrupted, trained now otherwise. Returns its folder. The notebooks
    read their stage's run this way: after the README's main command nothing trains again, and a
    run they train is one the next ``compare`` reuses."""
    if name not in ENTRIES:
        raise ValueError(f"unknown run {name!r}: expected one of {', '.join(ENTRIES)}")
    args = build_parser().parse_args(["--out", str(runs), *argv])
    run_entry(ENTRIES[name], args, Path(runs))
    return Path(runs) / name


# ------------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------------

def check_writable(out: Path) -> None:
    """Fail now, not after an hour of training, if the output folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise SystemExit(f"error: cannot write to the output folder --out {out}: "
                         f"{e.strerror or e}") from None


def short_data(spec: str) -> str:
    """``coco:/long/path/train.json:/long/path/images`` -> ``coco:train.json:images``."""
    kind, _, rest = spec.partition(":")
    return kind + (":" + ":".join(Path(p).name for p in rest.split(":")) if rest else "")


def describe(args: argparse.Namespace) -> str:
    """The run's settings in words, e.g. "data synthetic; each stage trained 120 s (R-CNN's CNN
    60 s: the quick preset); seed 0, device auto"."""
    steps = getattr(args, "steps", None)  # (absent from comparisons saved before --steps)
    if steps is not None:  # a budget in steps replaces the preset's rule
        budget = f"{steps} optimizer steps" + (f" or {args.time_budget:g} s, whichever comes "
                                               f"first" if args.time_budget else "")
    elif args.time_budget is not None:
        budget = f"{args.time_budget:g} s"
    elif args.preset == "quick":
        budget = (f"{FastRCNNConfig.quick_time_budget:g} s (R-CNN's CNN "
                  f"{RCNNConfig.quick_time_budget:g} s: the quick preset)")
    else:
        budget = "the full preset's epochs"
    if args.epochs is not None:
        budget += f", at most {args.epochs} epochs"
    return (f"data {short_data(args.data)}; each stage trained {budget}; seed {args.seed}, "
            f"device {args.device}")


def save_comparison(out: Path, rows: list[Row], ratios: list[str], args) -> list[Path]:
    """``comparison.json``, ``.csv`` and ``.md`` (`write_comparison`) and ``comparison.png``
    (`plot_comparison`) in ``out``, with the shared run settings of ``args`` (compare's flags)."""
    settings = {name: getattr(args, name) for name in PASSED if name not in NOT_SETTINGS}
    return (write_comparison(out, rows, ratios, settings, describe(args))
            + [files.save_figure(plot_comparison(rows, describe(args)), out / "comparison.png")])


def main(argv: list[str] | None = None) -> list[Row]:
    args = build_parser().parse_args(argv)
    if distributed.launched():  # every process would run every stage and write its records
        raise SystemExit("error: python -m stages.compare runs in one process; start a stage "
                         "command with torchrun instead (torchrun --nproc_per_node=N -m "
                         "stages.faster_rcnn ...), or compare on one GPU with --device cuda")
    out = Path(args.out)
    check_writable(out)
    chosen = [e for e in STAGES if e.name in args.stages]  # the order of the generations
    if args.from_scratch:
        chosen.append(FROM_SCRATCH)
    if args.peers:
        chosen += PEERS

    print(f"[compare] {len(chosen)} runs into {out}: {describe(args)}")
    rows, t_all = [], time.perf_counter()
    for i, entry in enumerate(chosen, 1):
        kind = "peer" if entry.peer else "stage"
        print(f"\n[compare] {kind} {i}/{len(chosen)}: {entry.name} ({entry.title}) ...",
              flush=True)
        t0 = time.perf_counter()
        try:
            result, status = run_entry(entry, args, out)
            curve = learning_curve(out / entry.name, result)
        except BaseException:
            print(f"[compare] {entry.name} stopped after {time.perf_counter() - t0:.0f} s; the "
                  f"same command again reuses the runs finished before it and resumes this one "
                  f"from its checkpoint, if it wrote one")
            raise
        print(f"[compare] {kind} {i}/{len(chosen)}: {entry.name} {status} in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        rows.append(Row(entry, result, status, curve))

    ratios = generation_ratios(rows)
    print(f"\n[compare] {describe(args)}")
    print(format_comparison(rows))
    if ratios:
        print("\n" + "\n".join(ratios))
    paths = save_comparison(out, rows, ratios, args)
    reused = sum(r.status == "reused" for r in rows)
    print(f"\n[compare] {len(rows)} runs ({reused} reused) in {time.perf_counter() - t_all:.0f} s; "
          f"wrote {', '.join(str(p) for p in paths)}")
    return rows


# ------------------------------------------------------------------------------------------------
# Reading a saved comparison back (notebook 05 reads runs/comparison.json instead of training again)
# ------------------------------------------------------------------------------------------------

def load_comparison(path: Path) -> tuple[list[Row], argparse.Namespace]:
    """The rows of a ``comparison.json`` written by ``save_comparison``, and the settings it was run
    with (``describe(settings)`` gives the subtitle of its table and plot). The inverse of
    ``save_comparison``: the rows print, plot and give ``generation_ratios`` as they did then."""
    rows, settings = read_comparison(path, ENTRIES)
    return rows, argparse.Namespace(**settings)


if __name__ == "__main__":
    main()
