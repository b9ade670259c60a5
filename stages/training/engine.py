"""The training loop every stage uses, R-CNN's CNN included: short, visible, no callbacks.

    until the Budget runs out (``epochs``, ``max_steps`` or ``time_budget_s`` of training):
        for each mini-batch of images and targets (epoch_loader: shuffled by the epoch's seed):
            set the learning rate: lr * lr_factor(step, done)  # warm-up; / 10 after ``lr_drop``
            losses = model(images, targets)        # a dict of named losses (train mode)
            loss = sum(losses.values())            # e.g. L = L_cls + lambda [u >= 1] L_loc
            stop with a clear error if loss is NaN or inf (the last good checkpoint stays)
            optimizer.zero_grad(); loss.backward(); clip the gradients' norm; optimizer.step()
            every ``eval_every_s`` seconds of training: Validation scores the model (clock paused)
            on Ctrl-C or SIGTERM: save checkpoint.pt and stop; every ``checkpoint_every_s``: save
        at the epoch's end: save checkpoint.pt and losses.json into the output folder (atomically)
    draw losses.png: each loss term against the step, validation AP against training seconds

The named helpers below hold the rest: ``Budget`` (the stop rule, and how much of the training is
done), ``lr_factor`` and ``build_optimizer`` (``stages.training.optimizer``: one schedule and one
optimizer for every stage), ``Validation``, ``Checkpoints`` (``checkpoint.pt``, ``losses.json``,
resume), and in ``stages.training.batches`` ``epoch_loader`` (each process's share of every
mini-batch, each image with its own random generator).

``resume=True`` continues from ``out_dir/checkpoint.pt``: weights, optimizer, epoch, the mini-batch
reached within it, RNG and the training time already spent (a time budget, and a budget in steps,
count across resumes). A run resumed from the middle of an epoch reads the rest of that epoch's
mini-batches, in the same order: it takes the steps the uninterrupted run would have taken.

Interrupting (``interrupt_requests``): Ctrl-C or SIGTERM lets the step in progress finish, writes
the checkpoint, and raises ``TrainingInterrupted``, whose one-line message says where the checkpoint
is and that ``--resume`` continues. A second Ctrl-C stops at once (Python's own KeyboardInterrupt).

Started by ``torchrun --nproc_per_node=N`` the same loop trains on N processes with
DistributedDataParallel (``stages.training.distributed`` says how): ``batch_size`` is the global
mini-batch, each process reads its share, rank 0 writes and evaluates.

R-CNN, whose paper trains its parts in separate steps (CNN, then SVMs, then box regressors), trains
its CNN with this loop (``stages.rcnn.cnn``: pre-training on crops, then fine-tuning, each one
call) and fits the SVMs and regressors with its own functions. Its mini-batches are not shuffled
images but regions it samples itself (32 positives and 96 background, R-CNN sec. 2.3): a dataset
whose items are whole mini-batches (``batch_size=None``), read in order.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from stages.training import distributed
from stages import files
from stages.training.checkpoint import load_checkpoint, restore, save_checkpoint
from stages.data.sources import DatasetError
from stages.training.batches import epoch_loader, to_device
from stages.devices import synchronize
from stages.training.optimizer import lr_factor

CHECKPOINT = "checkpoint.pt"
LOSSES = "losses.json"
LOSSES_FIGURE = "losses.png"
VAL_KEYS = ("val_box_AP", "val_mask_AP")  # what a step record holds when validation ran after it


class NonFiniteLossError(RuntimeError):
    """Training produced NaN or inf; the message says where, and which checkpoint is kept."""


class TrainingSetupError(ValueError):
    """Training cannot start as asked (no images; a batch that does not split among processes)."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C or SIGTERM stopped training; the checkpoint was written at the step reached.
    ``signal_number``: which signal (the command exits with 128 + it, as a shell expects)."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.signal_number = signal_number


@contextlib.contextmanager
def interrupt_requests():
    """While the block runs, Ctrl-C (SIGINT) and SIGTERM do not stop the program mid-step: they
    are recorded in the yielded list (its one element, the signal number, 0 while none came),
    for the loop to finish its step, save, and stop. The first signal puts Python's handlers
    back, so a second Ctrl-C interrupts at once. Signals can only be caught in the main thread;
    elsewhere the block runs with the handlers as they are."""
    requested = [0]
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        requested[0] = signum
        for sig, h in previous.items():  # a second Ctrl-C: stop now
            signal.signal(sig, h)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield requested
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


@dataclass
class TrainResult:
    epochs: int  # epochs completed (a budget can stop one part-way)
    steps: int  # optimizer steps taken in total
    train_time_s: float  # seconds spent training, across resumes
    history: list[dict] = field(default_factory=list)  # one dict of losses per step
    stopped_by: str = "epochs"  # "epochs", "time_budget" or "steps"


def train(model, optimizer, dataset, *, out_dir, stage: str, config: dict,
          epochs: int | None = 1, time_budget_s: float | None = None,
          max_steps: int | None = None, batch_size: int | None = 2,
          device: torch.device | str = "cpu", seed: int = 0, resume: bool = False,
          warmup_steps: int = 0, lr_drop: float | None = None, clip_grad_norm: float | None = None,
          eval_every_s: float | None = None, evaluate_fn=None,
          checkpoint_every_s: float | None = 60.0, progress: bool = True) -> TrainResult:
    """Train ``model`` on ``dataset`` with ``optimizer``: the module docstring's loop.

    Stops by ``Budget(epochs, max_steps, time_budget_s)``, None disabling each; the learning rate
    is ``lr_factor(step, done, warmup_steps, lr_drop)`` times the initial one; ``clip_grad_norm``:
    the gradients' norm is scaled down to it (None or 0: off); ``Validation(eval_every_s,
    evaluate_fn)``; ``Checkpoints`` in ``out_dir`` (None: no files) every ``checkpoint_every_s``
    seconds (None or 0: at epoch ends only), where ``resume`` continues; ``batch_size`` images per
    mini-batch, the global one under torchrun (``epoch_loader``; None: R-CNN's own mini-batches),
    shuffled by ``seed``. ``stage`` names the run in messages and checkpoints, which keep ``config``.
    """
    budget = Budget(epochs, max_steps, time_budget_s)
    check_setup(budget, dataset, batch_size, eval_every_s, evaluate_fn, stage)
    checkpoints = Checkpoints(out_dir, stage, dataset, config, model, optimizer, checkpoint_every_s)
    model.to(device)
    at = checkpoints.resume(device) if resume else Position()
    # the lr each factor scales; kept in the optimizer state, so a resumed run scales the same
    initial_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
    show = progress and distributed.is_main()  # one progress bar: rank 0's
    validation = Validation(eval_every_s, evaluate_fn, at.spent, stage, quiet=show)
    net = distributed.wrap(model, torch.device(device))  # DDP on several processes, else model
    model.train()
    with interrupt_requests() as signalled:
        while not budget.stopped_by(at):
            loader = epoch_loader(dataset, batch_size, seed, at.epoch, skip=at.batch)
            n = at.batch + len(loader)  # the epoch's mini-batches, those done before included
            bar = tqdm(desc=f"[{stage}] epoch {at.epoch + 1}", total=n, initial=at.batch,
                       disable=not show, leave=False)
            for images, targets in read_batches(loader, at, checkpoints):
                t0 = time.perf_counter()
                images, targets = to_device(images, targets, device)
                factor = lr_factor(at.step, budget.done(at, n), warmup_steps, lr_drop)
                set_lr(optimizer, initial_lrs, factor)
                losses = net(images, targets)  # {"loss_cls": ..., "loss_box": ...}
                values = agreed_losses(losses, at, checkpoints)  # NaN or inf: stop, say where
                optimizer.zero_grad(set_to_none=True)
                sum(losses.values()).backward()
                clip_gradients(optimizer, clip_grad_norm)
                optimizer.step()
                synchronize(device)
                # the clock every process agrees on: the slowest one's (a budget stops all at
                # once), and whether any process was sent Ctrl-C or SIGTERM (then all stop)
                seconds, signum = distributed.agree([time.perf_counter() - t0, signalled[0]])
                record = at.advance(seconds, optimizer.param_groups[0]["lr"], values)
                if validation.due(at) and not budget.stopped_by(at):  # the last: the caller's
                    validation.run(model, record, at)
                bar.update()
                bar.set_postfix(loss=f"{record['loss']:.3f}", **validation.shown())
                if signum:  # Ctrl-C or SIGTERM: the step is done; save it, then stop
                    bar.close()
                    raise checkpoints.save_interrupted(at, n, budget, signum)
                if budget.cut_short(at):
                    break
                checkpoints.save_if_due(at, n, budget)  # every checkpoint_every_s, mid-epoch
            bar.close()
            at.end_epoch()  # a part-epoch cut by the budget counts as done: a resumed run starts the next
            checkpoints.save(at, budget.stopped_by(at))
    checkpoints.draw_losses(at)
    return TrainResult(epochs=at.epoch, steps=at.step, train_time_s=at.spent, history=at.history,
                       stopped_by=budget.stopped_by(at) or "epochs")


# ------------------------------------------------------------------------------------------------
# The loop's named helpers, in the order the loop meets them
# ------------------------------------------------------------------------------------------------

@dataclass
class Budget:
    """When training stops: after ``epochs`` epochs, ``max_steps`` optimizer steps in all, or
    ``time_budget_s`` seconds of training (across resumes), whichever comes first; None disables
    each. Seconds compare runs on one machine; steps compare machines (a GPU takes more steps in
    a second). Every process holds the same ``Position`` (the clock it agrees on), so all stop at
    the same step."""

    epochs: int | None = 1
    max_steps: int | None = None
    time_budget_s: float | None = None

    def stopped_by(self, at: Position) -> str | None:
        """Which rule has ended training at ``at``, if one has: "steps", "time_budget", "epochs"."""
        if self.max_steps is not None and at.step >= self.max_steps:
            return "steps"
        if self.out_of_time(at):
            return "time_budget"
        return "epochs" if self.epochs is not None and at.epoch >= self.epochs else None

    def out_of_time(self, at: Position) -> bool:
        return self.time_budget_s is not None and at.spent >= self.time_budget_s

    def cut_short(self, at: Position) -> bool:
        """The steps or the seconds have run out: the epoch ends here."""
        return self.out_of_time(at) or (self.max_steps is not None and at.step >= self.max_steps)

    def done(self, at: Position, n_batches: int) -> float:
        """The fraction of the training done before the next step, 0..1: of the seconds, the steps
        or the epochs (``n_batches`` mini-batches in this one), whichever is furthest along; what
        ``lr_factor`` drops the learning rate by (``lr_drop``)."""
        return max(at.spent / self.time_budget_s if self.time_budget_s else 0.0,
                   at.step / self.max_steps if self.max_steps else 0.0,
                   (at.epoch + at.batch / n_batches) / self.epochs if self.epochs else 0.0)


@dataclass
class Position:
    """Where training is: what a checkpoint records, and where a resumed run goes on."""

    epoch: int = 0  # epochs completed (a budget can stop one part-way: it counts as done)
    batch: int = 0  # mini-batches done in epoch ``epoch + 1`` (a checkpoint written mid-epoch)
    step: int = 0  # optimizer steps taken in all
    spent: float = 0.0  # seconds of training, across resumes
    history: list[dict] = field(default_factory=list)  # one record per step (losses.json)

    def advance(self, seconds: float, lr: float, losses: dict[str, float]) -> dict:
        """One more step, which took ``seconds``: its record in ``history`` (returned)."""
        self.step, self.batch, self.spent = self.step + 1, self.batch + 1, self.spent + seconds
        record = {"epoch": self.epoch + 1, "step": self.step, "time_s": round(self.spent, 3),
                  "lr": lr, "loss": sum(losses.values()), **losses}
        self.history.append(record)
        return record

    def end_epoch(self) -> None:
        self.epoch, self.batch = self.epoch + 1, 0


def check_setup(budget: Budget, dataset, batch_size: int | None, eval_every_s, evaluate_fn,
                stage: str) -> None:
    """Refuse, before any work, what cannot train: no stopping rule, a batch that does not split
    among the processes, validation without a scorer, no training images."""
    if budget.epochs is None and budget.time_budget_s is None and budget.max_steps is None:
        raise ValueError("give epochs, time_budget_s or max_steps: training needs a stopping rule")
    world = distributed.world_size()
    if batch_size is not None and batch_size % world:
        raise TrainingSetupError(f"--images-per-batch {batch_size} does not split among {world} "
                                 f"processes: give a multiple of {world} (it is the global batch)")
    if eval_every_s and evaluate_fn is None:
        raise ValueError("eval_every_s needs evaluate_fn, the function that scores the model")
    if len(dataset) == 0:
        raise TrainingSetupError(f"[{stage}] no training images: nothing to train on")


class Checkpoints:
    """``checkpoint.pt`` and ``losses.json`` in ``out_dir``, written by one process (the others
    hold the same weights), atomically; ``resume`` reads them back. ``out_dir=None``: training
    keeps no files (R-CNN's CNN: its command saves the CNN once fine-tuned)."""

    def __init__(self, out_dir, stage: str, dataset, config: dict, model, optimizer,
                 every_s: float | None = None):
        self.path = None if out_dir is None else Path(out_dir) / CHECKPOINT
        self.stage, self.dataset, self.config = stage, dataset, config
        self.model, self.optimizer, self.every_s = model, optimizer, every_s
        self.last_s = time.perf_counter()  # when the last one was written (wall clock)

    def resume(self, device) -> Position:
        """The position of ``checkpoint.pt``, its weights, optimizer and RNG restored (none yet:
        the start)."""
        if self.path is None or not self.path.exists():
            return Position()
        state = load_checkpoint(self.path, stage=self.stage, class_names=self.dataset.class_names,
                                map_location=device)
        restore(state, self.model, self.optimizer)
        at = Position(state["epoch"], int((state.get("extra") or {}).get("batch_in_epoch", 0)),
                      state["step"], state["train_time_s"], state["history"])
        within = f" (mini-batch {at.batch} of it done)" if at.batch else ""
        print(f"[{self.stage}] resumed from {self.path}: epoch {at.epoch}{within}, step {at.step}, "
              f"{at.spent:.0f} s trained")
        return at

    def save(self, at: Position, stopped_by: str | None) -> None:
        """checkpoint.pt and losses.json at ``at`` (``at.batch``: how far into epoch
        ``at.epoch + 1``; 0: at its start)."""
        self.last_s = time.perf_counter()
        if self.path is None or not distributed.is_main():  # one writer
            return
        save_checkpoint(self.path, stage=self.stage, class_names=self.dataset.class_names,
                        config=self.config, model=self.model, optimizer=self.optimizer,
                        epoch=at.epoch, step=at.step, train_time_s=at.spent, history=at.history,
                        extra={"stopped_by": stopped_by, "batch_in_epoch": at.batch})
        files.write_json(self.path.parent / LOSSES, at.history, indent=None)

    def save_if_due(self, at: Position, n_batches: int, budget: Budget) -> None:
        """Save mid-epoch once ``every_s`` seconds (wall clock) have passed since the last save
        (None or 0: at epoch ends only): a kill then loses at most that much. The epoch's last
        mini-batch is left to the epoch's end, which saves anyway."""
        if (self.every_s and at.batch < n_batches
                and time.perf_counter() - self.last_s >= self.every_s):
            self.save(at, budget.stopped_by(at))

    def kept(self) -> str:
        return (f"the last good checkpoint {self.path} is kept"
                if self.path is not None and self.path.exists()
                else "no checkpoint had been written yet")

    def save_interrupted(self, at: Position, n_batches: int, budget: Budget,
                         signum: int) -> TrainingInterrupted:
        """Save the step reached after Ctrl-C or SIGTERM; the error that says where it is."""
        if at.batch == n_batches:  # the epoch's last mini-batch: the epoch is done
            at.end_epoch()
        self.save(at, budget.stopped_by(at))
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(int(signum)).name
        where = (f"{self.path} holds it; the same command with --resume continues"
                 if self.path is not None else "this training writes no checkpoint")
        return TrainingInterrupted(f"[{self.stage}] interrupted ({name}) at step {at.step}, "
                                   f"{at.spent:.0f} s of training: {where}", int(signum))

    def draw_losses(self, at: Position) -> None:
        """losses.png beside the checkpoint (rank 0, once something was trained)."""
        if self.path is not None and at.history and distributed.is_main():
            from stages.training.loss_figure import save_loss_figure  # matplotlib: only here

            save_loss_figure(at.history, self.path.parent / LOSSES_FIGURE,
                             title=f"{self.stage}: {at.step} steps, {at.spent:.0f} s of training")


class Validation:
    """``evaluate_fn(model) -> {"val_box_AP": ..., "val_mask_AP": ...}`` each time another
    ``every_s`` seconds of training have passed: the model is scored in eval mode (rank 0; the
    others wait) and the values join that step's record in ``losses.json`` (and the progress
    line). The clock is paused meanwhile: evaluation does not eat the time budget, it adds wall
    time. ``quiet``: the progress bar shows the scores, else a line is printed."""

    def __init__(self, every_s: float | None, evaluate_fn, spent: float, stage: str, quiet: bool):
        self.every_s, self.evaluate_fn, self.stage, self.quiet = every_s, evaluate_fn, stage, quiet
        self.next_s = next_evaluation(spent, every_s)
        self.scores = {}  # the latest, shown in the progress line

    def due(self, at: Position) -> bool:
        return at.spent >= self.next_s

    def run(self, model, record: dict, at: Position) -> None:
        scores = {}
        if distributed.is_main():
            model.eval()
            with torch.no_grad():
                scores = self.evaluate_fn(model)  # the model itself, not its DDP wrapper
            model.train()
        distributed.barrier()
        self.scores = {k: round(float(v), 2) for k, v in scores.items() if v is not None}
        record.update(self.scores)
        if not self.quiet:
            text = ", ".join(f"{k} {v:.1f}" for k, v in self.scores.items())
            print(f"[{self.stage}] step {at.step}, {at.spent:.0f} s of training: {text}", flush=True)
        self.next_s = next_evaluation(at.spent, self.every_s)

    def shown(self) -> dict[str, str]:
        """The latest scores for the progress line: {"box_AP": "41.2", ...}."""
        return {k.removeprefix("val_"): f"{v:.1f}" for k, v in self.scores.items()}


def next_evaluation(spent: float, every_s: float | None) -> float:
    """The next multiple of ``every_s`` past ``spent`` seconds (inf: no validation)."""
    if not every_s:
        return math.inf
    k = math.floor(spent / every_s) + 1
    while k * every_s <= spent:  # floating point: 0.2 / 0.05 can floor to 3
        k += 1
    return k * every_s


def clip_gradients(optimizer, max_norm: float | None) -> None:
    """Scale the gradients of all parameters down together when their norm exceeds ``max_norm``
    (None or 0: off; detectron2's ``CLIP_GRADIENTS``): one bad batch then moves the weights a
    bounded step, instead of blowing them up (a loss of 1e29, then NaN)."""
    if max_norm:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                       max_norm)


def set_lr(optimizer, initial_lrs: list[float], factor: float) -> None:
    """Every parameter group's learning rate: its initial one times ``factor`` (``lr_factor``)."""
    for g, lr in zip(optimizer.param_groups, initial_lrs):
        g["lr"] = lr * factor


def agreed_losses(losses: dict, at: Position, checkpoints: Checkpoints) -> dict[str, float]:
    """The losses of the global batch as numbers, the same on every process (the mean over the
    processes; one process: its own). A NaN or inf sum stops training on every process with a
    ``NonFiniteLossError`` that says where, and which checkpoint is kept."""
    values = dict(zip(losses, distributed.agree([v.item() for v in losses.values()], "mean")))
    total = sum(values.values())
    if not math.isfinite(total):
        detail = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
        raise NonFiniteLossError(
            f"[{checkpoints.stage}] the loss became {total} at epoch {at.epoch + 1}, step "
            f"{at.step + 1} ({detail}); {checkpoints.kept()}. Try a lower learning rate (or "
            f"--resume from the checkpoint).")
    return values


def read_batches(loader, at: Position, checkpoints: Checkpoints):
    """``loader``'s mini-batches. The images are read here, and one may have gone missing since
    the run started: that ends training with a message that says where, and what is kept."""
    batches = iter(loader)
    while True:
        try:
            images, targets = next(batches)
        except StopIteration:
            return
        except DatasetError as e:
            raise DatasetError(f"{e} (found at epoch {at.epoch + 1}, step {at.step + 1}; "
                               f"{checkpoints.kept()})") from None
        yield images, targets
