"""``python -m stages.mask_rcnn``: train Mask R-CNN on the chosen data, evaluate boxes and masks.

Our Mask R-CNN: RoIAlign, the mask branch, FPN with ``--fpn``; the Table 2 ablations as switches
(``--pool roi``, ``--mask-loss softmax``, ``--fpn``). torchvision's fine-tuning tutorial
(``maskrcnn_resnet50_fpn``, its predictors replaced for our classes) is its own command:
``python -m stages.torchvision.finetune``.

    python -m stages.mask_rcnn --data pennfudan:../shared/datasets/PennFudanPed
        # pedestrians: the long side (256 px), the scale (1) and tall anchors (48 80 120 px,
        # height / width 1.9 2.7 3.5) are chosen from the training boxes and printed
"""

from __future__ import annotations

import sys

import torch

from stages import run
from stages.backbone import backbone_suffix
from stages.evaluation import Result
from stages.mask_rcnn.config import MaskRCNNConfig
from stages.mask_rcnn.model import build_mask_rcnn
from stages.flags import RunConfig, dataclass_from_args

STAGE = "mask_rcnn"
# inherited fields stage 4 does not read: its --pool is align | roi, so no SPP pyramid
SKIP = ("spp_levels",)
# the flags of torchvision's fine-tuning path, which was `python -m stages.mask_rcnn --model
# torchvision` and is now a command of stages.torchvision (stage 4 does not import it)
MOVED = ("--model", "--weights", "--image-size")


@run.one_line_errors
def train_and_evaluate(run_cfg: RunConfig, cfg: MaskRCNNConfig | None = None) -> Result | None:
    """Train our Mask R-CNN (or restore it: ``run_cfg.eval_only``), evaluate its boxes and masks,
    save the run into ``run_cfg.out``; returns its result record (None on the other ranks under
    torchrun). ``cfg``: None is the command's defaults (``run.command_defaults``)."""
    ctx = run.prepare(run_cfg, STAGE)
    # anchors and scale: from the data
    cfg = run.stage_config(MaskRCNNConfig, cfg or run.command_defaults(MaskRCNNConfig), ctx)

    torch.manual_seed(ctx.run.seed)
    model = build_mask_rcnn(cfg, ctx.num_classes).to(ctx.device)
    trained = run.train_or_restore(model, ctx, cfg, run.saved_config(ctx, cfg))
    variant = (f"proposals=rpn{'+fpn' if cfg.fpn else ''} pool={cfg.pool} "
               f"mask={cfg.mask_loss} kernel={cfg.pool_kernel}"
               + (f" reduce={cfg.align_reduce}" if cfg.pool == "align" and cfg.align_reduce != "mean" else "")
               + backbone_suffix(cfg))
    return run.finish(model, ctx, variant=variant, trained=trained)


def main(argv: list[str] | None = None) -> Result | None:
    argv = sys.argv[1:] if argv is None else argv
    moved = [a for a in argv if a.split("=")[0] in MOVED]
    if moved:
        raise SystemExit(f"error: {moved[0].split('=')[0]}: torchvision's fine-tuning path moved "
                         f"to its own command: python -m stages.torchvision.finetune (--weights "
                         f"coco|PATH|none); python -m stages.mask_rcnn trains ours")
    args = run.build_parser(__doc__, MaskRCNNConfig, prog=f"python -m stages.{STAGE}",
                            skip=SKIP).parse_args(argv)
    return train_and_evaluate(dataclass_from_args(RunConfig, args),
                              dataclass_from_args(MaskRCNNConfig, args))


if __name__ == "__main__":
    main()
