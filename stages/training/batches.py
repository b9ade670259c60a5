"""Mini-batches as the training loop reads them: each image with its own random generator, each
process its share of every mini-batch, each epoch in the order of its own seed.

    loader = epoch_loader(dataset, batch_size, seed, epoch, skip)   # engine.train, every epoch
    for images, targets in loader:                                  # lists, one entry per image
        images, targets = to_device(images, targets, device)

``SeededItems``: what an image draws (its flip, its anchor and RoI samples) depends on the image
and the epoch's seed alone, not on the images beside it nor on the process that reads it; so one
process and N processes (``torchrun``, ``make_loader``'s share) take the same step. R-CNN brings
its own mini-batches (a dataset whose items are whole mini-batches: ``batch_size=None``).
"""

from __future__ import annotations

import torch

from stages.data.sources import collate
from stages.training import distributed


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


def epoch_loader(dataset, batch_size: int | None, seed: int, epoch: int, skip: int = 0):
    """The mini-batches of epoch ``epoch + 1`` (0-based ``epoch``), leaving out the first ``skip``
    (a run resumed mid-epoch): ``make_loader`` over ``SeededItems``, shuffled by the epoch's own
    seed, each process reading its share under torchrun.

    ``batch_size=None``: the items of ``dataset`` are whole mini-batches that it drew itself
    (R-CNN's regions: ``stages.rcnn.cnn.RegionBatches``), read in its order, one per step; under
    torchrun every process reads each (an item is that process's share of the mini-batch)."""
    if batch_size is None:
        return InOrder(dataset, skip)
    epoch_seed = seed * 100_003 + epoch
    return make_loader(SeededItems(dataset, epoch_seed), batch_size, shuffle=True,
                       seed=epoch_seed, skip=skip)


class InOrder:
    """Items ``start``, ``start + 1``, ... of ``dataset``, each read when the loop reaches it. (Not
    a DataLoader: its iterator draws a seed from torch's global generator, which would move every
    later draw.)"""

    def __init__(self, dataset, start: int = 0):
        self.dataset, self.start = dataset, start

    def __len__(self) -> int:
        return len(self.dataset) - self.start

    def __iter__(self):
        return (self.dataset[i] for i in range(self.start, len(self.dataset)))
