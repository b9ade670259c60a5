"""Mask R-CNN (He et al., ICCV 2017) with a Feature Pyramid Network (Lin et al., CVPR 2017).

**Reused from stage 3 (Faster R-CNN), unchanged:** the detector (``FasterRCNN``, stage 2's class):
the backbone, the RPN, the Fast R-CNN head (fc6, fc7, softmax, class-specific boxes), RoI sampling,
the multi-task loss and detection.
**Replaced:** one part, the pooler: RoI pooling -> RoIAlign (no rounding; ``pooling.py``), for the
box head and the mask branch. With ``--fpn``, the one C3 map -> the FPN pyramid P2..P6 (off by
default: see ``MaskRCNNConfig.fpn``), and the RPN runs on every level (``fpn.PyramidRPN``).
**Added:** the mask branch (a small FCN, one 28 x 28 mask per class, ``mask_head.py``), its loss on
positive RoIs, and mask pasting at test time.

    images (enlarged 2x, as stage 2) --backbone--> C3 alone, as stage 3
                                  or, with --fpn: C2..C5 --> FPN --> P2..P5 (heads), P2..P6 (RPN)
    RPN (stage 3, all levels) --> proposals
    train: sample RoIs (stage 2) -> box head loss; positive RoIs -> mask head -> mask loss
           losses: loss_objectness, loss_rpn_box, loss_cls, loss_box, loss_mask (summed, sec. 3)
    test:  box head -> detect (NMS, top detections) -> mask head on the *final* boxes
           -> the predicted class's mask -> pasted into the image (sec. 3.1 "Inference")

With ``--no-fpn --pool roi`` the detection path is stage 3's, part for part (tests prove it).
"""

from __future__ import annotations

import torch
from torch import nn

from stages.backbone import STRIDES, backbone_from_config, batch_images, enlarge
from stages.fast_rcnn.head import FastRCNNHead
from stages.fast_rcnn.sampling import sample_batch
from stages.faster_rcnn.model import FasterRCNN
from stages.faster_rcnn.rpn import RegionProposalNetwork
from stages.mask_rcnn.config import MaskRCNNConfig
from stages.mask_rcnn.fpn import FPN, PyramidRPN
from stages.mask_rcnn.mask_head import MaskHead, mask_loss, mask_probabilities, mask_targets, paste_masks
from stages.mask_rcnn.pooling import build_pooler


class MaskRCNN(FasterRCNN):
    """``model(images, targets)`` -> losses (train); ``model(images)`` -> detections with masks.

    Stage 3's detector plus ``mask_head`` and, optionally, ``fpn`` (None: the one C3 map)."""

    def __init__(self, backbone: nn.Module, proposer: nn.Module, head: FastRCNNHead,
                 mask_head: MaskHead, cfg: MaskRCNNConfig, fpn: FPN | None = None):
        super().__init__(backbone, proposer, head, cfg)
        self.mask_head, self.fpn = mask_head, fpn

    def features(self, images: list[torch.Tensor]):
        """Stage 3's C3 map, or with FPN the list [P2, P3, P4, P5, P6] (the heads' poolers read
        P2..P5, the RPN all five). And the images' sizes."""
        if self.fpn is None:
            return super().features(images)
        batch, sizes = batch_images(images)
        batch = enlarge(batch, self.cfg.input_scale)  # stage 2's image scale
        return list(self.fpn(self.backbone(batch)).values()), sizes

    def roi_losses(self, features, proposals: list[torch.Tensor], targets: list[dict]) -> dict:
        """Stage 2's RoI sampling and box loss, and L_mask on the same sample's positive RoIs."""
        cfg = self.cfg
        rois, gt_labels, gt_box_deltas, gt_index = sample_batch(proposals, targets, cfg, self.box_coder)
        losses = self.box_losses(features, rois, gt_labels, gt_box_deltas)
        # the mask branch trains on positive RoIs only; the target is the matched gt's mask
        pos_rois, pos_labels, pos_masks = [], [], []
        for r, u, g, t in zip(rois, gt_labels.split([len(r) for r in rois]), gt_index, targets):
            fg = torch.nonzero(u > 0).flatten()
            pos_rois.append(r[fg])
            pos_labels.append(u[fg])
            pos_masks.append(mask_targets(t["masks"], r[fg], g[fg], cfg.mask_size, cfg.pool_kernel))
        pred_mask_logits = self.mask_head(features, pos_rois)  # (P, K or K+1, m, m)
        losses["loss_mask"] = mask_loss(pred_mask_logits, torch.cat(pos_labels), torch.cat(pos_masks),
                                        cfg.mask_loss)
        return losses

    def predict(self, features, proposals: list[torch.Tensor], sizes) -> list[dict]:
        """Stage 2's detections, then the mask branch on the *final* boxes only ("speeds up
        inference and improves accuracy", sec. 3.1): each one's class mask, pasted into the image."""
        detections = super().predict(features, proposals, sizes)
        pred_mask_logits = self.mask_head(features, [d["boxes"] for d in detections])
        per_image = pred_mask_logits.split([len(d["boxes"]) for d in detections])
        for d, logits, size in zip(detections, per_image, sizes):
            probs = mask_probabilities(logits, d["labels"], self.cfg.mask_loss)  # (D, m, m)
            d["masks"] = paste_masks(probs, d["boxes"], size)[:, None]  # (D, 1, H, W)
        return detections


def build_mask_rcnn(cfg: MaskRCNNConfig, num_classes: int) -> MaskRCNN:
    """Stage 3's parts with RoIAlign in the pooler, plus the mask branch (and FPN with ``--fpn``)."""
    if cfg.fpn:
        backbone = backbone_from_config(cfg, "C5")
        fpn = FPN(backbone.level_channels, cfg.fpn_channels)
        channels = fpn.out_channels
        head_strides = tuple(s / cfg.input_scale for s in (4, 8, 16, 32))  # P2..P5 in image pixels
        rpn = PyramidRPN(channels, head_strides + (64 / cfg.input_scale,), cfg, cfg.fpn_anchor_sizes)
    else:  # stage 3's map and RPN
        backbone = backbone_from_config(cfg, "C3")
        fpn, channels, head_strides = None, backbone.out_channels, (STRIDES["C3"] / cfg.input_scale,)
        rpn = RegionProposalNetwork(channels, head_strides[0], cfg)
    box_pooler = build_pooler(cfg, channels, head_strides, cfg.pool_size)  # RoIAlign: the swap
    head = FastRCNNHead(box_pooler, num_classes, cfg.fc_dim)  # stage 2's head
    mask_pooler = build_pooler(cfg, channels, head_strides, cfg.mask_pool_size)
    outputs = num_classes if cfg.mask_loss == "sigmoid" else num_classes + 1
    mask_head = MaskHead(mask_pooler, channels, outputs, cfg.mask_channels, cfg.mask_convs)
    return MaskRCNN(backbone, rpn, head, mask_head, cfg, fpn)
