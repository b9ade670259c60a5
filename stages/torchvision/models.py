"""Torchvision's detectors in this repo's contract: the tutorial's fine-tuning path and the peers.

Three things, all assembled from torchvision parts, and the command that trains the peers:

    get_instance_segmentation_model   torchvision's Mask R-CNN ResNet-50-FPN, fine-tuned the way the
                                      "TorchVision Object Detection Finetuning Tutorial" does it:
                                      build, load COCO weights (or a local file, or none), then
                                      replace the two predictors by ones for our K classes
    build_peer_faster_rcnn            torchvision's ``FasterRCNN`` / ``MaskRCNN`` on OUR backbone
    build_peer_mask_rcnn              (``stages.backbone``, ImageNet-pretrained by default): the
                                      benchmark peers that our stages 3 and 4 are measured against
    TorchvisionDetector               an adapter: any torchvision ``GeneralizedRCNN`` behind the
                                      repo's model contract (losses in train mode, detections with a
                                      "timing" dict in eval mode), so ``engine.train`` and
                                      ``evaluate`` run it like one of our stages
    run_peer                          train and evaluate a peer like a stage (``python -m
                                      stages.torchvision.peers``, which holds the code); ``stages.compare``
                                      calls it here

Conventions that differ between torchvision and this repo (each is converted here, once):

    classes        ours: K object classes, background excluded (``dataset.num_classes``);
                   torchvision's ``num_classes`` = K + 1, background included. Every function
                   here takes OUR K and passes K + 1 to torchvision.
    aspect ratio   torchvision's ``AnchorGenerator`` uses r = h / w: an anchor of size s has
                   h = s * sqrt(r), w = s / sqrt(r), so r = 2.0 is TALL (pedestrians: 2 to 3).
    resizing       ``GeneralizedRCNNTransform`` rescales every image by
                   min(min_size / shorter side, max_size / longer side). With
                   min_size = max_size = 128 an image whose longer side is 128 (our synthetic set,
                   or any set read with ``--long-side 128``) keeps its size (scale 1); a smaller
                   image is enlarged. Detections come back in the input image's pixels.
    normalisation  our backbones normalise their input themselves; the peers therefore set
                   torchvision's image_mean = 0, image_std = 1, so it happens exactly once. The
                   ResNet-50 model keeps torchvision's own normalisation (its weights expect it).
    masks          targets: uint8 [N, H, W] in both. Outputs: torchvision gives float
                   probabilities [D, 1, H, W] pasted into the image, which ``evaluate`` reads.
    crowds         torchvision has no notion of iscrowd; the adapter drops crowd objects from
                   training targets (our datasets never train on them either).

Timing (``TorchvisionDetector`` in eval mode), per image, in seconds, the same split our stages
report: "proposals" = the RPN module's forward (anchors, objectness, decoding, NMS), measured by a
forward pre-hook / hook pair on ``model.rpn``; "network" = everything else in the call: resize and
batching, backbone (+ FPN), box and mask heads, post-processing. The backbone is charged to
"network" although the RPN needs it, as in our Faster R-CNN, where the RPN shares it with the head.

Shape shorthand: N images, K object classes, D detections per image, A anchors per location.
"""

from __future__ import annotations

import pickle
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from stages.backbone import build_backbone
from stages.training.checkpoint import FORMAT as CHECKPOINT_FORMAT
from stages.training.device import synchronize

# Anchors for 128-px images with objects of 12-56 px. FPN: one size per level P2..P6 (stride
# 4..64), anchor = 4 x stride; the FPN paper (sec. 4.1) uses 8 x stride (32^2 on P2) for ~800-px
# COCO images, whose objects are larger. 3 ratios per location, as in both papers.
FPN_ANCHOR_SIZES = ((16,), (32,), (64,), (128,), (256,))
SINGLE_LEVEL_ANCHOR_SIZES = ((16, 32, 64),)  # 3 sizes x 3 ratios on C3 (stride 8): Faster R-CNN's 9
ASPECT_RATIOS = (0.5, 1.0, 2.0)  # h / w, Faster R-CNN sec. 3.1.1
# Penn-Fudan pedestrians are about 2.5 times taller than wide. Still 3 ratios per location, so a
# COCO RPN head keeps its shape and loads whole (its output channels then mean other ratios at
# first; fine-tuning adapts them). A 4th ratio would replace the RPN's two output layers.
PEDESTRIAN_ASPECT_RATIOS = (1.0, 2.0, 3.0)
PYRAMID_LEVELS = ("P2", "P3", "P4", "P5", "P6")  # P6: P5 subsampled (LastLevelMaxPool), RPN only


class WeightsUnavailableError(RuntimeError):
    """torchvision's COCO weights could not be downloaded (no internet?); use --weights PATH."""


class WeightsFileError(RuntimeError):
    """A local weights file that is missing, damaged, or not a Mask R-CNN; the message names it."""


# ------------------------------------------------------------------------------------------------
# Anchors, in torchvision's convention
# ------------------------------------------------------------------------------------------------

def make_anchor_generator(sizes, aspect_ratios, n_levels: int) -> AnchorGenerator:
    """An ``AnchorGenerator`` for ``n_levels`` feature maps, from flat or per-level tuples.

    sizes: per level ``((16,), (32,), ...)``; or flat ``(16, 32, 64, 128, 256)``, which means one
    size per level when there are several levels, and all sizes on the one level otherwise.
    aspect_ratios: r = h / w (2.0 is tall); flat ``(0.5, 1.0, 2.0)`` is used on every level.
    A = len(sizes of a level) * len(ratios of a level) anchors per location.
    """
    sizes, aspect_ratios = tuple(sizes), tuple(aspect_ratios)
    if not isinstance(sizes[0], (tuple, list)):  # flat
        sizes = tuple((s,) for s in sizes) if n_levels > 1 else (sizes,)
    if not isinstance(aspect_ratios[0], (tuple, list)):
        aspect_ratios = (aspect_ratios,) * n_levels
    if len(sizes) != n_levels or len(aspect_ratios) != n_levels:
        raise ValueError(f"anchors for {n_levels} feature levels, got {len(sizes)} levels of sizes "
                         f"{sizes} and {len(aspect_ratios)} of aspect ratios")
    return AnchorGenerator(tuple(tuple(int(s) for s in level) for level in sizes),
                           tuple(tuple(float(r) for r in level) for level in aspect_ratios))


# ------------------------------------------------------------------------------------------------
# 1. The tutorial's path: Mask R-CNN ResNet-50-FPN, COCO weights, new predictors
# ------------------------------------------------------------------------------------------------

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
    min_size, max_size: torchvision's resize rule (module docstring); 128 / 128 keeps our 128-px
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
        model = _download_coco_model(trainable_backbone_layers, progress, **kwargs)
    else:
        model = _load_local_model(Path(weights), trainable_backbone_layers, **kwargs)
    _fit_heads(model, num_classes, make_anchor_generator(anchor_sizes, aspect_ratios, n_levels=5))
    return model


def _download_coco_model(trainable_backbone_layers, progress, **kwargs) -> MaskRCNN:
    """The tutorial's first line, ``maskrcnn_resnet50_fpn(weights="DEFAULT")``, with a clear error offline."""
    coco = MaskRCNN_ResNet50_FPN_Weights.DEFAULT
    try:
        return maskrcnn_resnet50_fpn(weights=coco, progress=progress,
                                     trainable_backbone_layers=trainable_backbone_layers, **kwargs)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:  # URLError is an OSError
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailableError(
            f"could not download torchvision's COCO weights for Mask R-CNN from {coco.url} into "
            f"{cache} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Without "
            f"internet, fetch that file on another machine and give it with --weights PATH "
            f"(or train from scratch with --weights none).") from e


def read_state_dict(path: Path) -> "OrderedDict[str, torch.Tensor]":
    """A state_dict from a file: torchvision's COCO checkpoint, or one of ours (see above).

    Read with ``weights_only=True``: tensors and plain containers only, no code runs.
    """
    if not path.is_file():
        raise WeightsFileError(f"{path}: weights file not found (give the path of a .pth/.pt "
                               f"state_dict, 'coco' to download torchvision's, or 'none')")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (on arbitrary bytes the unpickler raises anything:
        # UnpicklingError, RuntimeError, EOFError, even IndexError, measured on a truncated file)
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsFileError(f"{path}: not a readable weights file (damaged, truncated, or not "
                               f"saved by torch.save?): {first}") from None
    if isinstance(state, dict) and (state.get("format") == CHECKPOINT_FORMAT or "model" in state):
        state = state["model"]  # our engine.train checkpoint (or torchvision's reference scripts')
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsFileError(f"{path}: not a state_dict (a dict of tensors): "
                               f"found {type(state).__name__}")
    prefix = "model."  # a TorchvisionDetector's state_dict: the wrapped model is its .model
    if state and all(k.startswith(prefix) for k in state):
        state = OrderedDict((k[len(prefix):], v) for k, v in state.items())
    return state


def _load_local_model(path: Path, trainable_backbone_layers, **kwargs) -> MaskRCNN:
    """Build the architecture the file was saved from, and load it strictly.

    What ``maskrcnn_resnet50_fpn`` builds inside, without its download: the file tells which
    BatchNorm (plain BatchNorm keeps ``num_batches_tracked``, torchvision's FrozenBatchNorm2d of the
    COCO model does not), how many classes (``cls_score`` rows) and anchors per location.
    """
    state = read_state_dict(path)
    needed = ("roi_heads.box_predictor.cls_score.weight", "rpn.head.cls_logits.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise WeightsFileError(f"{path}: not a Mask R-CNN state_dict (no {missing[0]!r}; "
                               f"its first keys: {list(state)[:3]})")
    frozen_bn = not any(k.endswith("num_batches_tracked") for k in state)
    trainable = trainable_backbone_layers
    if trainable is None:  # torchvision's choice: 3 for the (frozen-BN) COCO model, 5 from scratch
        trainable = 3 if frozen_bn else 5
    backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=trainable,
                                   norm_layer=FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d)
    A = state["rpn.head.cls_logits.weight"].shape[0]
    model = MaskRCNN(backbone, num_classes=state["roi_heads.box_predictor.cls_score.weight"].shape[0],
                     rpn_head=RPNHead(backbone.out_channels, A), **kwargs)  # anchors: _fit_heads sets them
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:400]
        raise WeightsFileError(f"{path}: does not fit torchvision's Mask R-CNN ResNet-50-FPN: "
                               f"{detail}") from None
    if frozen_bn:  # torchvision does this for the COCO_V1 weights (it trained them with eps = 0)
        for m in model.modules():
            if isinstance(m, FrozenBatchNorm2d):
                m.eps = 0.0
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


# ------------------------------------------------------------------------------------------------
# 2. The peers: torchvision's FasterRCNN / MaskRCNN on our backbone
# ------------------------------------------------------------------------------------------------

class BackboneWithPyramid(nn.Module):
    """Our Backbone's C2..C5 through torchvision's FPN, renamed P2..P6 (F = ``out_channels``):

        C2 (N, c1, H/4, W/4) ... C5 (N, c4, H/32, W/32)
          -> {"P2": (N, F, H/4, W/4), "P3": H/8, "P4": H/16, "P5": H/32, "P6": (N, F, H/64, W/64)}

    P6 is P5 subsampled by 2 (``LastLevelMaxPool``), used by the RPN only,
    as in the FPN paper (sec. 4.1).
    """

    def __init__(self, body: nn.Module, out_channels: int):
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramidNetwork([body.level_channels[c] for c in ("C2", "C3", "C4", "C5")],
                                         out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels  # what torchvision's RPN and heads read

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        pyramid = self.fpn(self.body(x))  # keys "C2".."C5" (the FPN keeps its input's names), "pool"
        return OrderedDict(zip(PYRAMID_LEVELS, pyramid.values()))


class SingleLevel(nn.Module):
    """Our Backbone up to C3 alone: {"C3": (N, c2, H/8, W/8)}, the map of our single-level stages."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.out_channels = body.out_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return OrderedDict(C3=self.body(x)["C3"])


def _peer_parts(body, fpn, fpn_channels, anchor_sizes, aspect_ratios, min_size, max_size):
    """The parts both peers share: backbone, anchors, RoIAlign over its levels, transform settings.
    ``body``: one of our backbones (``stages.backbone``), up to C5 with ``fpn``, else up to C3;
    None: the default one (EfficientNet-Lite0, ImageNet weights)."""
    if body is None:
        body = build_backbone("efficientnet_lite0", "C5" if fpn else "C3")
    if fpn:
        backbone = BackboneWithPyramid(body, fpn_channels)
        levels = list(PYRAMID_LEVELS[:4])  # RoIs are pooled from P2..P5, never P6 (FPN sec. 4.2)
    else:
        backbone = SingleLevel(body)
        levels = ["C3"]
    n_levels = len(PYRAMID_LEVELS) if fpn else 1
    if anchor_sizes is None:
        anchor_sizes = FPN_ANCHOR_SIZES if fpn else SINGLE_LEVEL_ANCHOR_SIZES
    anchors = make_anchor_generator(anchor_sizes, aspect_ratios, n_levels)
    common = dict(rpn_anchor_generator=anchors,
                  rpn_head=RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
                  min_size=min_size, max_size=max_size,
                  image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])  # our Backbone normalises
    return backbone, levels, common


def build_peer_faster_rcnn(num_classes: int, body: nn.Module | None = None,
                           fpn: bool = True, fpn_channels: int = 64, anchor_sizes=None,
                           aspect_ratios=ASPECT_RATIOS, min_size: int = 128, max_size: int = 128,
                           representation_size: int = 1024, **kwargs) -> FasterRCNN:
    """torchvision's ``FasterRCNN`` on our backbone ``body``: the stage-3 peer.

    num_classes: K, background excluded (torchvision gets K + 1).
    fpn=True: C2..C5 -> FPN (``fpn_channels`` wide) -> P2..P6, RoIAlign 7x7 over P2..P5, anchors
        ``FPN_ANCHOR_SIZES`` (one size per level). fpn=False: the C3 map (stride 8) alone, anchors
        ``SINGLE_LEVEL_ANCHOR_SIZES`` x ``aspect_ratios`` (3 x 3) on it.
    min_size = max_size = the images' size: torchvision then does not rescale them (module docstring).
    representation_size: the width of the two fc layers of the box head (torchvision's 1024).
    kwargs: any other ``FasterRCNN`` argument (``rpn_post_nms_top_n_test``, ``box_score_thresh``, ...);
        torchvision's defaults otherwise.
    """
    backbone, levels, common = _peer_parts(body, fpn, fpn_channels, anchor_sizes,
                                           aspect_ratios, min_size, max_size)
    C = backbone.out_channels
    return FasterRCNN(backbone,
                      box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
                      box_head=TwoMLPHead(C * 7 * 7, representation_size),  # (R, C*7*7) -> (R, 1024)
                      box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
                      **common, **kwargs)


def build_peer_mask_rcnn(num_classes: int, body: nn.Module | None = None,
                         fpn: bool = True, fpn_channels: int = 64, anchor_sizes=None,
                         aspect_ratios=ASPECT_RATIOS, min_size: int = 128, max_size: int = 128,
                         representation_size: int = 1024, mask_head_channels: int = 256,
                         **kwargs) -> MaskRCNN:
    """torchvision's ``MaskRCNN`` on our backbone ``body``: the stage-4 peer.

    As ``build_peer_faster_rcnn``, plus the mask branch of the Mask R-CNN paper (Fig. 4, right):
    RoIAlign 14x14, four 3x3 convs ``mask_head_channels`` wide (torchvision's 256), a 2x deconv and
    one 28x28 mask per class.
    """
    backbone, levels, common = _peer_parts(body, fpn, fpn_channels, anchor_sizes,
                                           aspect_ratios, min_size, max_size)
    C = backbone.out_channels
    return MaskRCNN(backbone,
                    box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
                    box_head=TwoMLPHead(C * 7 * 7, representation_size),
                    box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
                    mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
                    mask_head=MaskRCNNHeads(C, (mask_head_channels,) * 4, dilation=1),
                    mask_predictor=MaskRCNNPredictor(mask_head_channels, mask_head_channels,
                                                     num_classes + 1),
                    **common, **kwargs)


# ------------------------------------------------------------------------------------------------
# 3. The adapter: a torchvision detector behind this repo's model contract
# ------------------------------------------------------------------------------------------------

class TorchvisionDetector(nn.Module):
    """Any torchvision ``GeneralizedRCNN`` (Faster / Mask R-CNN) as one of our stage models.

    train mode: ``model(images, targets)`` -> torchvision's losses {"loss_objectness",
        "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"[, "loss_mask"]}; targets are our
        dataset items' dicts (see ``torchvision_target``).
    eval mode: ``model(images)`` -> per image {"boxes" [D, 4], "labels" [D] in 1..K, "scores" [D],
        ["masks" [D, 1, H, W] probabilities,] "timing": {"proposals": s, "network": s}}
        (the timing split: module docstring).
    Its state_dict is the wrapped model's with a "model." prefix; ``get_instance_segmentation_model``
    reads such a file back.
    """

    def __init__(self, model: GeneralizedRCNN):
        super().__init__()
        self.model = model
        self._rpn_start = self._rpn_seconds = 0.0
        model.rpn.register_forward_pre_hook(self._start_rpn_clock)
        model.rpn.register_forward_hook(self._stop_rpn_clock)

    @property
    def has_mask(self) -> bool:
        return self.model.roi_heads.has_mask()

    def torchvision_target(self, target: dict) -> dict:
        """Our target -> torchvision's: boxes float [N, 4], labels int64 [N], masks uint8 [N, H, W]
        (only for a model with a mask head: torchvision would resize them for nothing otherwise).
        Crowd objects (iscrowd = 1) are dropped: torchvision would train on them as objects."""
        keep = target["iscrowd"] == 0 if "iscrowd" in target else slice(None)
        out = {"boxes": target["boxes"][keep].float(), "labels": target["labels"][keep].long()}
        if self.has_mask:
            if "masks" not in target:
                raise ValueError("a Mask R-CNN trains on masks: this target has none")
            out["masks"] = target["masks"][keep].to(torch.uint8)
        return out

    def forward(self, images, targets=None):
        images = list(images)
        if self.training:
            if targets is None:
                raise ValueError("in train mode the model needs targets: model(images, targets)")
            return self.model(images, [self.torchvision_target(t) for t in targets])
        if not images:
            return []
        device = images[0].device
        self._rpn_seconds = 0.0
        synchronize(device)
        t0 = time.perf_counter()
        outputs = self.model(images)  # transform, backbone, rpn (timed by the hooks), roi_heads, postprocess
        synchronize(device)
        total = time.perf_counter() - t0
        N = len(images)  # one call for the batch: each image is charged an equal share
        timing = {"proposals": self._rpn_seconds / N, "network": (total - self._rpn_seconds) / N}
        return [{**out, "timing": dict(timing)} for out in outputs]

    # the RPN's clock; in train mode it is not read, and no GPU synchronisation slows training
    def _start_rpn_clock(self, module, inputs):
        if not self.training:
            synchronize(inputs[0].tensors.device)  # inputs = (ImageList, features[, targets])
            self._rpn_start = time.perf_counter()

    def _stop_rpn_clock(self, module, inputs, output):
        if not self.training:
            synchronize(inputs[0].tensors.device)
            self._rpn_seconds += time.perf_counter() - self._rpn_start


# ------------------------------------------------------------------------------------------------
# 4. Training a peer like a stage: the code is the command's, ``stages.torchvision.peers``
# ------------------------------------------------------------------------------------------------

def run_peer(kind: str, argv: list[str]):
    """Train (or ``--eval-only``, ``--resume``) the peer of stage ``kind`` with the stage flags ``argv``.

    ``python -m stages.torchvision.peers <kind> <argv...>`` from Python, as ``stages.compare --peers`` calls it:
    kind "faster_rcnn" or "mask_rcnn"; argv the shared flags, ``--out <folder>`` among them.
    Writes checkpoint.pt, metrics.json and predictions.png into that folder and returns the
    ``stages.evaluation.loop.Result``. Imported when called: ``stages.torchvision.peers`` builds on this module.
    """
    from stages.torchvision.peers import run_peer as run_peer_command
    return run_peer_command(kind, argv)
