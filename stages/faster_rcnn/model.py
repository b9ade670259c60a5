"""Faster R-CNN (Ren et al., NeurIPS 2015): a Region Proposal Network on the shared feature map.

**Reused from stage 2 (Fast R-CNN), unchanged:** the backbone (``stages.backbone``, C3, stride 8),
the head (``FastRCNNHead``: RoI pooling, fc6, fc7, softmax + class-specific boxes), RoI sampling
(``sample_rois``), the multi-task loss and detection.
**Replaced:** selective search (~180 ms per image on the CPU, outside the network) -> the RPN,
a few layers on the feature map the head already uses: proposals almost for free (sec. 3).
**Added:** anchors (``anchors.py``), the RPN head, anchor labels and loss, the proposal layer
(``rpn.py``), trained jointly with the detector (approximate joint training, sec. 3.2).

    images --backbone--> feature (N, C, H/8, W/8)            shared by the RPN and the head
    feature --RegionProposalNetwork--> proposals, list of N [P_i, 4]   (+ RPN losses in training)
    feature, proposals --FastRCNNHead--> class logits, box offsets     (stage 2's head)
    train: {"loss_objectness", "loss_rpn_box", "loss_cls", "loss_box"}, summed (sec. 3.2)
    test:  one dict per image; timing "proposals" = the RPN (its layers + proposal layer), the
           marginal cost of proposals once the shared map exists; "network" = everything else
"""

from __future__ import annotations

import time

import torch
from torch import nn

from stages.backbone import backbone_from_config
from stages.training.device import synchronize
from stages.fast_rcnn.head import FastRCNNHead, build_pooler, detect, fast_rcnn_loss
from stages.fast_rcnn.model import FastRCNN
from stages.fast_rcnn.sampling import sample_batch
from stages.faster_rcnn.anchors import anchor_shapes, grid_anchors
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.faster_rcnn.rpn import (RPNHead, assign_anchors, flatten_rpn_outputs, inside_image,
                                    propose, rpn_loss, sample_anchors)
from stages.ops import BoxCoder


class RegionProposalNetwork(nn.Module):
    """``rpn(features, image_sizes, targets=None)`` -> ``(proposals, scores, losses)``.

    ``features``: one map (stage 3) or a list of maps, one per pyramid level (stage 4's FPN),
    with ``strides`` and ``level_sizes`` (the anchor sizes of each level) to match. One head is
    shared by every level (FPN sec. 4.1); the anchors of all levels are scored together, so the
    proposal layer's top-N and NMS run over all levels at once.
    """

    def __init__(self, in_channels: int, strides, cfg: FasterRCNNConfig, level_sizes=None):
        super().__init__()
        self.strides = (strides,) if isinstance(strides, (int, float)) else tuple(strides)
        level_sizes = level_sizes or (tuple(cfg.anchor_sizes),)  # one level: all sizes on it
        if len(level_sizes) != len(self.strides):
            raise ValueError(f"{len(self.strides)} levels but anchor sizes for {len(level_sizes)}")
        self.cfg = cfg
        self.base_anchors = [anchor_shapes(sizes, cfg.anchor_ratios) for sizes in level_sizes]
        if len({len(b) for b in self.base_anchors}) != 1:
            raise ValueError("every level needs the same number of anchors per location (shared head)")
        self.head = RPNHead(in_channels, len(self.base_anchors[0]))
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))  # Eq. 2, unnormalised

    def anchors(self, map_sizes: list) -> torch.Tensor:
        """All anchors of all levels, level after level: (M, 4)."""
        return torch.cat([grid_anchors(size, stride, base) for size, stride, base
                          in zip(map_sizes, self.strides, self.base_anchors)])

    def forward(self, features, image_sizes, targets: list[dict] | None = None):
        features = [features] if isinstance(features, torch.Tensor) else list(features)
        outputs = [flatten_rpn_outputs(*self.head(f)) for f in features]  # per level (N, M_l), (N, M_l, 4)
        objectness = torch.cat([o for o, _ in outputs], dim=1)  # (N, M)
        deltas = torch.cat([d for _, d in outputs], dim=1)  # (N, M, 4)
        map_sizes = [tuple(f.shape[-2:]) for f in features]
        anchors = self.anchors(map_sizes).to(objectness.device)
        cfg = self.cfg
        pre, post = ((cfg.rpn_pre_nms_train, cfg.rpn_post_nms_train) if self.training
                     else (cfg.rpn_pre_nms_test, cfg.rpn_post_nms_test))
        proposals, scores = propose(objectness.detach(), deltas.detach(), anchors, image_sizes,
                                    self.box_coder, pre, post, cfg.rpn_nms, cfg.rpn_min_size,
                                    cfg.nms_kernel)
        losses = {}
        if targets is not None:
            samples, box_targets = [], []
            for t, size in zip(targets, image_sizes):
                valid = inside_image(anchors, size) if cfg.ignore_cross_boundary else None
                labels, matched = assign_anchors(anchors, t["boxes"], cfg.rpn_pos_iou,
                                                 cfg.rpn_neg_iou, valid)
                samples.append(sample_anchors(labels, cfg.rpn_batch, cfg.rpn_pos_fraction))
                box_targets.append(self.box_coder.encode(matched, anchors))
            n_reg = sum(h * w for h, w in map_sizes) * len(targets)  # anchor locations
            losses = rpn_loss(objectness, deltas, samples, box_targets, n_reg, cfg.rpn_lambda,
                              cfg.rpn_beta)
        return proposals, scores, losses


class FasterRCNN(nn.Module):
    """``model(images, targets)`` -> losses (train); ``model(images)`` -> detections (eval)."""

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, head: FastRCNNHead,
                 cfg: FasterRCNNConfig):
        super().__init__()
        self.backbone, self.rpn, self.head, self.cfg = backbone, rpn, head, cfg
        self.box_coder = BoxCoder(weights=cfg.box_weights)

    # the shared map, computed as stage 2 computes it (the image enlarged, the backbone once):
    # features(images) -> (N, C, sH/8, sW/8) and the images' sizes
    features = FastRCNN.features

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("in train mode Faster R-CNN needs targets: model(images, targets)")
        t0 = time.perf_counter()
        feature, sizes = self.features(images)  # (N, C, sH/8, sW/8)
        synchronize(feature.device)
        t1 = time.perf_counter()
        proposals, _, rpn_losses = self.rpn(feature, sizes, targets if self.training else None)
        synchronize(feature.device)
        t2 = time.perf_counter()

        if self.training:
            # ground truth joins the proposals (sample_rois), as in stage 2
            rois, labels, box_targets, _ = sample_batch(proposals, targets, self.cfg, self.box_coder)
            class_logits, box_deltas = self.head(feature, rois)
            head_losses = fast_rcnn_loss(class_logits, box_deltas, labels, box_targets,
                                         self.cfg.loss_lambda, self.cfg.smooth_l1_beta)
            return {**rpn_losses, **head_losses}

        class_logits, box_deltas = self.head(feature, proposals)
        detections = detect(class_logits, box_deltas, proposals, sizes, self.box_coder,
                            self.cfg.score_thresh, self.cfg.nms_thresh,
                            self.cfg.detections_per_image, self.cfg.nms_kernel)
        synchronize(feature.device)
        t3 = time.perf_counter()
        n = len(images)
        for d in detections:
            d["timing"] = {"proposals": (t2 - t1) / n, "backbone": (t1 - t0) / n,
                           "head": (t3 - t2) / n}
        return detections


def build_faster_rcnn(cfg: FasterRCNNConfig, num_classes: int) -> FasterRCNN:
    """Backbone (C3, stride 8) + RPN + stage 2's head (RoI pooling or SPP), sharing one map."""
    backbone = backbone_from_config(cfg, "C3")
    stride = backbone.stride / cfg.input_scale  # the shared map's stride in image pixels: 4
    pooler = build_pooler(cfg, backbone.out_channels, stride)
    rpn = RegionProposalNetwork(backbone.out_channels, stride, cfg)
    head = FastRCNNHead(pooler, num_classes, cfg.fc_dim)
    return FasterRCNN(backbone, rpn, head, cfg)
