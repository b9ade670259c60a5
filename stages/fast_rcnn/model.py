"""Fast R-CNN (Girshick, ICCV 2015), assembled in plain sight from its parts.

**Reused from stage 1 (R-CNN):** selective-search proposals (the same on-disk cache), the
backbone, fc6/fc7 (``stages.rcnn.cnn.FC6FC7``), the box coding of R-CNN Appendix C
(``stages.ops.BoxCoder``), per-class NMS (the paper's 0.3; ours 0.5, torchvision's: the config says why).
**Replaced:** warping every region and running the CNN on each -> one CNN pass per image and RoI
pooling of each proposal from the shared feature map (sec. 2.1); the post-hoc SVMs and separate
box regressors -> a softmax and class-specific box outputs trained together (sec. 2.3).
**Added:** the multi-task loss (Eq. 1), mini-batches of 2 images x 64 RoIs, SPP pooling as an
alternative (SPP-net, He et al. 2014), selected with ``--pool spp``.

The model is four parts passed to its constructor, ``FastRCNN(backbone, proposer, head, cfg)``:

    images --backbone (once per image)--> features (N, C, H', W'), stride 4 in image pixels
    features --proposer--> proposals, list of N [P_i, 4]      here: the selective-search cache
    features, proposals --FastRCNNHead--> class logits (R, K+1), box offsets (R, 4(K+1))
    train: sample 64 RoIs per image (sampling.py) -> fast_rcnn_loss -> {"loss_cls", "loss_box"}
    test:  detect (softmax, decode, per-class NMS) -> one dict per image

The proposer is any callable ``proposer(features, image_sizes, images, targets=None) ->
(proposals, losses, timing)``: ``losses`` a dict (empty for selective search, which learns
nothing), ``timing`` one dict per image of the seconds to charge it, or None to charge the time
the call took. Stage 3 (Faster R-CNN) is this class with a Region Proposal Network as the proposer,
and nothing else changed; stage 4 adds the mask branch (and FPN) to it.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from stages.backbone import backbone_from_config, batch_images, enlarge
from stages.fast_rcnn.config import FastRCNNConfig
from stages.fast_rcnn.head import FastRCNNHead, detect, fast_rcnn_loss
from stages.fast_rcnn.pooling import build_pooler
from stages.fast_rcnn.sampling import sample_batch
from stages.ops import BoxCoder
from stages.selective_search import ProposalCache
from stages.devices import synchronize


class CachedSelectiveSearch(nn.Module):
    """Stage 1's selective-search proposals, read from the shared cache: stage 2's proposer.

    Selective search runs on the image, not on the features, outside the network. Each image is
    charged the seconds selective search took when it ran (the cache keeps them); ``cache_read``
    is the time actually spent here, which the evaluator swaps for that cost. A module without
    weights, so that it sits where stage 3's RPN sits."""

    def __init__(self, cache: ProposalCache):
        super().__init__()
        self.cache = cache

    def forward(self, features, image_sizes, images: list[torch.Tensor], targets=None):
        boxes, timing = [], []
        for image in images:
            t0 = time.perf_counter()
            b, seconds = self.cache.get(image.cpu())
            boxes.append(b.to(image.device))
            timing.append({"proposals": seconds, "cache_read": time.perf_counter() - t0})
        return boxes, {}, timing


class FastRCNN(nn.Module):
    """``model(images, targets)`` -> losses (train); ``model(images)`` -> detections (eval).

    Detections carry ``timing``: seconds per image of the ``backbone``, the ``proposals`` and the
    ``heads`` (the box head, with its NMS; stage 4 adds the mask branch there); and
    ``num_proposals``, how many proposals the head scored for the image (an int)."""

    def __init__(self, backbone: nn.Module, proposer, head: FastRCNNHead, cfg: FastRCNNConfig):
        super().__init__()
        self.backbone, self.proposer, self.head, self.cfg = backbone, proposer, head, cfg
        self.box_coder = BoxCoder(weights=cfg.box_weights)  # weights = 1 / std of the targets

    def features(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list]:
        """The shared map (N, C, sH/8, sW/8), once per image, and the images' sizes [(H_i, W_i)]."""
        batch, sizes = batch_images(images)  # (N, 3, H, W), padded right and bottom
        batch = enlarge(batch, self.cfg.input_scale)  # (N, 3, sH, sW): the image scale, sec. 5.2
        return self.backbone(batch)[self.backbone.last_level], sizes  # (N, C, sH/8, sW/8)

    def forward(self, images: list[torch.Tensor], targets: list[dict] | None = None):
        if self.training and targets is None:
            raise ValueError(f"in train mode {type(self).__name__} needs targets: model(images, targets)")
        if self.training:  # no clocks: synchronising the device every step would stall it
            features, sizes = self.features(images)
            proposals, proposal_losses, _ = self.proposer(features, sizes, images, targets)
            return {**proposal_losses, **self.roi_losses(features, proposals, targets)}
        t0 = time.perf_counter()
        features, sizes = self.features(images)
        t1 = self._clock(features)
        proposals, _, proposal_timing = self.proposer(features, sizes, images, None)
        t2 = self._clock(features)

        detections = self.predict(features, proposals, sizes)
        t3 = self._clock(features)
        n = len(images)
        for d, p, timing in zip(detections, proposals,
                                proposal_timing or [{"proposals": (t2 - t1) / n}] * n):
            d["num_proposals"] = len(p)  # the RoIs the head scored for this image
            d["timing"] = {"backbone": (t1 - t0) / n, **timing, "heads": (t3 - t2) / n}
        return detections

    def roi_losses(self, features, proposals: list[torch.Tensor], targets: list[dict]) -> dict:
        """Sample RoIs among the proposals (sec. 2.3) and score the head on them: the loss of Eq. 1."""
        rois, gt_labels, gt_box_deltas, _ = sample_batch(proposals, targets, self.cfg, self.box_coder)
        return self.box_losses(features, rois, gt_labels, gt_box_deltas)

    def box_losses(self, features, rois, gt_labels, gt_box_deltas) -> dict:
        pred_class_logits, pred_box_deltas = self.head(features, rois)
        return fast_rcnn_loss(pred_class_logits, pred_box_deltas, gt_labels, gt_box_deltas,
                              self.cfg.loss_lambda, self.cfg.smooth_l1_beta)

    def predict(self, features, proposals: list[torch.Tensor], sizes) -> list[dict]:
        """The head on every proposal, then ``detect``: one dict per image (boxes, labels, scores)."""
        pred_class_logits, pred_box_deltas = self.head(features, proposals)
        cfg = self.cfg
        return detect(pred_class_logits, pred_box_deltas, proposals, sizes, self.box_coder,
                      cfg.score_thresh, cfg.nms_thresh, cfg.detections_per_image, cfg.nms_kernel)

    @staticmethod
    def _clock(features) -> float:
        """The time, once the device has finished the work queued so far."""
        first = features if isinstance(features, torch.Tensor) else features[0]
        synchronize(first.device)
        return time.perf_counter()


def build_fast_rcnn(cfg: FastRCNNConfig, num_classes: int, cache: ProposalCache) -> FastRCNN:
    """Backbone (stride 8) + the selective-search cache + pooler (RoI or SPP) and head."""
    backbone = backbone_from_config(cfg, "C3")
    # the map's stride in the image's own pixels: 8 / 2 = 4 (a 32-cell map for a 128-px image)
    pooler = build_pooler(cfg, backbone.out_channels, backbone.stride / cfg.input_scale)
    head = FastRCNNHead(pooler, num_classes, cfg.fc_dim)
    return FastRCNN(backbone, CachedSelectiveSearch(cache), head, cfg)
