"""``python -m stages.mask_rcnn``: train Mask R-CNN on the chosen data, evaluate boxes and masks.

``--model ours`` (default): our Mask R-CNN (RoIAlign, mask branch, FPN with ``--fpn``; the Table 2 ablations as
switches: ``--pool roi``, ``--mask-loss softmax``, ``--fpn``).
``--model torchvision``: the fine-tuning tutorial's path, box and mask predictors replaced for our
classes: with ``--weights coco`` (a download, online only) or ``--weights PATH`` (a local file)
torchvision's COCO-pretrained ``maskrcnn_resnet50_fpn``; with ``--weights none`` (default; no COCO
weights) torchvision's ``MaskRCNN`` on our ImageNet backbone. Same data, training loop and
evaluator as every stage.

    python -m stages.mask_rcnn --data pennfudan:../shared/datasets/PennFudanPed
        # pedestrians: the long side (256 px), the scale (1) and tall anchors (48 80 120 px,
        # height / width 1.9 2.7 3.5) are chosen from the training boxes and printed
"""

from __future__ import annotations

import dataclasses

import torch

from stages.training import engine, run
from stages.backbone import backbone_suffix
from stages.training.cli import dataclass_from_args
from stages.mask_rcnn.config import MaskRCNNConfig, ModelChoice
from stages.mask_rcnn.model import build_mask_rcnn

STAGE = "mask_rcnn"
# inherited fields stage 4 does not read: its --pool is align | roi, so no SPP pyramid
SKIP = ("spp_levels",)


def build_model(cfg: MaskRCNNConfig, choice: ModelChoice, num_classes: int, long_side: int | None,
                restore: str | None = None):
    """Ours, or torchvision's fine-tuning path behind the same model contract.

    torchvision's path: with COCO weights (``--weights coco`` or a local file) the tutorial's
    ``maskrcnn_resnet50_fpn``; without (``--weights none``) torchvision's ``MaskRCNN`` on our
    ImageNet backbone: a ResNet-50 from random weights learns next to nothing in minutes (box AP
    0.5 after 153 s on Penn-Fudan). Both end in the tutorial's ``replace_predictors``. Its images
    keep their size: ``long_side``, else ``choice.image_size`` (torchvision would resize to 800).
    ``restore``: the path of a checkpoint of this run, whose weights the model is about to take:
    the COCO path is then built from that file (its frozen batch norm as it trained), with nothing
    downloaded."""
    if choice.model == "ours":
        return build_mask_rcnn(cfg, num_classes)
    if choice.model == "torchvision":
        from stages.torchvision.adapter import TorchvisionDetector
        from stages.torchvision.finetune import build_finetune_model
        from stages.torchvision.weights import WeightsFileError, WeightsUnavailableError
        size = long_side or choice.image_size
        weights = None if choice.weights == "none" else restore or choice.weights
        try:
            model, what = build_finetune_model(num_classes, weights, image_size=size,
                                               aspect_ratios=tuple(cfg.anchor_ratios))
        except (WeightsUnavailableError, WeightsFileError) as e:
            raise SystemExit(f"error: {e}") from None
        if restore is None:
            print(f"[mask_rcnn] --model torchvision: {what}")
        return TorchvisionDetector(model)


@run.one_line_errors
def main(argv: list[str] | None = None):
    parser = run.build_parser(__doc__, MaskRCNNConfig, ModelChoice, prog=f"python -m stages.{STAGE}",
                              skip=SKIP)
    args = parser.parse_args(argv)
    choice = dataclass_from_args(ModelChoice, args)
    stage = STAGE if choice.model == "ours" else f"{STAGE}_{choice.model}"
    ctx = run.prepare(args, stage)
    cfg = run.stage_config(MaskRCNNConfig, args, ctx)  # anchors and scale: from the data

    if choice.model == "torchvision" and not ctx.run.long_side:  # the images' own size, saved
        choice = dataclasses.replace(choice, image_size=int(max(ctx.val[0][0].shape[-2:])))
    torch.manual_seed(ctx.run.seed)
    checkpoint = ctx.out_dir / engine.CHECKPOINT
    restore = str(checkpoint) if ctx.run.eval_only and checkpoint.is_file() else None
    model = build_model(cfg, choice, ctx.num_classes, ctx.run.long_side, restore).to(ctx.device)
    config = run.saved_config(args, ctx, cfg, choice)
    trained = run.train_or_restore(model, ctx, cfg, config)
    if choice.model == "ours":
        variant = (f"proposals=rpn{'+fpn' if cfg.fpn else ''} pool={cfg.pool} "
                   f"mask={cfg.mask_loss} kernel={cfg.pool_kernel}"
                   + (f" reduce={cfg.align_reduce}" if cfg.pool == "align" and cfg.align_reduce != "mean" else "")
                   + backbone_suffix(cfg))
    else:
        variant = ("torchvision maskrcnn on our backbone, no coco weights" if choice.weights == "none"
                   else f"torchvision maskrcnn_resnet50_fpn weights={choice.weights}")
    return run.finish(model, ctx, variant=variant, trained=trained)


if __name__ == "__main__":
    main()
