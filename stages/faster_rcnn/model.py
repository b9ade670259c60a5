"""Faster R-CNN (Ren et al., NeurIPS 2015): stage 2's detector with a Region Proposal Network.

**Reused from stage 2 (Fast R-CNN), unchanged:** the detector class (``FastRCNN``), the backbone
(C3, stride 8), the head (RoI pooling, fc6, fc7, softmax + class-specific boxes), RoI sampling,
the multi-task loss and detection.
**Replaced:** the proposer. Selective search (~180 ms per image on the CPU, outside the network)
-> the RPN, a few layers on the feature map the head already uses: proposals almost for free
(sec. 3). In code that is one constructor argument of ``FastRCNN``: see ``build_faster_rcnn``.
**Added:** anchors (``anchors.py``), the RPN head, anchor labels and loss, the proposal layer
(``rpn.py``), trained jointly with the detector (approximate joint training, sec. 3.2).

    images (2x) --backbone--> feature (N, C, H/4, W/4)       shared by the RPN and the head
    feature --RegionProposalNetwork--> proposals, list of N [P_i, 4]   (+ RPN losses in training)
    feature, proposals --FastRCNNHead--> class logits, box offsets     (stage 2's head)
    train: {"loss_objectness", "loss_rpn_box", "loss_cls", "loss_box"}, summed (sec. 3.2)
    test:  one dict per image; timing "proposals" = the RPN (its layers + proposal layer), the
           marginal cost of proposals once the shared map exists
"""

from __future__ import annotations

from stages.backbone import backbone_from_config
from stages.fast_rcnn.head import FastRCNNHead
from stages.fast_rcnn.model import FastRCNN
from stages.fast_rcnn.pooling import build_pooler
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.faster_rcnn.rpn import RegionProposalNetwork


class FasterRCNN(FastRCNN):
    """Fast R-CNN whose proposer is a ``RegionProposalNetwork`` (``model.proposer``).

    The class adds no code: the papers differ in where the proposals come from, and so do the
    builders. It exists so that a checkpoint names the stage it belongs to."""


def build_faster_rcnn(cfg: FasterRCNNConfig, num_classes: int) -> FasterRCNN:
    """Backbone (C3, stride 8) + RPN + stage 2's head (RoI pooling or SPP), sharing one map."""
    backbone = backbone_from_config(cfg, "C3")
    stride = backbone.stride / cfg.input_scale  # the shared map's stride in image pixels: 4
    rpn = RegionProposalNetwork(backbone.out_channels, stride, cfg)  # stage 2: CachedSelectiveSearch
    pooler = build_pooler(cfg, backbone.out_channels, stride)
    head = FastRCNNHead(pooler, num_classes, cfg.fc_dim)
    return FasterRCNN(backbone, rpn, head, cfg)
