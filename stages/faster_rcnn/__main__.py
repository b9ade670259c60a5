"""``python -m stages.faster_rcnn``: train Faster R-CNN on the chosen data, evaluate it, save the run.

No selective search: the Region Proposal Network makes the proposals from the backbone's feature
map, trained together with stage 2's detection head (approximate joint training, sec. 3.2).
"""

from __future__ import annotations

import math
import time

import torch

from stages import engine, run
from stages.checkpoint import CheckpointError, load_checkpoint, restore
from stages.cli import dataclass_from_args
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.faster_rcnn.model import build_faster_rcnn

STAGE = "faster_rcnn"


def main(argv: list[str] | None = None):
    parser = run.build_parser(__doc__, FasterRCNNConfig)
    args = parser.parse_args(argv)
    cfg = dataclass_from_args(FasterRCNNConfig, args)
    ctx = run.prepare(args, STAGE)

    torch.manual_seed(ctx.run.seed)
    model = build_faster_rcnn(cfg, ctx.num_classes).to(ctx.device)
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
    variant = f"proposals=rpn pool={cfg.pool} kernel={cfg.pool_kernel}"
    return run.finish(model, ctx, variant=variant, train_time_s=train_time)


if __name__ == "__main__":
    main()
