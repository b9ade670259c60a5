"""``python -m stages.fast_rcnn``: train Fast R-CNN on the chosen data, evaluate it, save the run.

Selective-search proposals come from the cache shared with stage 1 (``data/proposals``); images
not in it yet are computed first, with a progress bar, and the time is reported.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stages.training import distributed
from stages import run
from stages.backbone import backbone_suffix
from stages.evaluation import Result
from stages.fast_rcnn.config import FastRCNNConfig
from stages.fast_rcnn.model import build_fast_rcnn
from stages.selective_search import CACHE_DIR, ProposalCache, SelectiveSearchConfig, fill_cache
from stages.flags import RunConfig, dataclass_from_args

STAGE = "fast_rcnn"


@run.one_line_errors
def train_and_evaluate(run_cfg: RunConfig, cfg: FastRCNNConfig | None = None,
                       ss: SelectiveSearchConfig | None = None) -> Result | None:
    """Train Fast R-CNN (or restore it: ``run_cfg.eval_only``), evaluate it, save the run into
    ``run_cfg.out``; returns its result record (None on the other ranks under torchrun).
    ``cfg`` / ``ss``: None is the command's defaults (``run.command_defaults``)."""
    ctx = run.prepare(run_cfg, STAGE)
    cfg = run.stage_config(FastRCNNConfig, cfg or run.command_defaults(FastRCNNConfig), ctx)
    ss = run.stage_config(SelectiveSearchConfig,  # the method: from the data
                          ss or run.command_defaults(SelectiveSearchConfig), ctx)
    cache = ProposalCache(Path(ctx.run.data_root) / CACHE_DIR, ss)
    for name, dataset in (("train", ctx.train), ("val", ctx.val)):
        with distributed.main_first():  # under torchrun rank 0 computes, the others read
            n, seconds = fill_cache(cache, dataset, ctx.run.progress, f"selective search ({name})")
        print(f"[{STAGE}] selective search: {n} {name} images computed now in {seconds:.0f} s, "
              f"{len(dataset) - n} read from the cache {cache.folder}")

    torch.manual_seed(ctx.run.seed)  # the same initial weights whatever the cache held
    model = build_fast_rcnn(cfg, ctx.num_classes, cache).to(ctx.device)
    trained = run.train_or_restore(model, ctx, cfg, run.saved_config(ctx, cfg, ss))
    variant = (f"proposals=selective_search pool={cfg.pool} kernel={cfg.pool_kernel}"
               + backbone_suffix(cfg))
    return run.finish(model, ctx, variant=variant, trained=trained)


def main(argv: list[str] | None = None) -> Result | None:
    args = run.build_parser(__doc__, FastRCNNConfig, SelectiveSearchConfig,
                            prog=f"python -m stages.{STAGE}").parse_args(argv)
    return train_and_evaluate(dataclass_from_args(RunConfig, args),
                              dataclass_from_args(FastRCNNConfig, args),
                              dataclass_from_args(SelectiveSearchConfig, args))


if __name__ == "__main__":
    main()
