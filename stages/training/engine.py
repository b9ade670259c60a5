"""The training loop every end-to-end stage uses: short, visible, no callbacks.

    for each epoch (until ``epochs``, ``max_steps`` or the wall-clock ``time_budget_s`` runs out):
        for each mini-batch of images and targets (each image with its own random generator):
            losses = model(images, targets)        # a dict of named losses (train mode)
            loss = sum(losses.values())            # e.g. L = L_cls + lambda [u >= 1] L_loc
            stop with a clear error if loss is NaN or inf (the last good checkpoint stays)
            optimizer.zero_grad(); loss.backward(); clip the gradients' norm; optimizer.step()
            every ``eval_every_s`` seconds of training: score the validation set (clock paused)
            every ``checkpoint_every_s`` seconds, and on Ctrl-C or SIGTERM: write checkpoint.pt
        write checkpoint.pt and losses.json into the output folder (atomically)
    draw losses.png: each loss term against the step, validation AP against training seconds

``resume=True`` continues from ``out_dir/checkpoint.pt``: weights, optimizer, epoch, the mini-batch
reached within it, RNG and the training time already spent (a time budget, and a budget in steps,
count across resumes). A run resumed from the middle of an epoch reads the rest of that epoch's
mini-batches, in the same order: it takes the steps the uninterrupted run would have taken.

Interrupting (``interrupt_requests``): Ctrl-C or SIGTERM lets the step in progress finish, writes
the checkpoint, and raises ``TrainingInterrupted``, whose one-line message says where the checkpoint
is and that ``--resume`` continues. A second Ctrl-C stops at once (Python's own KeyboardInterrupt).

Started by ``torchrun --nproc_per_node=N`` the same loop trains on N processes with
DistributedDataParallel (``stages.training.distributed`` says how): ``batch_size`` is the global
mini-batch, each process reads its share, rank 0 writes and evaluates. R-CNN, whose paper trains
its parts in separate steps (CNN, then SVMs, then box regressors), uses its own functions for the
later steps, and this loop for the CNN.
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

from stages.training import distributed, io
from stages.training.checkpoint import load_checkpoint, restore, save_checkpoint
from stages.data.sources import DatasetError, collate
from stages.training.device import synchronize

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


def to_device(images, targets, device):
    """Move a batch (lists of images and target dicts) to ``device``."""
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in t.items()}
               for t in targets]
    return images, targets


GENERATOR = "generator"  # the target key of an image's own random generator (training only)


class SeededItems(torch.utils.data.Dataset):
    """``dataset`` whose item i draws every random number from a generator of its own, seeded by
    (``seed``, i): its flip (the transforms draw from torch's global generator, forked here and
    restored after), and, through ``target["generator"]``, its anchor and RoI samples. What an
    image draws therefore does not depend on which images share its mini-batch, nor on which
    process reads it: one process and N processes take the same first step."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        seed = (self.seed * 1_000_003 + i) % 2**61
        with torch.random.fork_rng(devices=[]):  # the CPU generator, restored on leaving
            torch.default_generator.manual_seed(2 * seed)  # the flip (2s and 2s + 1: two streams)
            image, target = self.dataset[i]
        return image, {**target, GENERATOR: torch.Generator().manual_seed(2 * seed + 1)}


def make_loader(dataset, batch_size: int, shuffle: bool, seed: int, skip: int = 0):
    """A main-process loader (``num_workers=0``) whose shuffling depends only on ``seed``: the
    order is ``torch.randperm(len(dataset))`` drawn from a generator seeded with ``seed``.

    Under ``torchrun`` (N processes), with ``shuffle``, this process's share: the same order,
    every N-th image of it (``distributed.sampler``), ``batch_size / N`` images per mini-batch.
    The N shares of a step are then together the mini-batch of one process. (Training always
    shuffles; without ``shuffle`` every process reads every image.) ``skip``: leave out the first
    ``skip`` mini-batches of that order (a run resumed in the middle of an epoch)."""
    per_process = batch_size // distributed.world_size()
    sampler = distributed.sampler(dataset, seed) if shuffle else None
    if skip:
        order = list(sampler) if sampler is not None else list(range(len(dataset)))
        sampler = order[skip * per_process:]  # a list of indices is a sampler too
    return torch.utils.data.DataLoader(dataset, batch_size=per_process,
                                       sampler=sampler, collate_fn=collate, num_workers=0)


def train(model, optimizer, dataset, *, out_dir, stage: str, config: dict,
          epochs: int | None = 1, time_budget_s: float | None = None,
          max_steps: int | None = None, batch_size: int = 2,
          device: torch.device | str = "cpu", seed: int = 0, resume: bool = False,
          lr_schedule=None, lr_drop: float | None = None, clip_grad_norm: float | None = None,
          eval_every_s: float | None = None, evaluate_fn=None,
          checkpoint_every_s: float | None = 60.0, progress: bool = True) -> TrainResult:
    """Train ``model`` on ``dataset``; write ``checkpoint.pt`` and ``losses.json`` into ``out_dir``.

    Stops after ``epochs`` epochs, once ``time_budget_s`` seconds of training have passed, or
    after ``max_steps`` optimizer steps in all, whichever comes first (``None`` disables each).
    Seconds compare runs on one machine; steps compare machines (a GPU takes more steps in a
    second). ``lr_schedule(step) -> factor`` scales every parameter group's initial learning rate
    at each step (e.g. a warm-up). ``lr_drop``: once this fraction of the training is done (of
    the epochs, the steps or the time budget, whichever is furthest along), the learning rate is
    divided by 10, the papers' step schedule (Fast and Faster R-CNN drop it 10x after 3/4 of their
    iterations: ``lr_drop=0.75``). ``clip_grad_norm``: the
    gradients of all parameters are scaled down together when their norm exceeds it (detectron2's
    ``CLIP_GRADIENTS``): one bad batch then moves the weights a bounded step, instead of blowing
    them up (a loss of 1e29, then NaN).

    ``eval_every_s`` with ``evaluate_fn(model) -> {"val_box_AP": ..., "val_mask_AP": ...}``: each
    time another ``eval_every_s`` seconds of training have passed, the model is scored in eval
    mode and the values join that step's record in ``losses.json`` (and the progress line). The
    clock is paused meanwhile: evaluation does not eat the time budget, it adds wall time.

    ``checkpoint_every_s``: write the checkpoint each time this many seconds (wall clock) have
    passed since the last one, besides the end of every epoch (None or 0: at epoch ends only): a
    kill loses at most that much. Ctrl-C or SIGTERM writes it at the step reached and raises
    ``TrainingInterrupted`` (see the module docstring).
    """
    if epochs is None and time_budget_s is None and max_steps is None:
        raise ValueError("give epochs, time_budget_s or max_steps: training needs a stopping rule")
    world = distributed.world_size()
    if batch_size % world:
        raise TrainingSetupError(f"--images-per-batch {batch_size} does not split among {world} "
                                 f"processes: give a multiple of {world} (it is the global batch)")
    main = distributed.is_main()  # the process that writes, prints and evaluates
    progress = progress and main
    out_dir = Path(out_dir)
    ckpt_path = out_dir / CHECKPOINT
    model.to(device)
    epoch, step, spent, history = 0, 0, 0.0, []
    batch = 0  # mini-batches done in the current epoch (a checkpoint written mid-epoch)
    if resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, stage=stage, class_names=dataset.class_names,
                                map_location=device)
        restore(state, model, optimizer)
        epoch, step, spent, history = (state["epoch"], state["step"], state["train_time_s"],
                                       state["history"])
        batch = int((state.get("extra") or {}).get("batch_in_epoch", 0))
        within = f" (mini-batch {batch} of it done)" if batch else ""
        print(f"[{stage}] resumed from {ckpt_path}: epoch {epoch}{within}, step {step}, "
              f"{spent:.0f} s trained")
    # the lr each schedule scales; kept in the optimizer state, so a resumed run scales the same
    base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
    max_epochs = epochs if epochs is not None else 10**9

    def stopped_by() -> str | None:  # which stopping rule has ended training, if one has
        if max_steps is not None and step >= max_steps:
            return "steps"
        if out_of_time():
            return "time_budget"
        return "epochs" if epoch >= max_epochs else None

    def save(batch_in_epoch: int = 0):
        """checkpoint.pt and losses.json; ``batch_in_epoch``: how far into epoch ``epoch + 1``
        (0: at its start)."""
        if main:  # one writer: the others hold the same weights
            save_checkpoint(ckpt_path, stage=stage, class_names=dataset.class_names, config=config,
                            model=model, optimizer=optimizer, epoch=epoch, step=step,
                            train_time_s=spent, history=history,
                            extra={"stopped_by": stopped_by(), "batch_in_epoch": batch_in_epoch})
            io.write_json(out_dir / LOSSES, history, indent=None)

    def next_evaluation() -> float:  # the next multiple of eval_every_s past the time spent
        if not eval_every_s:
            return math.inf
        k = math.floor(spent / eval_every_s) + 1
        while k * eval_every_s <= spent:  # floating point: 0.2 / 0.05 can floor to 3
            k += 1
        return k * eval_every_s

    def validate(record: dict) -> dict:
        """Score the model in eval mode (rank 0; the others wait); its AP joins the step's
        record. Returns the scores."""
        scores = {}
        if main:
            model.eval()
            with torch.no_grad():
                scores = evaluate_fn(model)  # the model itself, not its DDP wrapper
            model.train()
        distributed.barrier()
        scores = {k: round(float(v), 2) for k, v in scores.items() if v is not None}
        record.update(scores)
        if not progress:
            text = ", ".join(f"{k} {v:.1f}" for k, v in scores.items())
            print(f"[{stage}] step {step}, {spent:.0f} s of training: {text}", flush=True)
        return scores

    def out_of_time() -> bool:
        return time_budget_s is not None and spent >= time_budget_s

    def finished() -> bool:
        return stopped_by() is not None

    def kept() -> str:
        return (f"the last good checkpoint {ckpt_path} is kept" if ckpt_path.exists()
                else "no checkpoint had been written yet")

    if eval_every_s and evaluate_fn is None:
        raise ValueError("eval_every_s needs evaluate_fn, the function that scores the model")
    evaluate_at = next_evaluation()
    last_scores = {}  # the latest validation AP, shown in the progress line
    net = distributed.wrap(model, torch.device(device))  # DDP on several processes, else model
    model.train()
    if len(make_loader(dataset, batch_size, shuffle=True, seed=0)) == 0:
        raise TrainingSetupError(f"[{stage}] no training images: nothing to train on")
    with interrupt_requests() as signalled:
        last_save = time.perf_counter()
        while not finished():
            epoch_seed = seed * 100_003 + epoch
            loader = make_loader(SeededItems(dataset, epoch_seed), batch_size, shuffle=True,
                                 seed=epoch_seed, skip=batch)
            n_batches = batch + len(loader)  # the epoch's mini-batches, those done before included
            bar = tqdm(loader, desc=f"[{stage}] epoch {epoch + 1}", disable=not progress,
                       leave=False, initial=batch, total=n_batches)
            batches = iter(bar)
            for i in range(batch, n_batches):
                try:  # the images are read here: one may have gone missing since the run started
                    images, targets = next(batches)
                except DatasetError as e:
                    raise DatasetError(f"{e} (found at epoch {epoch + 1}, step {step + 1}; "
                                       f"{kept()})") from None
                t0 = time.perf_counter()
                images, targets = to_device(images, targets, device)
                done = max(spent / time_budget_s if time_budget_s else 0.0,
                           step / max_steps if max_steps else 0.0,
                           (epoch + i / n_batches) / epochs if epochs else 0.0)  # fraction of training
                factor = lr_schedule(step) if lr_schedule is not None else 1.0
                if lr_drop is not None and done >= lr_drop:
                    factor *= 0.1
                for g, lr in zip(optimizer.param_groups, base_lrs):
                    g["lr"] = lr * factor
                losses = net(images, targets)  # {"loss_cls": ..., "loss_box": ...}
                loss = sum(losses.values())
                # the global batch's losses: the mean over the processes (one process: its own)
                values = dict(zip(losses, distributed.agree([v.item() for v in losses.values()], "mean")))
                total = sum(values.values())
                if not math.isfinite(total):  # every process sees the same numbers: all stop
                    detail = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                    raise NonFiniteLossError(
                        f"[{stage}] the loss became {total} at epoch {epoch + 1}, step {step + 1} "
                        f"({detail}); {kept()}. Try a lower learning rate (or --resume from the checkpoint).")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if clip_grad_norm:  # None or 0: off
                    torch.nn.utils.clip_grad_norm_(
                        [p for g in optimizer.param_groups for p in g["params"]], clip_grad_norm)
                optimizer.step()
                synchronize(device)
                # the clock every process agrees on: the slowest one's (a budget stops all at
                # once), and whether any process was sent Ctrl-C or SIGTERM (then all stop)
                seconds, signum = distributed.agree([time.perf_counter() - t0, signalled[0]])
                spent += seconds
                step += 1
                record = {"epoch": epoch + 1, "step": step, "time_s": round(spent, 3),
                          "lr": optimizer.param_groups[0]["lr"], "loss": total, **values}
                history.append(record)
                if spent >= evaluate_at and not finished():  # the last one: the caller's, at the end
                    last_scores = validate(record)
                    evaluate_at = next_evaluation()
                bar.set_postfix(loss=f"{record['loss']:.3f}",
                                **{k.removeprefix("val_"): f"{v:.1f}" for k, v in last_scores.items()})
                if signum:  # Ctrl-C or SIGTERM: the step is done; save it, then stop
                    bar.close()
                    if i + 1 == n_batches:  # the epoch's last mini-batch: the epoch is done
                        epoch, i = epoch + 1, -1
                    save(batch_in_epoch=i + 1)
                    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(int(signum)).name
                    raise TrainingInterrupted(
                        f"[{stage}] interrupted ({name}) at step {step}, {spent:.0f} s of "
                        f"training: {ckpt_path} holds it; the same command with --resume "
                        f"continues", int(signum))
                if out_of_time() or (max_steps is not None and step >= max_steps):
                    break
                if (checkpoint_every_s and i + 1 < n_batches  # the epoch's end saves anyway
                        and time.perf_counter() - last_save >= checkpoint_every_s):
                    save(batch_in_epoch=i + 1)
                    last_save = time.perf_counter()
            bar.close()
            epoch += 1  # a part-epoch cut by the budget counts as done: a resumed run starts the next
            batch = 0
            save()
            last_save = time.perf_counter()
    if history and main:
        save_loss_figure(history, out_dir / LOSSES_FIGURE, title=f"{stage}: {step} steps, "
                         f"{spent:.0f} s of training")
    return TrainResult(epochs=epoch, steps=step, train_time_s=spent, history=history,
                       stopped_by=stopped_by() or "epochs")


def save_loss_figure(history: list[dict], path, title: str = "", final: tuple | None = None):
    """``losses.png``: each loss term against the step (a running mean) and, when validation ran
    (``eval_every_s``), validation AP against training seconds; ``final``: (seconds, box AP,
    mask AP or None) of the run's closing evaluation, the last point of that curve."""
    from matplotlib.figure import Figure  # only here: the loop itself needs no plotting

    from stages.figures.draw import plot_losses, plot_validation_ap

    validated = [r for r in history if VAL_KEYS[0] in r] or final is not None
    fig = Figure(figsize=(11 if validated else 6, 3.6))
    axes = fig.subplots(1, 2 if validated else 1, squeeze=False)[0]
    plot_losses(axes[0], history, smooth=max(1, min(20, len(history) // 10)))
    axes[0].set_title("training losses (running mean)", fontsize=10)
    if validated:
        plot_validation_ap(axes[1], history, final=final)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return io.save_figure(fig, path)
