"""The torchvision fine-tuning tutorial's path: a Mask R-CNN with new predictors for our classes.

"TorchVision Object Detection Finetuning Tutorial", as ``python -m stages.torchvision.finetune``
(this module's command) and notebook 04 run it:

    1. build a Mask R-CNN that has learnt something: torchvision's ``maskrcnn_resnet50_fpn`` with
       its COCO weights (``get_instance_segmentation_model``; ``--weights coco`` downloads them,
       ``--weights PATH`` reads a local copy, ``stages.torchvision.weights``);
    2. replace the two layers whose size is the number of classes (``replace_predictors``, the
       tutorial's lines): the box predictor (``FastRCNNPredictor``) and the mask predictor
       (``MaskRCNNPredictor``), for our K + 1 classes; and the RPN's two 1x1 output layers when the
       anchors per location change;
    3. fine-tune it on our data (our training loop and evaluator, as every stage).

Without the COCO file (it is a download) step 1 has nothing to start from, and a ResNet-50-FPN
from random weights learns next to nothing in minutes on a CPU (Penn-Fudan at 256 px, 150 s on 2
CPU cores: 30 steps, box AP 0.5, mask AP 0.0). ``get_backbone_instance_segmentation_model`` then
starts from what we do have, our ImageNet-pretrained EfficientNet-Lite0 inside torchvision's
``MaskRCNN`` (the stage-4 peer, ``peer_models``), and runs the same ``replace_predictors``; the
same 150 s give it 146 steps and box / mask AP 40.7 / 33.5 (notebook 04, section 8).
``build_finetune_model`` picks one of the two and says which.

The result is a plain torchvision ``MaskRCNN``; ``stages.torchvision.adapter.TorchvisionDetector``
puts it behind our model contract. Classes: ``num_classes`` is OUR K (background excluded);
torchvision gets K + 1 (the package docstring lists the conventions converted).

    python -m stages.torchvision.finetune --data pennfudan:../shared/datasets/PennFudanPed
        # no COCO file: torchvision's MaskRCNN on our ImageNet backbone, fine-tuned 120 s
    python -m stages.torchvision.finetune --weights PATH --data pennfudan:...
        # the tutorial exactly: COCO's maskrcnn_resnet50_fpn from a local file

The command trains like our stage 4 (``MaskRCNNConfig``'s recipe and anchor ratios, the same
data, loop and evaluator; ``FinetuneConfig`` holds its own two settings) and writes its run into
``runs/mask_rcnn_torchvision``, whose result record's stage is "mask_rcnn_torchvision".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

from stages.evaluation import Result
from stages.mask_rcnn.config import MaskRCNNConfig
from stages.training import engine
from stages import run
from stages.flags import RunConfig, dataclass_from_args, param
from stages.torchvision.adapter import TorchvisionDetector
from stages.torchvision.anchors import ASPECT_RATIOS, FPN_ANCHOR_SIZES, make_anchor_generator
from stages.torchvision.peer_models import build_peer_mask_rcnn
from stages.torchvision.weights import (WeightsFileError, WeightsUnavailableError,
                                        download_coco_model, load_local_model)

STAGE = "mask_rcnn_torchvision"  # its runs and result records: beside our stage 4, "mask_rcnn"
SKIP = ("spp_levels",)  # as stage 4's command: no SPP pyramid


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning path's own two settings (the recipe and the anchor ratios are stage 4's,
    ``MaskRCNNConfig``)."""
    weights: str = param("none", help=("coco | PATH to a local state_dict (COCO's maskrcnn_resnet50_fpn, the "
                                       "tutorial) | none (torchvision's MaskRCNN on our ImageNet backbone: no "
                                       "COCO weights)"))
    image_size: int = param(128, help=("its transform resizes images to this side (its min_size = max_size; "
                                       "our images: 128 px; --long-side overrides it)"))


def replace_predictors(model: MaskRCNN, num_classes: int) -> MaskRCNN:
    """The tutorial's step: new box and mask predictors for K = ``num_classes`` object classes.

    The box predictor (``FastRCNNPredictor``: class scores [R, K + 1] and class-specific boxes
    [R, 4 (K + 1)]) and the mask predictor (``MaskRCNNPredictor``: a 2x deconvolution and
    K + 1 masks of 28 x 28 per RoI) are the only layers whose size is the number of classes;
    everything before them (backbone, FPN, RPN, box and mask heads) keeps its weights. The new
    layers start from torchvision's initialisation. Returns ``model``, changed in place.
    """
    # the box predictor: its input is the box head's feature (TwoMLPHead: 1024)
    in_features = model.roi_heads.box_predictor.cls_score.in_features
    model.roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes + 1)
    # the mask predictor: its input is the mask head's last conv (MaskRCNNHeads: 256 channels)
    in_features_mask = model.roi_heads.mask_predictor.conv5_mask.in_channels
    hidden_layer = 256  # the deconvolution's width, the tutorial's value
    model.roi_heads.mask_predictor = MaskRCNNPredictor(in_features_mask, hidden_layer, num_classes + 1)
    return model


def get_instance_segmentation_model(num_classes: int, weights: str = "none", *,
                                    min_size: int = 128, max_size: int = 128,
                                    anchor_sizes=FPN_ANCHOR_SIZES, aspect_ratios=ASPECT_RATIOS,
                                    trainable_backbone_layers: int | None = None,
                                    progress: bool = True, **kwargs) -> MaskRCNN:
    """torchvision's ``maskrcnn_resnet50_fpn`` with its predictors replaced for ``num_classes``.

    num_classes: K, the object classes WITHOUT background (``dataset.num_classes``); the
        predictors get K + 1 outputs, torchvision's convention (class 0 = background).
    weights:
        "none"  from scratch: no COCO weights, no ImageNet backbone (nothing is downloaded);
        "coco"  torchvision's COCO weights (``MaskRCNN_ResNet50_FPN_Weights.DEFAULT``), downloaded
                once into torch's hub cache; offline this raises ``WeightsUnavailableError``;
        a path  a local state_dict file: the COCO checkpoint as torchvision saves it (the same
                file, downloaded elsewhere), or a model of ours (a bare state_dict, a
                ``TorchvisionDetector`` state_dict, or an ``engine.train`` checkpoint.pt).
                Problems raise ``WeightsFileError`` naming the file.
        After loading, any part whose shape must change is replaced by a freshly initialised one:
        the box and mask predictors (``replace_predictors``) when the loaded class count is not
        K + 1 (COCO's 91 always, unless K = 90), the RPN's two 1x1 output layers when A differs
        (its 3x3 conv is kept). A model of ours with K classes therefore loads back whole.
    min_size, max_size: torchvision's resize rule (package docstring); 128 / 128 keeps our 128-px
        images as they are. torchvision's defaults (800 / 1333, what the COCO weights were trained
        at) suit Penn-Fudan better, at ~40x the compute of 128 px.
    anchor_sizes, aspect_ratios: see ``make_anchor_generator``; 5 levels (P2..P6). The defaults
        halve torchvision's (32..512), for our small objects; for Penn-Fudan pass
        ``aspect_ratios=PEDESTRIAN_ASPECT_RATIOS``.
    trainable_backbone_layers: 0..5 ResNet stages left trainable; None = torchvision's choice
        (3 with COCO weights, whose BatchNorm is frozen; 5 from scratch).
    kwargs: passed to torchvision's ``MaskRCNN`` (e.g. ``box_detections_per_img``).
    """
    kwargs = dict(min_size=min_size, max_size=max_size, **kwargs)
    if weights == "none":
        model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                      trainable_backbone_layers=trainable_backbone_layers, **kwargs)
    elif weights == "coco":
        model = download_coco_model(trainable_backbone_layers, progress, **kwargs)
    else:
        model = load_local_model(Path(weights), trainable_backbone_layers, **kwargs)
    _fit_anchors(model, make_anchor_generator(anchor_sizes, aspect_ratios, n_levels=5))
    if model.roi_heads.box_predictor.cls_score.out_features != num_classes + 1:
        replace_predictors(model, num_classes)
    return model


def get_backbone_instance_segmentation_model(num_classes: int, *, image_size: int = 128,
                                             aspect_ratios=ASPECT_RATIOS, body: nn.Module | None = None,
                                             rpn_post_nms_top_n_train: int = 300,
                                             rpn_post_nms_top_n_test: int = 300,
                                             box_batch_size_per_image: int = 64,
                                             **kwargs) -> MaskRCNN:
    """No COCO weights: torchvision's ``MaskRCNN`` on our ImageNet-pretrained backbone, then the
    tutorial's ``replace_predictors``.

    The network is the stage-4 peer (``build_peer_mask_rcnn``): ``body`` (None: EfficientNet-Lite0
    with its ImageNet weights, ``stages.backbone``; it ships with the project, nothing is
    downloaded) up to C5 -> torchvision's FPN (64 channels) -> P2..P6, torchvision's RPN, RoIAlign,
    box head (2 fc of 1024) and mask head (4 convs of 256), i.e. ``maskrcnn_resnet50_fpn``'s
    design on a smaller backbone. What it has learnt is ImageNet's, in the backbone only: its
    FPN, RPN and heads start from random weights. Its predictors are built for K + 1 classes
    already; ``replace_predictors`` swaps them for new ones of the same shape (a no-op in effect),
    so that the tutorial's lines are the ones that run with or without the COCO file.

    image_size: torchvision's min_size = max_size: images whose long side is this keep their
        size (package docstring, "resizing"); 256 for Penn-Fudan read with ``long_side=256``.
    aspect_ratios: h / w; ``PEDESTRIAN_ASPECT_RATIOS`` for Penn-Fudan. Sizes: ``FPN_ANCHOR_SIZES``.
    rpn_post_nms_top_n_train / _test, box_batch_size_per_image: the peers' values, scaled to our
        small images (``stages.torchvision.peers`` says why; torchvision 2000 / 1000 / 512).
    kwargs: any other ``MaskRCNN`` argument.
    """
    model = build_peer_mask_rcnn(num_classes, body=body, fpn=True, aspect_ratios=aspect_ratios,
                                 min_size=image_size, max_size=image_size,
                                 rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
                                 rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
                                 box_batch_size_per_image=box_batch_size_per_image, **kwargs)
    return replace_predictors(model, num_classes)


def build_finetune_model(num_classes: int, coco_weights: str | None, *, image_size: int = 128,
                         aspect_ratios=ASPECT_RATIOS) -> tuple[MaskRCNN, str]:
    """The model to fine-tune, and one line that says which it is.

    coco_weights: a local copy of torchvision's COCO file (``maskrcnn_resnet50_fpn_coco-*.pth``):
        the tutorial exactly, ``get_instance_segmentation_model(num_classes, coco_weights)``.
        None: ``get_backbone_instance_segmentation_model``. Both end in ``replace_predictors``.
    image_size: the images' long side (torchvision's min_size = max_size: they keep their size).
    """
    if coco_weights:
        model = get_instance_segmentation_model(num_classes, coco_weights, min_size=image_size,
                                                max_size=image_size, aspect_ratios=aspect_ratios)
        return model, f"COCO-pretrained ResNet-50-FPN from {coco_weights}"
    model = get_backbone_instance_segmentation_model(num_classes, image_size=image_size,
                                                     aspect_ratios=aspect_ratios)
    return model, ("torchvision MaskRCNN on our ImageNet EfficientNet-Lite0 backbone, "
                   "no COCO weights available")


def _fit_anchors(model: MaskRCNN, anchor_generator: AnchorGenerator) -> None:
    """Set the anchors; replace the RPN's two 1x1 output layers when A, anchors per location, changes."""
    model.rpn.anchor_generator = anchor_generator
    A = anchor_generator.num_anchors_per_location()[0]
    head = model.rpn.head
    if head.cls_logits.out_channels != A:  # the 3x3 conv is shared by all anchors: kept
        C = head.cls_logits.in_channels
        head.cls_logits, head.bbox_pred = nn.Conv2d(C, A, 1), nn.Conv2d(C, 4 * A, 1)
        for layer in (head.cls_logits, head.bbox_pred):  # RPNHead's own initialisation
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)


# ------------------------------------------------------------------------------------------------
# The command: step 3, fine-tune on our data like a stage
# ------------------------------------------------------------------------------------------------

def build_detector(cfg: MaskRCNNConfig, choice: FinetuneConfig, num_classes: int,
                   long_side: int | None, restore: str | None = None) -> TorchvisionDetector:
    """The model to fine-tune behind our model contract (``build_finetune_model``, wrapped).

    With COCO weights (``--weights coco`` or a local file) the tutorial's
    ``maskrcnn_resnet50_fpn``; without (``--weights none``) torchvision's ``MaskRCNN`` on our
    ImageNet backbone: a ResNet-50 from random weights learns next to nothing in minutes (box AP
    0.5 after 153 s on Penn-Fudan). Its images keep their size: ``long_side``, else
    ``choice.image_size`` (torchvision would resize to 800). ``restore``: the path of a
    checkpoint of this run, whose weights the model is about to take: the COCO path is then built
    from that file (its frozen batch norm as it trained), with nothing downloaded."""
    size = long_side or choice.image_size
    weights = None if choice.weights == "none" else restore or choice.weights
    try:
        model, what = build_finetune_model(num_classes, weights, image_size=size,
                                           aspect_ratios=tuple(cfg.anchor_ratios))
    except (WeightsUnavailableError, WeightsFileError) as e:
        raise SystemExit(f"error: {e}") from None
    if restore is None:
        print(f"[{STAGE}] {what}")
    return TorchvisionDetector(model)


@run.one_line_errors
def train_and_evaluate(run_cfg: RunConfig, cfg: MaskRCNNConfig | None = None,
                       choice: FinetuneConfig = FinetuneConfig()) -> Result | None:
    """Fine-tune (or restore: ``run_cfg.eval_only``) and evaluate the tutorial's model, save the
    run into ``run_cfg.out`` (default ``runs/mask_rcnn_torchvision``); returns its result record
    (None on the other ranks under torchrun). ``cfg``: None is stage 4's command defaults."""
    ctx = run.prepare(run_cfg, STAGE)
    # anchor ratios and the recipe: stage 4's, from the data as there
    cfg = run.stage_config(MaskRCNNConfig, cfg or run.command_defaults(MaskRCNNConfig), ctx)
    if not ctx.run.long_side:  # the images' own size, saved
        choice = dataclasses.replace(choice, image_size=int(max(ctx.val[0][0].shape[-2:])))
    torch.manual_seed(ctx.run.seed)
    checkpoint = ctx.out_dir / engine.CHECKPOINT
    restore = str(checkpoint) if ctx.run.eval_only and checkpoint.is_file() else None
    model = build_detector(cfg, choice, ctx.num_classes, ctx.run.long_side, restore).to(ctx.device)
    trained = run.train_or_restore(model, ctx, cfg, run.saved_config(ctx, cfg, choice))
    variant = ("torchvision maskrcnn on our backbone, no coco weights" if choice.weights == "none"
               else f"torchvision maskrcnn_resnet50_fpn weights={choice.weights}")
    return run.finish(model, ctx, variant=variant, trained=trained)


def main(argv: list[str] | None = None) -> Result | None:
    args = run.build_parser(__doc__, MaskRCNNConfig, FinetuneConfig, skip=SKIP,
                            prog="python -m stages.torchvision.finetune").parse_args(argv)
    return train_and_evaluate(dataclass_from_args(RunConfig, args),
                              dataclass_from_args(MaskRCNNConfig, args),
                              dataclass_from_args(FinetuneConfig, args))


if __name__ == "__main__":
    main()
