"""An adapter: any torchvision ``GeneralizedRCNN`` behind this repo's model contract.

``TorchvisionDetector(model)`` returns losses in train mode and detections with a "timing" dict in
eval mode, as our stages do, so ``engine.train`` and ``evaluate`` run torchvision's Faster / Mask
R-CNN (the fine-tuned one of ``finetune``, the peers of ``peer_models``) like one of our stages.
Targets: our dataset items' dicts, converted by ``torchvision_target`` (crowds dropped).

Timing (eval mode), per image, in seconds, the same split our stages report: "proposals" = the RPN
module's forward (anchors, objectness, decoding, NMS), measured by a forward pre-hook / hook pair
on ``model.rpn``; "network" = everything else in the call: resize and batching, backbone (+ FPN),
box and mask heads, post-processing. The backbone is charged to "network" although the RPN needs
it, as in our Faster R-CNN, where the RPN shares it with the head.

Shape shorthand: N images, K object classes, D detections per image.
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from stages.devices import synchronize


class TorchvisionDetector(nn.Module):
    """Any torchvision ``GeneralizedRCNN`` (Faster / Mask R-CNN) as one of our stage models.

    train mode: ``model(images, targets)`` -> torchvision's losses {"loss_objectness",
        "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"[, "loss_mask"]}; targets are our
        dataset items' dicts (see ``torchvision_target``).
    eval mode: ``model(images)`` -> per image {"boxes" [D, 4], "labels" [D] in 1..K, "scores" [D],
        ["masks" [D, 1, H, W] probabilities,] "timing": {"proposals": s, "network": s}}
        (the timing split: module docstring).
    Its state_dict is the wrapped model's with a "model." prefix; ``get_instance_segmentation_model``
    reads such a file back.
    """

    def __init__(self, model: GeneralizedRCNN):
        super().__init__()
        self.model = model
        self._rpn_start = self._rpn_seconds = 0.0
        model.rpn.register_forward_pre_hook(self._start_rpn_clock)
        model.rpn.register_forward_hook(self._stop_rpn_clock)

    @property
    def has_mask(self) -> bool:
        return self.model.roi_heads.has_mask()

    def torchvision_target(self, target: dict) -> dict:
        """Our target -> torchvision's: boxes float [N, 4], labels int64 [N], masks uint8 [N, H, W]
        (only for a model with a mask head: torchvision would resize them for nothing otherwise).
        Crowd objects (iscrowd = 1) are dropped: torchvision would train on them as objects."""
        keep = target["iscrowd"] == 0 if "iscrowd" in target else slice(None)
        out = {"boxes": target["boxes"][keep].float(), "labels": target["labels"][keep].long()}
        if self.has_mask:
            if "masks" not in target:
                raise ValueError("a Mask R-CNN trains on masks: this target has none")
            out["masks"] = target["masks"][keep].to(torch.uint8)
        return out

    def forward(self, images, targets=None):
        images = list(images)
        if self.training:
            if targets is None:
                raise ValueError("in train mode the model needs targets: model(images, targets)")
            return self.model(images, [self.torchvision_target(t) for t in targets])
        if not images:
            return []
        device = images[0].device
        self._rpn_seconds = 0.0
        synchronize(device)
        t0 = time.perf_counter()
        outputs = self.model(images)  # transform, backbone, rpn (timed by the hooks), roi_heads, postprocess
        synchronize(device)
        total = time.perf_counter() - t0
        N = len(images)  # one call for the batch: each image is charged an equal share
        timing = {"proposals": self._rpn_seconds / N, "network": (total - self._rpn_seconds) / N}
        return [{**out, "timing": dict(timing)} for out in outputs]

    # the RPN's clock; in train mode it is not read, and no GPU synchronisation slows training
    def _start_rpn_clock(self, module, inputs):
        if not self.training:
            synchronize(inputs[0].tensors.device)  # inputs = (ImageList, features[, targets])
            self._rpn_start = time.perf_counter()

    def _stop_rpn_clock(self, module, inputs, output):
        if not self.training:
            synchronize(inputs[0].tensors.device)
            self._rpn_seconds += time.perf_counter() - self._rpn_start
