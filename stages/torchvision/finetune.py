"""The torchvision fine-tuning tutorial's path: Mask R-CNN ResNet-50-FPN with new predictors.

"TorchVision Object Detection Finetuning Tutorial", as ``python -m stages.mask_rcnn --model
torchvision`` runs it:

    1. build torchvision's ``maskrcnn_resnet50_fpn``, with COCO weights (``--weights coco``), a
       local file (``--weights PATH``) or none (``stages.torchvision.weights``);
    2. replace what no longer fits our data (``_fit_heads``): the box predictor
       (``FastRCNNPredictor``) and the mask predictor (``MaskRCNNPredictor``) for our K + 1
       classes, and the RPN's two 1x1 output layers when the anchors per location change.

The result is a plain torchvision ``MaskRCNN``; ``stages.torchvision.adapter.TorchvisionDetector``
puts it behind our model contract. Classes: ``num_classes`` is OUR K (background excluded);
torchvision gets K + 1 (the package docstring lists the conventions converted).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

from stages.torchvision.anchors import ASPECT_RATIOS, FPN_ANCHOR_SIZES, make_anchor_generator
from stages.torchvision.weights import download_coco_model, load_local_model


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
        the box and mask predictors when the loaded class count is not K + 1 (COCO's 91 always,
        unless K = 90), the RPN's two 1x1 output layers when A differs (its 3x3 conv is kept).
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
    _fit_heads(model, num_classes, make_anchor_generator(anchor_sizes, aspect_ratios, n_levels=5))
    return model


def _fit_heads(model: MaskRCNN, num_classes: int, anchor_generator: AnchorGenerator) -> None:
    """Set the anchors, and replace the layers whose shape no longer fits (the tutorial's step)."""
    model.rpn.anchor_generator = anchor_generator
    A = anchor_generator.num_anchors_per_location()[0]
    head = model.rpn.head
    if head.cls_logits.out_channels != A:  # the 3x3 conv is shared by all anchors: kept
        C = head.cls_logits.in_channels
        head.cls_logits, head.bbox_pred = nn.Conv2d(C, A, 1), nn.Conv2d(C, 4 * A, 1)
        for layer in (head.cls_logits, head.bbox_pred):  # RPNHead's own initialisation
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)
    roi_heads = model.roi_heads
    if roi_heads.box_predictor.cls_score.out_features != num_classes + 1:
        in_features = roi_heads.box_predictor.cls_score.in_features  # 1024, TwoMLPHead's width
        roi_heads.box_predictor = FastRCNNPredictor(in_features, num_classes + 1)
        in_features_mask = roi_heads.mask_predictor.conv5_mask.in_channels  # 256
        hidden_layer = 256
        roi_heads.mask_predictor = MaskRCNNPredictor(in_features_mask, hidden_layer, num_classes + 1)
