"""Weights for torchvision's Mask R-CNN ResNet-50-FPN: COCO's download, or a local file.

    download_coco_model(...)   ``maskrcnn_resnet50_fpn(weights="DEFAULT")``, the tutorial's first
                               line; offline it raises ``WeightsUnavailableError``, which names
                               ``--weights PATH``
    read_state_dict(path)      a state_dict from a file: torchvision's COCO checkpoint, a bare
                               state_dict of ours, a ``TorchvisionDetector``'s, or an
                               ``engine.train`` checkpoint.pt
    load_local_model(path)     the architecture that file was saved from, loaded strictly

Every problem with a local file raises ``WeightsFileError`` naming the file. Used by
``stages.torchvision.finetune.get_instance_segmentation_model``, which then fits the heads to our
classes.
"""

from __future__ import annotations

import pickle
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN, MaskRCNN_ResNet50_FPN_Weights, maskrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops.misc import FrozenBatchNorm2d

from stages.training.checkpoint import FORMAT as CHECKPOINT_FORMAT


class WeightsUnavailableError(RuntimeError):
    """torchvision's COCO weights could not be downloaded (no internet?); use --weights PATH."""


class WeightsFileError(RuntimeError):
    """A local weights file that is missing, damaged, or not a Mask R-CNN; the message names it."""


def download_coco_model(trainable_backbone_layers, progress, **kwargs) -> MaskRCNN:
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
    """A state_dict from a file: torchvision's COCO checkpoint, or one of ours (module docstring).

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


def load_local_model(path: Path, trainable_backbone_layers, **kwargs) -> MaskRCNN:
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
                     rpn_head=RPNHead(backbone.out_channels, A), **kwargs)  # anchors: set by finetune
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
