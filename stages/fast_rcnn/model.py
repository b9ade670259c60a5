"""Fast R-CNN (Girshick, ICCV 2015), assembled in plain sight from its parts.

**Reused from stage 1 (R-CNN):** selective-search proposals (the same on-disk cache), the box
coding of R-CNN Appendix C (``stages.ops.BoxCoder``), per-class NMS at 0.3.
**Replaced:** warping every region and running the CNN on each -> one CNN pass per image and RoI
pooling of each proposal from the shared feature map (sec. 2.1); the post-hoc SVMs and separate
box regressors -> a softmax and class-specific box outputs trained together (sec. 2.3).
**Added:** the multi-task loss (Eq. 1), mini-batches of 2 images x 64 RoIs, SPP pooling as an
alternative (SPP-net, He et al. 2014), selected with ``--pool spp``.

    images --backbone (once per image)--> features (N, C, H/8, W/8)
    images --selective search (cached)--> proposals, list of N [P_i, 4]
    features, proposals --FastRCNNHead--> class logits (R, K+1), box offsets (R, 4(K+1))
    train: sample 64 RoIs per image (sampling.py) -> fast_rcnn_loss -> {"loss_cls", "loss_box"}
    test:  detect (softmax, decode, per-class NMS) -> one dict per image
"""

from __future__ import annotations

import time

import torch
from torch import nn

from stages.backbone import backbone_from_config, batch_images, enlarge
from stages.training.device import synchronize
from stages.fast_rcnn.config import FastRCNNConfig
from stages.fast_rcnn.head import FastRCNNHead, build_pooler, detect, fast_rcnn_loss
from stages.fast_rcnn.sampling import sample_batch
from stages.ops import BoxCoder
from stages.selective_search import ProposalCache


class SelectiveSearchProposer:
    """Proposals for a list of images from the selective-search cache (stage 1's, shared).

    Returns ``(boxes per image, seconds per image, cache-read seconds per image)``: ``seconds`` is
    the time selective search took when it ran (the evaluator charges it), ``cache-read`` the
    time actually spent here."""

    def __init__(self, cache: ProposalCache):
        self.cache = cache

    def __call__(self, images: list[torch.Tensor]):
        boxes, seconds, reads = [], [], []
        for image in images:
            t0 = time.perf_counter()
            b, s = self.cache.get(image.cpu())
            boxes.append(b.to(image.device))
            seconds.append(s)
            reads.append(time.perf_counter() - t0)
        return boxes, seconds, reads


class FastRCNN(nn.Module):
    """``model(images, targets)`` -> losses (train); ``model(images)`` -> detections (eval)."""

    def __init__(self, backbone: nn.Module, head: FastRCNNHead, proposer, cfg: FastRCNNConfig):
        super().__init__()
        self.backbone, self.head, self.proposer, self.cfg = backbone, head, proposer, cfg
        self.box_coder = BoxCoder(weights=cfg.box_weights)  # weights = 1 / std of the targets

    def features(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list]:
        """The shared map (N, C, sH/8, sW/8), once per image, and the images' sizes [(H_i, W_i)]."""
        batch, sizes = batch_images(images)  # (N, 3, H, W), padded right and bottom
        batch = enlarge(batch, self.cfg.input_scale)  # (N, 3, sH, sW): the image scale, sec. 5.2
        return self.backbone(batch)[self.backbone.last_level], sizes  # (N, C, sH/8, sW/8)

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError("in train mode Fast R-CNN needs targets: model(images, targets)")
        proposals, ss_seconds, read_seconds = self.proposer(images)
        t0 = time.perf_counter()
        features, sizes = self.features(images)

        if self.training:
            rois, labels, box_targets, _ = sample_batch(proposals, targets, self.cfg, self.box_coder)
            class_logits, box_deltas = self.head(features, rois)
            return fast_rcnn_loss(class_logits, box_deltas, labels, box_targets,
                                  self.cfg.loss_lambda, self.cfg.smooth_l1_beta)

        class_logits, box_deltas = self.head(features, proposals)
        detections = detect(class_logits, box_deltas, proposals, sizes, self.box_coder,
                            self.cfg.score_thresh, self.cfg.nms_thresh, self.cfg.detections_per_image,
                            self.cfg.nms_kernel)
        synchronize(features.device)
        network = (time.perf_counter() - t0) / len(images)
        for d, s, r in zip(detections, ss_seconds, read_seconds):
            d["timing"] = {"proposals": s, "cache_read": r, "network": network}
        return detections


def build_fast_rcnn(cfg: FastRCNNConfig, num_classes: int, cache: ProposalCache) -> FastRCNN:
    """Backbone (stride 8) + pooler (RoI or SPP) + head, wired to the selective-search cache."""
    backbone = backbone_from_config(cfg, "C3")
    # the map's stride in the image's own pixels: 8 / 2 = 4 (a 32-cell map for a 128-px image)
    pooler = build_pooler(cfg, backbone.out_channels, backbone.stride / cfg.input_scale)
    head = FastRCNNHead(pooler, num_classes, cfg.fc_dim)
    return FastRCNN(backbone, head, SelectiveSearchProposer(cache), cfg)
