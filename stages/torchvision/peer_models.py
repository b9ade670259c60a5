"""The peers: torchvision's ``FasterRCNN`` / ``MaskRCNN`` assembled on OUR backbone.

    build_peer_faster_rcnn   the stage-3 peer: our backbone (``stages.backbone``, ImageNet-
    build_peer_mask_rcnn     pretrained by default) + torchvision's RPN, RoIAlign and heads
                             (+ its mask branch): what our stages 3 and 4 are measured against
    BackboneWithPyramid      our C2..C5 through torchvision's FPN -> P2..P6 (``--fpn``)
    SingleLevel              our C3 alone, the map of our single-level stages (the default)

``python -m stages.torchvision.peers`` (``peers.py``) trains them like a stage; what is kept as
torchvision designed it and what is scaled for 128-px images is listed there. Anchors are
``stages.torchvision.anchors``'; the conventions converted (K vs K + 1 classes, resizing,
normalisation) are in the package docstring.

Shape shorthand: N images, F the FPN's width, H x W the (resized) image.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from stages.backbone import build_backbone
from stages.torchvision.anchors import (ASPECT_RATIOS, FPN_ANCHOR_SIZES, SINGLE_LEVEL_ANCHOR_SIZES,
                                        make_anchor_generator)

PYRAMID_LEVELS = ("P2", "P3", "P4", "P5", "P6")  # P6: P5 subsampled (LastLevelMaxPool), RPN only


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
    min_size = max_size = the images' size: torchvision then does not rescale them (package
        docstring).
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
