"""``python -m stages.fast_rcnn``: train Fast R-CNN on the chosen data, evaluate it, save the run.

Selective-search proposals come from the cache shared with stage 1 (``data/proposals``); images
not in it yet are computed first, with a progress bar, and the time is reported.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from stages import engine, run
from stages.checkpoint import CheckpointError, load_checkpoint, restore
from stages.cli import dataclass_from_args
from stages.fast_rcnn.config import FastRCNNConfig
from stages.fast_rcnn.model import build_fast_rcnn
from stages.proposals import CACHE_DIR, ProposalCache, SelectiveSearchConfig, fill_cache

STAGE = "fast_rcnn"


def main(argv: list[str] | None = None):
    parser = run.build_parser(__doc__, FastRCNNConfig, SelectiveSearchConfig)
    args = parser.parse_args(argv)
    cfg = dataclass_from_args(FastRCNNConfig, args)
    ctx = run.prepare(args, STAGE)

    cache = ProposalCache(Path(ctx.run.data_root) / CACHE_DIR,
                          dataclass_from_args(SelectiveSearchConfig, args))
    for name, dataset in (("train", ctx.train), ("val", ctx.val)):
        n, seconds = fill_cache(cache, dataset, ctx.run.progress, f"selective search ({name})")
        print(f"[{STAGE}] selective search: {n} {name} images computed now in {seconds:.0f} s, "
              f"{len(dataset) - n} read from the cache {cache.folder}")

    torch.manual_seed(ctx.run.seed)  # the same initial weights whatever the cache held
    model = build_fast_rcnn(cfg, ctx.num_classes, cache).to(ctx.device)
    config = {**vars(args)}
    train_time = 0.0
    if ctx.run.eval_only:
        try:
            state = load_checkpoint(ctx.out_dir / engine.CHECKPOINT, stage=STAGE,
                                    class_names=ctx.class_names, map_location=ctx.device)
        except CheckpointError as e:
            raise SystemExit(f"error: {e}") from None
        restore(state, model, restore_rng=False)
        train_time = state["train_time_s"]
    else:
        epochs = ctx.run.epochs or (None if ctx.run.preset == "quick" else cfg.full_epochs)
        budget = ctx.run.time_budget or (cfg.quick_time_budget if ctx.run.preset == "quick" else None)
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                    weight_decay=cfg.weight_decay)
        warmup = lambda step: min(1.0, (step + 1) / cfg.warmup_steps)  # noqa: E731 (linear warm-up)
        t0 = time.perf_counter()
        result = engine.train(model, optimizer, ctx.train, out_dir=ctx.out_dir, stage=STAGE,
                              config=config, epochs=epochs, time_budget_s=budget,
                              batch_size=cfg.images_per_batch, device=ctx.device, seed=ctx.run.seed,
                              resume=ctx.run.resume, lr_schedule=warmup, lr_drop=cfg.lr_drop,
                              progress=ctx.run.progress)
        train_time = result.train_time_s
        last = result.history[-1] if result.history else {}
        print(f"[{STAGE}] trained {result.steps} steps ({result.epochs} epochs, stopped by "
              f"{result.stopped_by}) in {train_time:.0f} s (wall {time.perf_counter() - t0:.0f} s); "
              f"last loss {last.get('loss', math.nan):.3f}")
    variant = f"proposals=selective_search pool={cfg.pool} kernel={cfg.pool_kernel}"
    return run.finish(model, ctx, variant=variant, train_time_s=train_time)


if __name__ == "__main__":
    main()
