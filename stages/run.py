"""What every stage does around its model: data, output folder, training, result record.

Each stage has one typed function that does the work, ``train_and_evaluate(run: RunConfig, cfg)
-> Result`` in ``stages/<stage>/__main__.py`` (``stages.run_stage.run_stage`` reaches them all by
name), and a command-line ``main(argv)`` that only parses the flags into those two configs and
calls it. The function reads top to bottom with these helpers (no framework, no callbacks)::

    ctx = run.prepare(run_cfg, stage="fast_rcnn")              # seed, device, data, output folder
    cfg = run.stage_config(FastRCNNConfig, cfg, ctx)           # the values left to the data, chosen
    model = build_fast_rcnn(cfg, ctx.num_classes)
    trained = run.train_or_restore(model, ctx, cfg, run.saved_config(ctx, cfg))  # or --eval-only
    return run.finish(model, ctx, variant="pool=roi", trained=trained)  # evaluate, save, print

A config given to ``train_and_evaluate`` may leave the fields of ``FROM_DATA`` at None, as the
command line does when their flag is not given: ``stage_config`` then chooses them from the data
(``command_defaults(cls)`` is such a config: what the command builds with no flag).

``finish`` writes ``metrics.json`` (the result record ``compare`` and the notebooks read),
``detections.json`` (the validation detections in COCO results format, what pycocotools, TIDE and
FiftyOne read), ``ground_truth.json`` (the COCO ground truth they were scored against, in the same
pixel frame) and ``predictions.png`` into the output folder and prints the table row.

Under ``torchrun`` (``stages.training.distributed``) ``prepare`` joins the processes and gives each
its device, rank 0 makes the data and the folder first, every process trains, and ``finish``
evaluates and writes on rank 0 alone (it returns None on the others).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stages.training import distributed, engine, loss_figure
from stages.backbone import BackboneError
from stages.training.checkpoint import CheckpointError, load_checkpoint, restore
from stages.flags import (AUTO, RunConfig, add_dataclass_args, command_parser,
                                 dataclass_from_args)
from stages.data import box_statistics
from stages.data.box_statistics import BoxStats, gather
from stages.data.checks import check_inputs
from stages.data.datasets import DatasetWarning
from stages.data.sources import DatasetError, load_dataset, parse_spec
from stages.selective_search import OpenCVContribMissing
from stages.devices import choose_device, count_parameters, seed_everything
from stages.training.optimizer import build_optimizer
from stages.figures.draw import draw_detections, figure_grid
from stages.evaluation import Result, evaluate, format_table
from stages import files
from stages.files import save_figure
from stages.data.transforms import train_transforms, val_transforms

METRICS = "metrics.json"
PREDICTIONS = "predictions.png"
# COCO results format, a list of {image_id, category_id, bbox [x, y, w, h], score[, segmentation
# RLE], file_name}; with ground_truth.json, pycocotools' COCO(gt).loadRes(detections) gives back
# metrics.json's APs. Both are in the pixels the evaluation saw (after --long-side).
DETECTIONS = "detections.json"
GROUND_TRUTH = "ground_truth.json"


# what a user's input or a diverging run raises: each message names the file or the step
USER_ERRORS = (DatasetError, BackboneError, CheckpointError, engine.NonFiniteLossError,
               engine.TrainingSetupError, OpenCVContribMissing)


def one_line_errors(main):
    """Wrap a stage's ``train_and_evaluate`` (what its command and ``run_stage`` call): an error
    about the user's data, weights or checkpoint, or a loss that became NaN, ends the command with
    its one-line message (and exit status 1), not a traceback from deep inside the loop. An image found missing mid-epoch is such an error, and
    the last checkpoint stays on disk (``engine.train`` saves every ``--checkpoint-every``
    seconds and after every epoch).

    Ctrl-C or SIGTERM while training: the loop saves the step reached and the command ends with
    one line saying so (exit status 130 or 143, as a shell expects); Ctrl-C elsewhere (reading the
    data, evaluating) ends it with one line too, the files written so far whole.

    Under ``torchrun`` the process leaves the process group at the end, however it ends, and only
    rank 0 prints the error: the others end with the same exit status, silently."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as e:
            raise SystemExit(f"error: {e}" if _on_rank_0() else 1) from None
        except engine.TrainingInterrupted as e:
            raise _exit(str(e), 128 + e.signal_number) from None
        except KeyboardInterrupt:
            raise _exit(f"interrupted (Ctrl-C) before or after training; every file written so "
                        f"far is whole, and a checkpoint.pt in the output folder continues with "
                        f"--resume", 130) from None
        except SystemExit as e:  # a one-line refusal (SystemExit("error: ...")): rank 0 says it
            if isinstance(e.code, str) and not _on_rank_0():
                raise SystemExit(1) from None
            raise
        finally:
            distributed.cleanup()  # under torchrun: leave the process group (else a no-op)
    return wrapper


def _on_rank_0() -> bool:
    """Rank 0 under torchrun (its RANK, even before the processes have joined), or a lone process."""
    return distributed.is_main() if distributed.active() else os.environ.get("RANK", "0") == "0"


def _exit(message: str, status: int) -> SystemExit:
    """``SystemExit`` with ``status``, after ``message`` on stderr (rank 0 only under torchrun)."""
    if _on_rank_0():
        print(message, file=sys.stderr, flush=True)
    return SystemExit(status)


# The settings whose default the data decides (``stages.data.box_statistics``): on the built-in
# synthetic set the config's measured value, on the user's data (coco:, pennfudan:) a choice from
# the training boxes, printed. Each also takes "auto" (or, for the selective-search method, a
# name) on the command line.
FROM_DATA = ("long_side", "input_scale", "anchor_sizes", "anchor_ratios", "fpn_anchor_sizes",
             "ss_method", "method")
# Selective search's method follows the image size: the package (the readable version the notebook
# walks through) was tuned on 128-px images, where it finds 0.951 of the shapes with 112 boxes
# (OpenCV's fast mode 0.938 with 139); on photos of 256 px it finds 0.523 of Penn-Fudan's
# pedestrians, OpenCV's fast mode 0.872 (benchmarks/bench_proposals.py, report.md section 13).
PHOTO_SS_METHOD = "opencv_fast"
PACKAGE_MAX_SIDE = 160  # px, the median long side (after --long-side) up to which the package runs


def build_parser(description: str | None, *config_classes, prog: str,
                 skip: tuple = ()) -> argparse.ArgumentParser:
    """The command ``prog`` ("python -m stages.fast_rcnn"): its docstring as the description, the
    shared flags (``RunConfig``), then one flag per field of each stage config class, but not the
    fields in ``skip`` (inherited ones the stage does not read). The fields of ``FROM_DATA``
    default to None: ``prepare`` and ``stage_config`` fill them in from the data."""
    parser = command_parser(prog, description)
    add_dataclass_args(parser, RunConfig, "run (every stage)", skip=skip, from_data=FROM_DATA)
    for cls in config_classes:
        add_dataclass_args(parser, cls, cls.__name__, skip=skip, from_data=FROM_DATA)
    return parser


@dataclass
class Context:
    run: RunConfig
    stage: str
    device: torch.device
    out_dir: Path
    train: object  # the training dataset (with flips)
    val: object  # the validation dataset
    box_stats: BoxStats | None = None  # the training boxes at the chosen image size (on demand)
    saved_config: dict | None = None  # --eval-only / --resume: the checkpoint's (checkpoint_config)

    @property
    def from_data(self) -> bool:
        return on_users_data(self.run.data)

    def image_side(self) -> float:
        """The training images' long side as the model reads them: ``--long-side`` (``Resize``
        brings every image to it), else their median."""
        if self.run.long_side:
            return float(self.run.long_side)
        sides = self.stats().long_sides
        return float(np.median(sides)) if len(sides) else 0.0

    def stats(self) -> BoxStats:
        if self.box_stats is None:
            self.box_stats = gather(self.train).resized(self.run.long_side)
        return self.box_stats

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names


def on_users_data(spec: str) -> bool:
    """Whether the ``FROM_DATA`` defaults are chosen from the data: on the user's data (coco:,
    pennfudan:), not on the built-in synthetic set, whose values were measured."""
    return parse_spec(spec)[0] != "synthetic"


def prepare(args: argparse.Namespace | RunConfig, stage: str) -> Context:
    """Seed, choose the device, load the data, make the output folder (``runs/<stage>``).

    Under ``torchrun``: join the other processes first (``distributed.setup``: this process's
    GPU, or the CPU); rank 0 generates or reads the data first and alone makes the folder."""
    run = args if isinstance(args, RunConfig) else dataclass_from_args(RunConfig, args)
    if run.preset not in ("quick", "full"):
        raise SystemExit(f"--preset {run.preset!r}: expected 'quick' or 'full'")
    if run.steps is not None and run.steps < 1:
        raise SystemExit(f"error: --steps {run.steps}: give at least 1 optimizer step")
    if isinstance(run.long_side, int) and run.long_side < 0:
        raise SystemExit(f"error: --long-side {run.long_side}: give a number of pixels, 0 (keep "
                         f"the images as they are) or auto")
    seed_everything(run.seed)
    try:
        device = distributed.setup(choose_device(run.device))
    except (ValueError, RuntimeError) as e:  # no GPU for --device cuda; a failed rendezvous
        raise SystemExit(f"error: {str(e).splitlines()[0]}") from None
    if not distributed.is_main():
        run = dataclasses.replace(run, progress=False)  # one progress bar: rank 0's
    out_dir = Path(run.out or Path("runs") / stage)
    check_output_folder(run, out_dir, stage)
    saved = checkpoint_config(run, out_dir)
    try:
        with distributed.main_first(), warnings.catch_warnings():
            # rank 0 generates the synthetic set; the others read it. What reading the
            # annotations mended (boxes cut to their image, short polygons) is said below, once
            warnings.simplefilter("ignore", DatasetWarning)
            train, val = load_dataset(run.data, run.data_root, val_spec=run.val_data)
        if run.long_side is None and saved is not None and "long_side" in saved:
            run, stats = dataclasses.replace(run, long_side=saved["long_side"]), None
            print(f"[{stage}] --long-side {run.long_side or 0}: the checkpoint's")
        else:
            try:  # reads the boxes (Penn-Fudan: its masks), so it may meet a bad file first
                run, stats = choose_long_side(run, train, stage)
            except DatasetError:
                check_inputs(train, val, long_side=None)  # every problem, not the first one
                raise
        # every image opened before the first step: its problems all at once, now
        for note in check_inputs(train, val, long_side=run.long_side,
                                 progress=run.progress and distributed.is_main()):
            print(f"[{stage}] {note}")
    except DatasetError as e:  # the user's data: one clear line, no traceback
        raise SystemExit(f"error: {e}") from None
    train.transforms = train_transforms(run.long_side)  # the resize (if any), then random flips
    val.transforms = val_transforms(run.long_side)
    if distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    data = run.data + (f" (val {run.val_data})" if run.val_data else "")
    print(f"[{stage}] data {data}: {len(train)} train / {len(val)} val images, "
          f"classes {train.class_names[1:]}; device {device}; output {out_dir}")
    return Context(run, stage, device, out_dir, train, val, stats, saved)


# What a stage command writes into its --out folder: ``--overwrite`` deletes these, and nothing else
RUN_FILES = (engine.CHECKPOINT, engine.LOSSES, engine.LOSSES_FIGURE, METRICS, DETECTIONS,
             GROUND_TRUTH, PREDICTIONS, "train_log.json", "proposals.png",  # R-CNN's own two
             "compare_settings.json")  # what python -m stages.compare knew of the run


def check_output_folder(run: RunConfig, out_dir: Path, stage: str) -> None:
    """Refuse, in one line, what would lose a run or fail later: ``--out`` or ``--data-root``
    that is a file; ``--resume`` with no checkpoint to resume (a mistyped ``--out`` would
    otherwise look like a resume); a new run into a folder that holds a trained one (its
    checkpoint would be replaced) unless ``--overwrite`` says so, which deletes that run's
    files (``RUN_FILES``) first, so that the folder never mixes two runs."""
    for flag, path in (("--out", out_dir), ("--data-root", Path(run.data_root))):
        if path.exists() and not path.is_dir():
            raise SystemExit(f"error: {flag} {path}: a file is there, not a folder; give a folder")
    flags = [f for f, on in (("--resume", run.resume), ("--eval-only", run.eval_only),
                             ("--overwrite", run.overwrite)) if on]
    if len(flags) > 1:
        raise SystemExit(f"error: {' and '.join(flags)}: give one of them")
    checkpoint = out_dir / engine.CHECKPOINT
    if run.resume and not checkpoint.exists():
        raise SystemExit(f"error: --resume: there is no {checkpoint} to continue (nothing was "
                         f"trained into {out_dir}); check --out, or leave out --resume to start a "
                         f"new run")
    if run.resume or run.eval_only or not checkpoint.exists():
        return
    if not run.overwrite:
        raise SystemExit(f"error: {out_dir} already holds a trained run ({checkpoint.name}); "
                         f"give --resume to continue it, --eval-only to score it, --overwrite to "
                         f"replace it, or another --out")
    if _on_rank_0():  # one process deletes; the others wait at the barrier
        removed = [name for name in RUN_FILES if (out_dir / name).is_file()]
        for name in removed:
            (out_dir / name).unlink()
        print(f"[{stage}] --overwrite: deleted the earlier run's {', '.join(removed)} in {out_dir}")
    distributed.barrier()


def overwrite_flag(out_dir) -> list[str]:
    """``["--overwrite"]`` when ``out_dir`` holds a trained run, else ``[]``: for the benchmark
    scripts whose folders are their own outputs, trained again on purpose (the ablation sets
    ``RunConfig.overwrite`` itself; ``compare`` moves a run aside instead, unless ``--retrain``)."""
    return ["--overwrite"] if (Path(out_dir) / engine.CHECKPOINT).exists() else []


def checkpoint_config(run: RunConfig, out_dir: Path) -> dict | None:
    """With ``--eval-only`` or ``--resume``: the config saved in ``<out_dir>/checkpoint.pt``, whose
    values chosen from the data (``FROM_DATA``) the run keeps unless a flag says otherwise, so that
    the model evaluated or resumed is the one that was trained. None otherwise, or when there is no
    usable checkpoint (loading it for its weights, later, says what is wrong in one line)."""
    path = out_dir / engine.CHECKPOINT
    if not (run.eval_only or run.resume) or not path.is_file():
        return None
    try:
        config = load_checkpoint(path)["config"]
    except CheckpointError:
        return None
    return config if isinstance(config, dict) else None


def choose_long_side(run: RunConfig, train, stage: str) -> tuple[RunConfig, BoxStats | None]:
    """``--long-side``: as given; else none on the synthetic set; else, on the user's data, large
    photos resized (``box_statistics.choose_long_side``), which is printed. Returns the run
    config with the number (0: images as they are) and the boxes' statistics where they were
    read."""
    if run.long_side not in (None, AUTO) or (run.long_side is None and not on_users_data(run.data)):
        return dataclasses.replace(run, long_side=run.long_side or None), None
    stats = gather(train)
    long_side = box_statistics.choose_long_side(stats)
    median = float(np.median(stats.long_sides)) if len(stats.long_sides) else 0
    resized = stats.resized(long_side)
    why = (f"resized to {long_side} px on the long side" if long_side else "kept as they are")
    print(f"[{stage}] --long-side auto: the training images (median long side {median:.0f} px) "
          f"are {why}; objects then measure {resized.median_size():.0f} px (median sqrt(area))")
    return dataclasses.replace(run, long_side=long_side), resized


def stage_config(cls, given, ctx: Context):
    """The stage config ``cls`` from ``given`` (a config of that class, or parsed flags), the
    ``FROM_DATA`` fields filled in: a value given is kept; "auto" is chosen from the training boxes (``stages.data.box_statistics``);
    none given means "auto" on the user's data and the field's measured default on the built-in
    synthetic set. What was chosen from the data is printed in one line, with why."""
    values = {f.name: getattr(given, f.name) for f in dataclasses.fields(cls) if hasattr(given, f.name)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    chosen, from_checkpoint = [], []
    for name in FROM_DATA:
        if name not in values or name == "long_side":
            continue
        value = values[name]
        if value is None and ctx.saved_config and ctx.saved_config.get(name) is not None:
            saved = ctx.saved_config[name]  # --eval-only / --resume: what the run trained with
            values[name] = tuple(saved) if isinstance(saved, list) else saved
            from_checkpoint.append(f"{name.replace('_', ' ')} {_show_value(values[name])}")
            continue
        if name in ("ss_method", "method"):  # a choice of method, not a number from the boxes
            if value is None:
                side = ctx.image_side() if ctx.from_data else 0
                value = PHOTO_SS_METHOD if side > PACKAGE_MAX_SIDE else "package"
                if ctx.from_data:
                    chosen.append(f"selective search {value} (images of {side:.0f} px)")
            values[name] = value
            continue
        auto = value == AUTO or (isinstance(value, tuple) and AUTO in value)
        if isinstance(value, tuple) and auto and len(value) > 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} {' '.join(map(str, value))}: "
                             f"give numbers or the word auto alone")
        if value is None and not ctx.from_data:
            values[name] = defaults[name]
            continue
        if value is not None and not auto:
            continue
        stats = ctx.stats()
        if stats.n_boxes == 0:
            values[name] = defaults[name]
            chosen.append(f"{name} {_show_value(defaults[name])} (no training box to measure)")
            continue
        values[name] = CHOOSERS[name](stats)
        chosen.append(f"{name.replace('_', ' ')} {_show_value(values[name])}")
    if chosen:
        if any(not c.startswith("selective search") for c in chosen):  # numbers from the boxes
            stats = ctx.stats()
            q10, q50, q90 = stats.size_quantiles() if stats.n_boxes else (0, 0, 0)
            r10, r50, r90 = stats.ratio_quantiles() if stats.n_boxes else (0, 0, 0)
            why = (f". Why: the {stats.n_boxes} training boxes measure {q10:.0f} / {q50:.0f} / "
                   f"{q90:.0f} px (sqrt(area), 10 / 50 / 90 %) and are {r10:.1f} / {r50:.1f} / "
                   f"{r90:.1f} times as tall as wide; anchors follow those quantiles, and images "
                   f"are enlarged only while the median object is under "
                   f"{box_statistics.TARGET_OBJECT:.0f} px")
        else:
            why = (": the package was tuned on 128-px images; on 256-px photos OpenCV's fast mode "
                   "finds 0.87 of Penn-Fudan's pedestrians at IoU 0.5, the package 0.52 "
                   "(benchmarks/bench_proposals.py)")
        print(f"[{ctx.stage}] from the data: {'; '.join(chosen)}{why}")
    if from_checkpoint:
        print(f"[{ctx.stage}] from the checkpoint: {'; '.join(from_checkpoint)}")
    return cls(**values)


CHOOSERS = {"input_scale": box_statistics.choose_input_scale,
            "anchor_sizes": box_statistics.choose_anchor_sizes,
            "anchor_ratios": box_statistics.choose_anchor_ratios,
            "fpn_anchor_sizes": box_statistics.choose_fpn_anchor_sizes}


def _show_value(value) -> str:
    """A chosen value as a flag takes it: "48 80 120" for a tuple, "1.5" for a float."""
    if isinstance(value, tuple):
        return " ".join(f"{v:g}" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def saved_config(ctx: Context, *configs) -> dict:
    """What a checkpoint keeps as its ``config``: the run's settings (``ctx.run``: the long side
    chosen from the data in place of "auto") and every field of ``configs`` (the values chosen
    from the data, ``stage_config``, in place of None or "auto"), so that a run is rebuilt
    (``--eval-only``, ``stages.predict``) exactly as it was trained."""
    config = dataclasses.asdict(ctx.run)
    for c in configs:
        config.update(dataclasses.asdict(c))
    return config


def command_defaults(cls, **changes):
    """The config ``cls`` as its command builds it when no flag is given, with ``changes``: the
    fields of ``FROM_DATA`` at None, to be chosen from the data by ``stage_config`` (on the
    built-in synthetic set: the field's default; on the user's data: from the training boxes),
    the others at their defaults. ``command_defaults(MaskRCNNConfig, pool="roi")`` is what
    ``python -m stages.mask_rcnn --pool roi`` trains."""
    from_data = {f.name: None for f in dataclasses.fields(cls) if f.name in FROM_DATA}
    return cls(**{**from_data, **changes})


def validation_scorer(dataset, device="cpu"):
    """``evaluate_fn`` for ``engine.train``'s ``eval_every_s``: the model's box (and mask) AP on
    ``dataset``, by the same evaluator as the final result."""
    def score(model) -> dict:
        ev = evaluate(model, dataset, device, progress=False, analysis=False)
        return {"val_box_AP": ev["box"]["AP"],
                "val_mask_AP": ev["mask"]["AP"] if ev["mask"] is not None else None}
    return score


def train_with_recipe(model, cfg, dataset, *, out_dir, stage: str, config: dict | None = None,
                      epochs: int | None = None, time_budget_s: float | None = None,
                      max_steps: int | None = None, device="cpu", seed: int = 0,
                      resume: bool = False,
                      eval_every_s: float | None = None, val_dataset=None,
                      checkpoint_every_s: float | None = 60.0,
                      progress: bool = True) -> engine.TrainResult:
    """``engine.train`` with a stage config's recipe, as the commands and the notebooks train:
    ``build_optimizer``, a linear warm-up over ``cfg.warmup_steps``, the 10x drop after
    ``cfg.lr_drop`` of the training, gradients clipped to ``cfg.clip_grad_norm``, mini-batches of
    ``cfg.images_per_batch`` images. ``eval_every_s``: score ``val_dataset`` every that many
    seconds of training (``validation_scorer``)."""
    scorer = validation_scorer(val_dataset, device) if eval_every_s and val_dataset is not None else None
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    return engine.train(model, optimizer, dataset, out_dir=out_dir, stage=stage,
                        config=config or {}, epochs=epochs, time_budget_s=time_budget_s,
                        max_steps=max_steps, batch_size=cfg.images_per_batch, device=device,
                        seed=seed, resume=resume, warmup_steps=cfg.warmup_steps,
                        lr_drop=cfg.lr_drop, clip_grad_norm=cfg.clip_grad_norm,
                        eval_every_s=eval_every_s if scorer else None, evaluate_fn=scorer,
                        checkpoint_every_s=checkpoint_every_s, progress=progress)


@dataclass
class Trained:
    """How a run's training went, for its result record."""
    train_time_s: float  # seconds of training, across resumes
    steps: int | None  # optimizer steps in all (R-CNN: its CNN's mini-batches)
    stopped_by: str | None  # "epochs", "time_budget" or "steps": the rule that ended it


def budget(run: RunConfig, preset_epochs: int | None, preset_seconds: float | None):
    """(epochs, seconds, steps) that stop training: what the flags give, else the preset's rule
    (quick: ``preset_seconds`` of training; full: ``preset_epochs`` epochs). ``--steps N`` is a
    budget of its own: with it the preset's rule does not apply (``--epochs`` or ``--time-budget``
    given as well still stop training, whichever comes first)."""
    if run.steps is not None:
        return run.epochs, run.time_budget, run.steps
    epochs = run.epochs or (None if run.preset == "quick" else preset_epochs)
    seconds = run.time_budget or (preset_seconds if run.preset == "quick" else None)
    return epochs, seconds, None


def train_or_restore(model, ctx: Context, cfg, config: dict) -> Trained:
    """What a stage command does between building its model and ``finish``.

    ``--eval-only``: restore ``<out>/checkpoint.pt`` (a file of another stage, class count or model
    shape is refused with one clear line) and return the training time it records. Otherwise train
    with the stage's recipe (``train_with_recipe``: ``cfg.optimizer`` at ``cfg.lr``, a linear
    warm-up over ``cfg.warmup_steps``, the learning rate divided by 10 after ``cfg.lr_drop`` of
    the training, gradients clipped to ``cfg.clip_grad_norm``); for ``cfg.quick_time_budget`` seconds (quick preset)
    or ``cfg.full_epochs`` epochs (full), unless ``--epochs`` / ``--time-budget`` / ``--steps``
    say otherwise (``budget``); ``cfg.images_per_batch`` images per mini-batch (the global batch
    under ``torchrun``); ``--resume`` continues the checkpoint.
    """
    stage = ctx.stage
    if ctx.run.eval_only:
        try:
            state = load_checkpoint(ctx.out_dir / engine.CHECKPOINT, stage=stage,
                                    class_names=ctx.class_names, map_location=ctx.device)
            restore(state, model, restore_rng=False)
        except (CheckpointError, RuntimeError) as e:  # RuntimeError: weights of other shapes
            first = str(e).splitlines()[0]
            raise SystemExit(f"error: {first} (was it trained with other flags?)") from None
        return Trained(state["train_time_s"], state["step"],
                       (state.get("extra") or {}).get("stopped_by"))
    epochs, seconds, steps = budget(ctx.run, cfg.full_epochs, cfg.quick_time_budget)
    t0 = time.perf_counter()
    result = train_with_recipe(model, cfg, ctx.train, out_dir=ctx.out_dir, stage=stage,
                               config=config, epochs=epochs, time_budget_s=seconds,
                               max_steps=steps, device=ctx.device,
                               seed=ctx.run.seed, resume=ctx.run.resume,
                               eval_every_s=ctx.run.eval_every, val_dataset=ctx.val,
                               checkpoint_every_s=ctx.run.checkpoint_every,
                               progress=ctx.run.progress)
    last = result.history[-1] if result.history else {}
    print(f"[{stage}] trained {result.steps} steps ({result.epochs} epochs, stopped by "
          f"{result.stopped_by}) in {result.train_time_s:.0f} s (wall {time.perf_counter() - t0:.0f} s); "
          f"last loss {last.get('loss', math.nan):.3f}")
    return Trained(result.train_time_s, result.steps, result.stopped_by)


def read_history(out_dir) -> list[dict]:
    """The step records of ``<out_dir>/losses.json`` ([] when there is none or it is unreadable)."""
    try:
        history = json.loads((Path(out_dir) / engine.LOSSES).read_text())
    except (OSError, ValueError):
        return []
    return history if isinstance(history, list) else []


def save_predictions(model, dataset, path, device, n: int = 8, score_threshold: float = 0.5):
    """A grid of the model's detections (and masks) on the first ``n`` images of ``dataset``."""
    n = min(n, len(dataset))
    fig, axes = figure_grid(n, cols=4)
    model.eval()
    with torch.no_grad():
        for i, ax in enumerate(axes):
            image, _ = dataset[i]
            out = model([image.to(device)])[0]
            draw_detections(ax, image, out["boxes"], out["labels"], out["scores"], out.get("masks"),
                            dataset.class_names, score_threshold=score_threshold,
                            title=f"image {i}: {(out['scores'] >= score_threshold).sum()} detections")
    fig.tight_layout()
    return save_figure(fig, path)


def finish(model, ctx: Context, *, variant: str, trained: Trained,
           max_images: int | None = None) -> Result | None:
    """Evaluate on the validation set, save ``metrics.json`` and ``predictions.png``, print the row.
    Under ``torchrun`` rank 0 does this alone (the others hold the same weights) and the others
    return None."""
    if not distributed.is_main():
        return None
    train_time_s = trained.train_time_s
    ev = evaluate(model, ctx.val, ctx.device, max_images=max_images, progress=ctx.run.progress)
    device = str(ctx.device) + (f" x {distributed.world_size()} processes"
                                if distributed.world_size() > 1 else "")
    result = Result.from_evaluation(ev, stage=ctx.stage, variant=variant, data=ctx.run.data,
                                    train_time_s=train_time_s, params=count_parameters(model),
                                    n_train=len(ctx.train), device=device, seed=ctx.run.seed,
                                    steps=trained.steps, stopped_by=trained.stopped_by)
    result.save(ctx.out_dir / METRICS)
    files.write_json(ctx.out_dir / DETECTIONS, ev["detections"], indent=None)
    files.write_json(ctx.out_dir / GROUND_TRUTH, ev["ground_truth"], indent=None)
    save_predictions(model, ctx.val, ctx.out_dir / PREDICTIONS, ctx.device)
    wrote = [ctx.out_dir / name for name in (METRICS, DETECTIONS, GROUND_TRUTH, PREDICTIONS)]
    history = read_history(ctx.out_dir)
    if history:  # the losses, and validation AP against time ending in this evaluation
        final = (train_time_s, result.box["AP"], result.mask["AP"] if result.mask else None)
        wrote.append(loss_figure.save_loss_figure(history, ctx.out_dir / engine.LOSSES_FIGURE,
                                             title=f"{ctx.stage}: {history[-1]['step']} steps, "
                                                   f"{train_time_s:.0f} s of training", final=final))
    print(format_table([result]))
    for line in analysis_lines(result, ctx.out_dir):
        print(f"[{ctx.stage}] {line}")
    print(f"[{ctx.stage}] wrote {', '.join(map(str, wrote))}")
    return result


def analysis_lines(result: Result, out_dir) -> list[str]:
    """Each class's AP, and what each error type costs (TIDE's dAP at IoU 0.5), one line each
    for boxes (and masks)."""
    lines = []
    for kind, per_class in result.per_class.items():
        parts = ", ".join(f"{name} {v['AP']:.1f} ({v['AP50']:.1f})" if v["AP"] != -1 else
                          f"{name} n/a (no object)" for name, v in per_class.items())
        lines.append(f"{kind} AP (AP50) per class: {parts}")
    for kind, b in result.errors.items():
        if kind.endswith("_t75"):  # in metrics.json and the comparison; one line here is enough
            continue
        parts = ", ".join(f"{t} {v:.1f}" for t, v in b["dAP"].items())
        lines.append(f"{kind} AP50 {b['ap50']:.1f}; what fixing each error type would add "
                     f"(TIDE dAP): {parts} (python -m stages.errors {out_dir}: the table)")
    return lines
