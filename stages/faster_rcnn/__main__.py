"""``python -m stages.faster_rcnn``: train Faster R-CNN on the chosen data, evaluate it, save the run.

No selective search: the Region Proposal Network makes the proposals from the backbone's feature
map, trained together with stage 2's detection head (approximate joint training, sec. 3.2).
"""

from __future__ import annotations

import torch

from stages import run
from stages.backbone import backbone_suffix
from stages.evaluation import Result
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.faster_rcnn.model import build_faster_rcnn
from stages.flags import RunConfig, dataclass_from_args

STAGE = "faster_rcnn"


@run.one_line_errors
def train_and_evaluate(run_cfg: RunConfig, cfg: FasterRCNNConfig | None = None) -> Result | None:
    """Train Faster R-CNN (or restore it: ``run_cfg.eval_only``), evaluate it, save the run into
    ``run_cfg.out``; returns its result record (None on the other ranks under torchrun).
    ``cfg``: None is the command's defaults (``run.command_defaults``)."""
    ctx = run.prepare(run_cfg, STAGE)
    # anchors and scale: from the data
    cfg = run.stage_config(FasterRCNNConfig, cfg or run.command_defaults(FasterRCNNConfig), ctx)

    torch.manual_seed(ctx.run.seed)
    model = build_faster_rcnn(cfg, ctx.num_classes).to(ctx.device)
    trained = run.train_or_restore(model, ctx, cfg, run.saved_config(ctx, cfg))
    variant = f"proposals=rpn pool={cfg.pool} kernel={cfg.pool_kernel}" + backbone_suffix(cfg)
    return run.finish(model, ctx, variant=variant, trained=trained)


def main(argv: list[str] | None = None) -> Result | None:
    args = run.build_parser(__doc__, FasterRCNNConfig,
                            prog=f"python -m stages.{STAGE}").parse_args(argv)
    return train_and_evaluate(dataclass_from_args(RunConfig, args),
                              dataclass_from_args(FasterRCNNConfig, args))


if __name__ == "__main__":
    main()
