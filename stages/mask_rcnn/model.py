"""Mask R-CNN (He et al., ICCV 2017) with a Feature Pyramid Network (Lin et al., CVPR 2017).

**Reused from stage 3 (Faster R-CNN), unchanged:** the RPN (now run on every pyramid level with
one shared head), the Fast R-CNN head (fc6, fc7, softmax, class-specific boxes), RoI sampling,
the multi-task loss and detection; from stage 2 the backbone.
**Replaced:** RoI pooling -> RoIAlign (no rounding; ``stages.ops.roi_align``), for the box and the
mask branch. With ``--fpn``, the one C3 map -> the FPN pyramid P2..P6 (off by default: see
``MaskRCNNConfig.fpn``).
**Added:** the mask branch (a small FCN, one 28 x 28 mask per class, ``heads.py``), its loss on
positive RoIs, and mask pasting at test time.

    images (enlarged 2x, as stage 2) --backbone--> C3 alone, as stage 3
                                  or, with --fpn: C2..C5 --> FPN --> P2..P5 (heads), P2..P6 (RPN)
    RPN (stage 3, all levels) --> proposals
    train: sample RoIs (stage 2) -> box head loss; positive RoIs -> mask head -> mask loss
           losses: loss_objectness, loss_rpn_box, loss_cls, loss_box, loss_mask (summed, sec. 3)
    test:  box head -> detect (NMS, top detections) -> mask head on the *final* boxes
           -> the predicted class's mask -> pasted into the image (sec. 3 "Inference")
"""

from __future__ import annotations

import time

import torch
from torch import nn

from stages.backbone import STRIDES, backbone_from_config, batch_images, enlarge
from stages.training.device import synchronize
from stages.fast_rcnn.head import FastRCNNHead, detect, fast_rcnn_loss
from stages.fast_rcnn.sampling import sample_batch
from stages.faster_rcnn.model import RegionProposalNetwork
from stages.mask_rcnn.config import MaskRCNNConfig
from stages.mask_rcnn.fpn import FPN
from stages.mask_rcnn.heads import (MaskHead, MultiLevelPooler, mask_loss, mask_probabilities,
                                    mask_targets, paste_masks)
from stages.ops import BoxCoder


class MaskRCNN(nn.Module):
    """``model(images, targets)`` -> losses (train); ``model(images)`` -> detections with masks."""

    def __init__(self, backbone: nn.Module, fpn: FPN | None, rpn: RegionProposalNetwork,
                 box_head: FastRCNNHead, mask_head: MaskHead, cfg: MaskRCNNConfig):
        super().__init__()
        self.backbone, self.fpn, self.rpn = backbone, fpn, rpn
        self.box_head, self.mask_head, self.cfg = box_head, mask_head, cfg
        self.box_coder = BoxCoder(weights=cfg.box_weights)

    def pyramid(self, batch: torch.Tensor) -> tuple[list, list]:
        """(maps for the heads, maps for the RPN): P2..P5 and P2..P6, or [C3] and [C3]."""
        levels = self.backbone(batch)
        if self.fpn is None:
            return [levels["C3"]], [levels["C3"]]
        p = self.fpn(levels)
        return [p["P2"], p["P3"], p["P4"], p["P5"]], list(p.values())

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("in train mode Mask R-CNN needs targets: model(images, targets)")
        cfg = self.cfg
        t0 = time.perf_counter()
        batch, sizes = batch_images(images)
        batch = enlarge(batch, cfg.input_scale)  # stage 2's image scale
        head_maps, rpn_maps = self.pyramid(batch)
        synchronize(batch.device)
        t1 = time.perf_counter()
        proposals, _, rpn_losses = self.rpn(rpn_maps, sizes, targets if self.training else None)
        synchronize(batch.device)
        t2 = time.perf_counter()

        if self.training:
            rois, labels, box_targets, gt_index = sample_batch(proposals, targets, cfg, self.box_coder)
            class_logits, box_deltas = self.box_head(head_maps, rois)
            losses = fast_rcnn_loss(class_logits, box_deltas, labels, box_targets,
                                    cfg.loss_lambda, cfg.smooth_l1_beta)
            # the mask branch trains on positive RoIs only; the target is the matched gt's mask
            pos_rois, pos_labels, pos_targets = [], [], []
            for r, u, g, t in zip(rois, labels.split([len(r) for r in rois]), gt_index, targets):
                fg = torch.nonzero(u > 0).flatten()
                pos_rois.append(r[fg])
                pos_labels.append(u[fg])
                pos_targets.append(mask_targets(t["masks"], r[fg], g[fg], cfg.mask_size,
                                                cfg.pool_kernel))
            mask_logits = self.mask_head(head_maps, pos_rois)  # (P, K or K+1, m, m)
            losses["loss_mask"] = mask_loss(mask_logits, torch.cat(pos_labels), torch.cat(pos_targets),
                                            cfg.mask_loss)
            return {**rpn_losses, **losses}

        class_logits, box_deltas = self.box_head(head_maps, proposals)
        detections = detect(class_logits, box_deltas, proposals, sizes, self.box_coder,
                            cfg.score_thresh, cfg.nms_thresh, cfg.detections_per_image, cfg.nms_kernel)
        # the mask branch runs on the final boxes only ("speeds up inference and improves accuracy")
        mask_logits = self.mask_head(head_maps, [d["boxes"] for d in detections])
        for d, logits, size in zip(detections, mask_logits.split([len(d["boxes"]) for d in detections]),
                                   sizes):
            probs = mask_probabilities(logits, d["labels"], cfg.mask_loss)  # (D, m, m)
            d["masks"] = paste_masks(probs, d["boxes"], size)[:, None]  # (D, 1, H, W)
        synchronize(batch.device)
        t3 = time.perf_counter()
        n = len(images)
        for d in detections:
            d["timing"] = {"proposals": (t2 - t1) / n, "backbone": (t1 - t0) / n,
                           "heads": (t3 - t2) / n}
        return detections


def build_mask_rcnn(cfg: MaskRCNNConfig, num_classes: int) -> MaskRCNN:
    """Backbone (+ FPN) + stage 3's RPN + stage 2's box head on RoIAlign + the mask branch."""
    if cfg.fpn:
        backbone = backbone_from_config(cfg, "C5")
        fpn = FPN(backbone.level_channels, cfg.fpn_channels)
        channels = fpn.out_channels
        head_strides = tuple(s / cfg.input_scale for s in (4, 8, 16, 32))
        rpn = RegionProposalNetwork(channels, head_strides + (64 / cfg.input_scale,), cfg,
                                    level_sizes=[(s,) for s in cfg.fpn_anchor_sizes])
    else:
        backbone = backbone_from_config(cfg, "C3")
        fpn, channels, head_strides = None, backbone.out_channels, (STRIDES["C3"] / cfg.input_scale,)
        rpn = RegionProposalNetwork(channels, head_strides, cfg)
    pooler = dict(strides=head_strides, pool=cfg.pool, kernel=cfg.pool_kernel,
                  sampling_ratio=cfg.align_sampling_ratio, reduce=cfg.align_reduce,
                  k0=cfg.fpn_k0, canonical=cfg.fpn_canonical_size)
    box_pooler = MultiLevelPooler(channels, cfg.pool_size, flatten=True, **pooler)
    mask_pooler = MultiLevelPooler(channels, cfg.mask_pool_size, flatten=False, **pooler)
    box_head = FastRCNNHead(box_pooler, num_classes, cfg.fc_dim)
    outputs = num_classes if cfg.mask_loss == "sigmoid" else num_classes + 1
    mask_head = MaskHead(mask_pooler, channels, outputs, cfg.mask_channels, cfg.mask_convs)
    return MaskRCNN(backbone, fpn, rpn, box_head, mask_head, cfg)
