"""Training on several processes: ``torchrun`` starts them, DistributedDataParallel keeps them equal.

    torchrun --nproc_per_node=2 -m stages.faster_rcnn --device cpu      two processes, gloo
    torchrun --nproc_per_node=4 -m stages.faster_rcnn --device cuda     four GPUs, NCCL
    torchrun --nnodes=2 --node-rank=0 --nproc_per_node=4 \\
             --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 -m stages.faster_rcnn      (and rank 1)

There is no launcher of our own: ``torchrun`` (``torch.distributed.run``) starts one process per
device and gives each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment. Without
those variables (``python -m stages.<stage>``) every function here is a no-op for one process.

How the engine (``stages.training.engine``) uses several processes, the data-parallel recipe of
torchvision's detection references and detectron2:

- every process builds the same model from the same seed; ``DistributedDataParallel`` (DDP)
  averages the gradients over the processes in ``backward``, so each takes the same step;
- ``--images-per-batch`` stays the *global* mini-batch (detectron2's ``IMS_PER_BATCH``): each of
  N processes reads images_per_batch / N images of it, so the recipe (learning rate, warm-up) is
  the one-process recipe, and one step of N processes is one step of one;
- a ``DistributedSampler`` shuffles with the one-process seed rule and gives process r every N-th
  image of that order, so the N processes' first batches together are one process's first batch;
- each image draws its random numbers (its flip, its anchor and RoI samples) from a generator of
  its own, seeded by (seed, epoch, image): the draws do not depend on which process reads it;
- rank 0 writes checkpoints, metrics and figures, and evaluates: during training the others wait
  for it (``barrier``), after training they are done;
- the clock is agreed: each step every process takes the largest time any of them spent, so a
  time budget stops them all after the same step.

Backends: NCCL for CUDA devices, gloo on the CPU. Batch norm is *not* synchronised across
processes: the default ImageNet backbone keeps it frozen (``--frozen-bn``), so nothing differs;
``--backbone tiny`` trains batch norm on each process's own images.
"""

from __future__ import annotations

import builtins
import contextlib
import os
from datetime import timedelta

import torch
import torch.distributed as dist


# How long a process waits at a collective for the others. Rank 0 alone works for long stretches
# while the others wait at a barrier: selective search over a new training set, generating the
# synthetic set, an evaluation (--eval-every). NCCL's default, 10 minutes, would abort them.
TIMEOUT = timedelta(hours=4)


def launched() -> bool:
    """True inside a process started by ``torchrun`` with more than one process in all."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True once ``setup`` has joined this process to the others."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """The process that writes files, prints and evaluates: rank 0 (or the only one)."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the processes ``torchrun`` started (NCCL on CUDA, gloo on the CPU); returns the device
    of this process: ``cuda:LOCAL_RANK`` for CUDA, the CPU otherwise. Only rank 0 prints
    afterwards (``print(..., force=True)`` prints on every rank). One process: ``device`` as is."""
    if not launched() or active():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
    _print_on_main_only()
    print(f"[distributed] {world_size()} processes ({dist.get_backend()}), "
          f"this one rank {rank()} on {device}", force=True)
    return device


def _print_on_main_only() -> None:
    """torchvision's references' rule: on ranks other than 0, ``print`` says nothing unless
    ``force=True`` (N copies of every progress line help no one); errors still reach stderr."""
    original = builtins.print
    main = is_main()

    def print_(*args, force: bool = False, **kwargs):
        if main or force:
            original(*args, **kwargs)

    builtins.print = print_


def barrier() -> None:
    if active():
        dist.barrier()


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (it writes: generated data, the proposal cache), the others
    after it has finished (they read what it wrote)."""
    if not is_main():
        barrier()
    try:
        yield
    finally:
        if is_main():
            barrier()


def agree(values: list[float], op: str = "max") -> list[float]:
    """The same numbers on every process: the largest (``op="max"``, the clock) or the mean
    (``"mean"``, the losses of the global batch) of each value over the processes."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    if op == "mean":
        t /= world_size()
    return t.cpu().tolist()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The model in ``DistributedDataParallel`` when several processes train, else itself.

    DDP waits for a gradient of every trainable parameter in each step. Every loss of ours keeps
    its head in the graph even when it has nothing to learn from (no positive RoI: the mask loss
    is its logits' sum times 0), so no parameter goes without one."""
    if not active():
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)


def sampler(dataset, seed: int):
    """Process r's share of the order ``torch.randperm(len(dataset))`` drawn from a generator
    seeded with ``seed`` (``batches.make_loader`` passes one seed per epoch): every N-th index of
    it, starting at r; the whole order for one process. The order is the same for any number of
    processes; for N of them it is padded to a multiple of N by repeating its first images."""
    return torch.utils.data.distributed.DistributedSampler(
        dataset, num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed, drop_last=False)


def cleanup() -> None:
    if active():
        dist.destroy_process_group()
