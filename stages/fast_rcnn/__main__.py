"""``python -m stages.fast_rcnn``: train Fast R-CNN on the chosen data, evaluate it, save the run.

Selective-search proposals come from the cache shared with stage 1 (``data/proposals``); images
not in it yet are computed first, with a progress bar, and the time is reported.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stages.training import distributed, run
from stages.backbone import backbone_suffix
from stages.fast_rcnn.config import FastRCNNConfig
from stages.fast_rcnn.model import build_fast_rcnn
from stages.selective_search import CACHE_DIR, ProposalCache, SelectiveSearchConfig, fill_cache

STAGE = "fast_rcnn"


@run.one_line_errors
def main(argv: list[str] | None = None):
    parser = run.build_parser(__doc__, FastRCNNConfig, SelectiveSearchConfig,
                              prog=f"python -m stages.{STAGE}")
    args = parser.parse_args(argv)
    ctx = run.prepare(args, STAGE)
    cfg = run.stage_config(FastRCNNConfig, args, ctx)  # the image scale: from the data
    ss = run.stage_config(SelectiveSearchConfig, args, ctx)  # the method: from the data
    cache = ProposalCache(Path(ctx.run.data_root) / CACHE_DIR, ss)
    for name, dataset in (("train", ctx.train), ("val", ctx.val)):
        with distributed.main_first():  # under torchrun rank 0 computes, the others read
            n, seconds = fill_cache(cache, dataset, ctx.run.progress, f"selective search ({name})")
        print(f"[{STAGE}] selective search: {n} {name} images computed now in {seconds:.0f} s, "
              f"{len(dataset) - n} read from the cache {cache.folder}")

    torch.manual_seed(ctx.run.seed)  # the same initial weights whatever the cache held
    model = build_fast_rcnn(cfg, ctx.num_classes, cache).to(ctx.device)
    config = run.saved_config(args, ctx, cfg, ss)
    trained = run.train_or_restore(model, ctx, cfg, config)
    variant = (f"proposals=selective_search pool={cfg.pool} kernel={cfg.pool_kernel}"
               + backbone_suffix(cfg))
    return run.finish(model, ctx, variant=variant, trained=trained)


if __name__ == "__main__":
    main()
