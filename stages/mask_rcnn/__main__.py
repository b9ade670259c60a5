"""``python -m stages.mask_rcnn``: train Mask R-CNN on the chosen data, evaluate boxes and masks.

``--model ours`` (default): our Mask R-CNN (RoIAlign, mask branch, FPN with ``--fpn``; the Table 2 ablations as
switches: ``--pool roi``, ``--mask-loss softmax``, ``--fpn``).
``--model torchvision``: torchvision's ``maskrcnn_resnet50_fpn`` with its box and mask predictors
replaced for our classes, the fine-tuning tutorial's path; ``--weights coco`` downloads torchvision's
COCO weights (online only), ``--weights PATH`` reads a local file, ``--weights none`` (default)
trains from scratch. Same data, training loop and evaluator as every stage.

    python -m stages.mask_rcnn --data pennfudan:../shared/datasets/PennFudanPed --long-side 256 \\
        --anchor-ratios 1 2 3 --anchor-sizes 32 64 128 --input-scale 1
        # pedestrians: tall, larger anchors (ratio = height / width); 256-px images, not enlarged
"""

from __future__ import annotations


import torch

from stages.training import run
from stages.backbone import backbone_suffix
from stages.training.cli import dataclass_from_args
from stages.mask_rcnn.config import MaskRCNNConfig
from stages.mask_rcnn.model import build_mask_rcnn

STAGE = "mask_rcnn"
# inherited fields stage 4 does not read: its --pool is align | roi, so no SPP pyramid
SKIP = ("spp_levels",)


def build_model(cfg: MaskRCNNConfig, num_classes: int, long_side: int | None):
    """Ours, or torchvision's fine-tuning path behind the same model contract."""
    if cfg.model == "ours":
        return build_mask_rcnn(cfg, num_classes)
    if cfg.model == "torchvision":
        from stages.torchvision.models import (TorchvisionDetector, WeightsFileError,
                                               WeightsUnavailableError, get_instance_segmentation_model)
        size = long_side or cfg.image_size  # keep our images' size: torchvision would resize to 800
        try:
            model = get_instance_segmentation_model(num_classes, cfg.weights, min_size=size,
                                                    max_size=size, aspect_ratios=tuple(cfg.anchor_ratios))
        except (WeightsUnavailableError, WeightsFileError) as e:
            raise SystemExit(f"error: {e}") from None
        return TorchvisionDetector(model)
    raise SystemExit(f"error: --model {cfg.model!r}: expected 'ours' or 'torchvision'")


@run.one_line_errors
def main(argv: list[str] | None = None):
    parser = run.build_parser(__doc__, MaskRCNNConfig, prog=f"python -m stages.{STAGE}",
                              skip=SKIP)
    args = parser.parse_args(argv)
    cfg = dataclass_from_args(MaskRCNNConfig, args)
    stage = STAGE if cfg.model == "ours" else f"{STAGE}_{cfg.model}"
    ctx = run.prepare(args, stage)

    torch.manual_seed(ctx.run.seed)
    model = build_model(cfg, ctx.num_classes, ctx.run.long_side).to(ctx.device)
    config = {**vars(args)}
    train_time = run.train_or_restore(model, ctx, cfg, config)
    if cfg.model == "ours":
        variant = (f"proposals=rpn{'+fpn' if cfg.fpn else ''} pool={cfg.pool} "
                   f"mask={cfg.mask_loss} kernel={cfg.pool_kernel}"
                   + (f" reduce={cfg.align_reduce}" if cfg.pool == "align" and cfg.align_reduce != "mean" else "")
                   + backbone_suffix(cfg))
    else:
        variant = f"torchvision maskrcnn_resnet50_fpn weights={cfg.weights}"
    return run.finish(model, ctx, variant=variant, train_time_s=train_time)


if __name__ == "__main__":
    main()
