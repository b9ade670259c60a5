"""What every stage command does around its model: flags, data, output folder, result record.

A stage's ``main()`` reads top to bottom with these helpers (no framework, no callbacks)::

    parser = run.build_parser(__doc__, StageConfig)            # shared flags + the stage's own
    args = parser.parse_args(argv)
    ctx = run.prepare(args, stage="fast_rcnn")                 # seed, device, data, output folder
    model = build_model(cfg, ctx.num_classes)
    trained = run.train_or_restore(model, ctx, cfg, config)    # train, or --eval-only
    run.finish(model, ctx, variant="pool=roi", trained=trained)  # evaluate, save, print a row

``finish`` writes ``metrics.json`` (the result record ``compare`` and the notebooks read) and
``predictions.png`` into the output folder and prints the table row.

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
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from stages.training import distributed, engine
from stages.backbone import BackboneError
from stages.training.checkpoint import CheckpointError, load_checkpoint, restore
from stages.training.cli import RunConfig, add_dataclass_args, command_parser, dataclass_from_args
from stages.data.sources import DatasetError, load_dataset
from stages.training.device import choose_device, count_parameters, seed_everything
from stages.figures.draw import draw_detections, figure_grid
from stages.evaluation import Result, evaluate, format_table
from stages.training.io import save_figure
from stages.data.transforms import train_transforms, val_transforms

METRICS = "metrics.json"
PREDICTIONS = "predictions.png"


# what a user's input or a diverging run raises: each message names the file or the step
USER_ERRORS = (DatasetError, BackboneError, CheckpointError, engine.NonFiniteLossError,
               engine.TrainingSetupError)


def one_line_errors(main):
    """Wrap a command's ``main``: an error about the user's data, weights or checkpoint, or a loss
    that became NaN, ends the command with its one-line message (and exit status 1), not a
    traceback from deep inside the loop. An image found missing mid-epoch is such an error, and
    the last checkpoint stays on disk (``engine.train`` saves after every epoch). Under
    ``torchrun`` the process leaves the process group at the end, however it ends."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as e:
            raise SystemExit(f"error: {e}") from None
        finally:
            distributed.cleanup()  # under torchrun: leave the process group (else a no-op)
    return wrapper


def build_parser(description: str | None, *config_classes, prog: str,
                 skip: tuple = ()) -> argparse.ArgumentParser:
    """The command ``prog`` ("python -m stages.fast_rcnn"): its docstring as the description, the
    shared flags (``RunConfig``), then one flag per field of each stage config class, but not the
    fields in ``skip`` (inherited ones the stage does not read)."""
    parser = command_parser(prog, description)
    add_dataclass_args(parser, RunConfig, "run (every stage)", skip=skip)
    for cls in config_classes:
        add_dataclass_args(parser, cls, cls.__name__, skip=skip)
    return parser


@dataclass
class Context:
    run: RunConfig
    stage: str
    device: torch.device
    out_dir: Path
    train: object  # the training dataset (with flips)
    val: object  # the validation dataset

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names


def prepare(args: argparse.Namespace | RunConfig, stage: str) -> Context:
    """Seed, choose the device, load the data, make the output folder (``runs/<stage>``).

    Under ``torchrun``: join the other processes first (``distributed.setup``: this process's
    GPU, or the CPU); rank 0 generates or reads the data first and alone makes the folder."""
    run = args if isinstance(args, RunConfig) else dataclass_from_args(RunConfig, args)
    if run.preset not in ("quick", "full"):
        raise SystemExit(f"--preset {run.preset!r}: expected 'quick' or 'full'")
    if run.steps is not None and run.steps < 1:
        raise SystemExit(f"error: --steps {run.steps}: give at least 1 optimizer step")
    seed_everything(run.seed)
    try:
        device = distributed.setup(choose_device(run.device))
    except (ValueError, RuntimeError) as e:  # no GPU for --device cuda; a failed rendezvous
        raise SystemExit(f"error: {str(e).splitlines()[0]}") from None
    if not distributed.is_main():
        run = dataclasses.replace(run, progress=False)  # one progress bar: rank 0's
    try:
        with distributed.main_first():  # rank 0 generates the synthetic set; the others read it
            train, val = load_dataset(run.data, run.data_root, train_transforms(run.long_side),
                                      val_transforms(run.long_side), val_spec=run.val_data)
    except DatasetError as e:  # the user's data: one clear line, no traceback
        raise SystemExit(f"error: {e}") from None
    out_dir = Path(run.out or Path("runs") / stage)
    if distributed.is_main():
        out_dir.mkdir(parents=True, exist_ok=True)
    data = run.data + (f" (val {run.val_data})" if run.val_data else "")
    print(f"[{stage}] data {data}: {len(train)} train / {len(val)} val images, "
          f"classes {train.class_names[1:]}; device {device}; output {out_dir}")
    return Context(run, stage, device, out_dir, train, val)


OPTIMIZERS = ("sgd", "adamw")


def build_optimizer(model, cfg) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over the parameters that train (a frozen backbone part has none):
    "sgd" (the papers': momentum ``cfg.momentum``, weight decay ``cfg.weight_decay``) or "adamw"
    (AdamW, the same decay), at ``cfg.lr``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise SystemExit(f"error: --optimizer {cfg.optimizer!r}: expected one of {', '.join(OPTIMIZERS)}")


def validation_scorer(dataset, device="cpu"):
    """``evaluate_fn`` for ``engine.train``'s ``eval_every_s``: the model's box (and mask) AP on
    ``dataset``, by the same evaluator as the final result."""
    def score(model) -> dict:
        ev = evaluate(model, dataset, device, progress=False)
        return {"val_box_AP": ev["box"]["AP"],
                "val_mask_AP": ev["mask"]["AP"] if ev["mask"] is not None else None}
    return score


def train_with_recipe(model, cfg, dataset, *, out_dir, stage: str, config: dict | None = None,
                      epochs: int | None = None, time_budget_s: float | None = None,
                      max_steps: int | None = None, device="cpu", seed: int = 0,
                      resume: bool = False,
                      eval_every_s: float | None = None, val_dataset=None,
                      progress: bool = True) -> engine.TrainResult:
    """``engine.train`` with a stage config's recipe, as the commands and the notebooks train:
    ``build_optimizer``, a linear warm-up over ``cfg.warmup_steps``, the 10x drop after
    ``cfg.lr_drop`` of the training, gradients clipped to ``cfg.clip_grad_norm``, mini-batches of
    ``cfg.images_per_batch`` images. ``eval_every_s``: score ``val_dataset`` every that many
    seconds of training (``validation_scorer``)."""
    scorer = validation_scorer(val_dataset, device) if eval_every_s and val_dataset is not None else None
    warmup = lambda step: min(1.0, (step + 1) / cfg.warmup_steps)  # noqa: E731 (linear warm-up)
    return engine.train(model, build_optimizer(model, cfg), dataset, out_dir=out_dir, stage=stage,
                        config=config or {}, epochs=epochs, time_budget_s=time_budget_s,
                        max_steps=max_steps, batch_size=cfg.images_per_batch, device=device,
                        seed=seed, resume=resume,
                        lr_schedule=warmup, lr_drop=cfg.lr_drop, clip_grad_norm=cfg.clip_grad_norm,
                        eval_every_s=eval_every_s if scorer else None, evaluate_fn=scorer,
                        progress=progress)


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
    save_predictions(model, ctx.val, ctx.out_dir / PREDICTIONS, ctx.device)
    wrote = [ctx.out_dir / METRICS, ctx.out_dir / PREDICTIONS]
    history = read_history(ctx.out_dir)
    if history:  # the losses, and validation AP against time ending in this evaluation
        final = (train_time_s, result.box["AP"], result.mask["AP"] if result.mask else None)
        wrote.append(engine.save_loss_figure(history, ctx.out_dir / engine.LOSSES_FIGURE,
                                             title=f"{ctx.stage}: {history[-1]['step']} steps, "
                                                   f"{train_time_s:.0f} s of training", final=final))
    print(format_table([result]))
    print(f"[{ctx.stage}] wrote {', '.join(map(str, wrote))}")
    return result
