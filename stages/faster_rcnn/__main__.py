"""``python -m stages.faster_rcnn``: train Faster R-CNN on the chosen data, evaluate it, save the run.

No selective search: the Region Proposal Network makes the proposals from the backbone's feature
map, trained together with stage 2's detection head (approximate joint training, sec. 3.2).
"""

from __future__ import annotations


import torch

from stages.training import run
from stages.backbone import backbone_suffix
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.faster_rcnn.model import build_faster_rcnn

STAGE = "faster_rcnn"


@run.one_line_errors
def main(argv: list[str] | None = None):
    parser = run.build_parser(__doc__, FasterRCNNConfig, prog=f"python -m stages.{STAGE}")
    args = parser.parse_args(argv)
    ctx = run.prepare(args, STAGE)
    cfg = run.stage_config(FasterRCNNConfig, args, ctx)  # anchors and scale: from the data

    torch.manual_seed(ctx.run.seed)
    model = build_faster_rcnn(cfg, ctx.num_classes).to(ctx.device)
    config = run.saved_config(args, ctx, cfg)
    trained = run.train_or_restore(model, ctx, cfg, config)
    variant = f"proposals=rpn pool={cfg.pool} kernel={cfg.pool_kernel}" + backbone_suffix(cfg)
    return run.finish(model, ctx, variant=variant, trained=trained)


if __name__ == "__main__":
    main()
