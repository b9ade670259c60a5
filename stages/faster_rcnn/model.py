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

from stages.backbone import Backbone, batch_images
from stages.device import synchronize
from stages.fast_rcnn.head import FastRCNNHead, RoIPool, SPPPool, detect, fast_rcnn_loss
from stages.fast_rcnn.sampling import sample_rois
from stages.faster_rcnn.anchors import anchor_shapes, grid_anchors
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.faster_rcnn.rpn import (RPNHead, assign_anchors, flatten_rpn_outputs, inside_image,
                                    propose, rpn_loss, sample_anchors)
from stages.ops import BoxCoder


class RegionProposalNetwork(nn.Module):
    """``rpn(feature, image_sizes, targets=None)`` -> ``(proposals, scores, losses)``."""

    def __init__(self, in_channels: int, stride: int, cfg: FasterRCNNConfig):
        super().__init__()
        self.stride, self.cfg = stride, cfg
        self.register_buffer("base_anchors", anchor_shapes(cfg.anchor_sizes, cfg.anchor_ratios),
                             persistent=False)  # (A, 4)
        self.head = RPNHead(in_channels, len(self.base_anchors))
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))  # Eq. 2, unnormalised

    def anchors(self, map_size: tuple[int, int]) -> torch.Tensor:
        return grid_anchors(map_size, self.stride, self.base_anchors)  # (M, 4)

    def forward(self, feature, image_sizes, targets: list[dict] | None = None):
        objectness, deltas = flatten_rpn_outputs(*self.head(feature))  # (N, M), (N, M, 4)
        anchors = self.anchors(tuple(feature.shape[-2:]))
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
            n_reg = feature.shape[-2] * feature.shape[-1] * len(targets)  # anchor locations
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

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("in train mode Faster R-CNN needs targets: model(images, targets)")
        t0 = time.perf_counter()
        batch, sizes = batch_images(images)
        feature = self.backbone(batch)[self.backbone.last_level]  # (N, C, H/8, W/8)
        synchronize(feature.device)
        t1 = time.perf_counter()
        proposals, _, rpn_losses = self.rpn(feature, sizes, targets if self.training else None)
        synchronize(feature.device)
        t2 = time.perf_counter()

        if self.training:
            rois, labels, box_targets = [], [], []
            for p, t in zip(proposals, targets):  # ground truth joins the proposals (sample_rois)
                r, u, gt = sample_rois(p, t["boxes"], t["labels"], self.cfg.rois_per_image,
                                       self.cfg.fg_fraction, self.cfg.fg_iou,
                                       self.cfg.bg_iou_lo, self.cfg.bg_iou_hi)
                rois.append(r)
                labels.append(u)
                box_targets.append(self.box_coder.encode(gt, r))
            class_logits, box_deltas = self.head(feature, rois)
            head_losses = fast_rcnn_loss(class_logits, box_deltas, torch.cat(labels),
                                         torch.cat(box_targets), self.cfg.loss_lambda,
                                         self.cfg.smooth_l1_beta)
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
    backbone = Backbone(cfg.backbone_channels, last_level="C3")
    scale = 1.0 / backbone.stride
    if cfg.pool == "roi":
        pooler = RoIPool(backbone.out_channels, cfg.pool_size, scale, cfg.pool_kernel)
    elif cfg.pool == "spp":
        pooler = SPPPool(backbone.out_channels, cfg.spp_levels, scale, cfg.pool_kernel)
    else:
        raise ValueError(f"--pool {cfg.pool!r}: expected 'roi' or 'spp'")
    rpn = RegionProposalNetwork(backbone.out_channels, backbone.stride, cfg)
    head = FastRCNNHead(pooler, num_classes, cfg.fc_dim)
    return FasterRCNN(backbone, rpn, head, cfg)
