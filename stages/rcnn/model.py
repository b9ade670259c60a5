"""The R-CNN detector assembled from its parts: proposals -> warp -> CNN -> SVMs -> NMS -> boxes.

Paper: R-CNN sec. 2.2 "Test-time detection" and Appendix C. For each image:

    1. proposals   boxes [R, 4] from selective search or sliding windows     timing "proposals"
    2. regions     each box dilated by the context, warped to S x S          \\
    3. CNN         pool5 [R, F] and fc7 [R, D] of every region               / timing "cnn"
    4. score       every region with every class's SVM: margins [R, K]        \\
    5. NMS         greedy, per class, at IoU 0.3 (sec. 2.2)                    | timing "svm_bbox"
    6. regress     each kept box of class k with class k's regressor (App. C)  |
    7. keep        the top ``detections_per_image`` by score                 /

Scores: an SVM margin m is reported as sigmoid(m). The sigmoid is monotone, so rankings and AP
are those of the margins; it puts the SVM's own decision boundary m = 0 at 0.5, the threshold the
prediction figures draw at. With ``--classifier softmax`` the score is the fine-tuned network's
softmax probability of the class (Appendix B's comparison).

``model(images)`` in ``eval()`` mode is the shared model call (``stages.evaluation.evaluate``): one dict per
image with ``boxes`` [D, 4], ``labels`` [D], ``scores`` [D], ``num_proposals`` (R, the regions
scored) and ``timing`` (seconds per part).
R-CNN does not train end to end: it trains in separate phases (``stages.rcnn.train``), so the
call in ``train()`` mode raises an error that says so.

Shapes: R proposals, K classes, D detections. The model holds the CNN as its only submodule
(``state_dict()`` = the CNN's weights); the SVMs and regressors are plain tensors that the
checkpoint stores in ``extra`` (``to_tensors``).
"""

from __future__ import annotations

import dataclasses
import time

import torch
from torch import Tensor, nn

from stages.backbone import backbone_from_config
from stages.training.checkpoint import CheckpointError
from stages.ops import batched_nms, clip_boxes_to_image
from stages.rcnn.bbox_regression import BoxRegressors
from stages.rcnn.cnn import RegionCNN, extract_features
from stages.rcnn.config import RCNNConfig
from stages.rcnn.regions import crop_regions, normalize
from stages.rcnn.svm import ClassSVMs
from stages.devices import synchronize


class RCNN(nn.Module):
    """R-CNN, assembled in plain sight from a proposer, a CNN, SVMs and box regressors.

    Args:
        cfg: the config (warp size, context, NMS threshold, classifier, box regression on/off).
        proposer: image [3, H, W] -> boxes [R, 4] (``proposers.make_proposer``).
        cnn: the fine-tuned ``RegionCNN``.
        svms: trained ``ClassSVMs`` (needed with ``classifier="svm"``).
        regressors: trained ``BoxRegressors`` (needed with ``bbox_reg=True``).
    """

    def __init__(self, cfg: RCNNConfig, proposer, cnn: RegionCNN, svms: ClassSVMs | None = None,
                 regressors: BoxRegressors | None = None):
        super().__init__()
        if cfg.classifier == "svm" and svms is None:
            raise ValueError("classifier='svm' needs trained SVMs (stages.rcnn.train)")
        if cfg.bbox_reg and regressors is None:
            raise ValueError("bbox_reg=True needs trained box regressors (stages.rcnn.train)")
        self.cfg, self.proposer, self.cnn = cfg, proposer, cnn
        self.svms, self.regressors = svms, regressors

    @property
    def num_classes(self) -> int:
        return self.cnn.cls_score.out_features - 1

    def _apply(self, fn, recurse: bool = True):
        """``model.to(device)`` moves the CNN (a submodule) and, here, the SVMs' and regressors'
        plain tensors, so that steps 4-6 score and regress on the model's device."""
        super()._apply(fn, recurse)
        if self.svms is not None:
            self.svms = dataclasses.replace(self.svms, weight=fn(self.svms.weight),
                                            bias=fn(self.svms.bias))
        if self.regressors is not None:
            self.regressors = dataclasses.replace(self.regressors, weight=fn(self.regressors.weight),
                                                  bias=fn(self.regressors.bias))
        return self

    def forward(self, images: list[Tensor], targets=None) -> list[dict]:
        if self.training or targets is not None:
            raise RuntimeError(
                "R-CNN is not trained end to end: as in its paper it trains in separate phases "
                "(fine-tune the CNN, then the SVMs, then the box regressors) with "
                "stages.rcnn.train_rcnn(...). Call model.eval() and model(images) to detect.")
        return [self.detect(image) for image in images]

    def score_regions(self, features: dict) -> Tensor:
        """Step 4: class scores [R, K] in (0, 1) for every region (see the module docstring)."""
        if self.cfg.classifier == "svm":
            return torch.sigmoid(self.svms.scores(features["fc7"]))  # (R, K) margins -> (0, 1)
        return torch.softmax(features["logits"], dim=1)[:, 1:]  # (R, K+1) -> (R, K) drop bg

    @torch.no_grad()
    def detect(self, image: Tensor, return_steps: bool = False) -> dict:
        """Detections of one image [3, H, W]. ``return_steps=True`` adds every intermediate
        result under ``steps`` (the notebook pictures them)."""
        H, W = image.shape[-2:]
        K = self.num_classes
        t0 = time.perf_counter()
        proposals = self.proposer(image).to(image.device)  # (R, 4)
        t1 = time.perf_counter()
        regions = crop_regions(normalize(image), proposals, self.cfg.warp_size,
                               self.cfg.context_pad_pixels)  # (R, 3, S, S)
        features = extract_features(self.cnn, regions, self.cfg.feature_batch)  # pool5, fc7
        synchronize(image.device)  # a GPU's queued work done: the clock measures it
        t2 = time.perf_counter()

        scores = self.score_regions(features)  # (R, K)
        R = len(proposals)
        # every (region, class) pair is a candidate detection: R*K of them
        cand_boxes = proposals[:, None, :].expand(R, K, 4).reshape(-1, 4)  # (R, K, 4) -> (R*K, 4)
        cand_scores = scores.reshape(-1)  # (R*K,)
        cand_labels = torch.arange(1, K + 1, device=image.device).repeat(R)  # (R*K,) 1..K, 1..K, ...
        cand_region = torch.arange(R, device=image.device).repeat_interleave(K)  # (R*K,) which region
        keep = batched_nms(cand_boxes, cand_scores, cand_labels, self.cfg.nms_thresh)  # (D',) by score
        keep = keep[: self.cfg.detections_per_image]  # (D,)
        boxes, labels = cand_boxes[keep], cand_labels[keep]
        before_regression = boxes
        if self.cfg.bbox_reg and len(keep):
            boxes = self.regressors.apply(boxes, features["pool5"][cand_region[keep]], labels)
            boxes = clip_boxes_to_image(boxes, (H, W))
        synchronize(image.device)
        t3 = time.perf_counter()

        out = {"boxes": boxes, "labels": labels, "scores": cand_scores[keep], "num_proposals": R,
               "timing": {"proposals": t1 - t0, "cnn": t2 - t1, "svm_bbox": t3 - t2}}
        if return_steps:
            out["steps"] = {"proposals": proposals, "regions": regions, "scores": scores,
                            "candidates": (cand_boxes, cand_scores, cand_labels),
                            "before_regression": before_regression}
        return out

    def extra_tensors(self) -> dict:
        """What the checkpoint stores besides the CNN: the SVMs and the regressors, as tensors."""
        return {"svm": self.svms.to_tensors() if self.svms is not None else None,
                "bbox_regressors": (self.regressors.to_tensors() if self.regressors is not None
                                    else None)}


def build_region_cnn(cfg: RCNNConfig, num_classes: int) -> RegionCNN:
    """The CNN that ``cfg`` describes, untrained."""
    return RegionCNN(num_classes, backbone_from_config(cfg, "C3"), cfg.fc_dim, cfg.warp_size, cfg.pool_size,
                     cfg.dropout)


def load_region_cnn(state: dict, cfg: RCNNConfig) -> RegionCNN:
    """The fine-tuned CNN of a loaded checkpoint; a ``CheckpointError`` naming the file if its
    weights do not fit the CNN that ``cfg`` describes (an older version's, for one)."""
    cnn = build_region_cnn(cfg, len(state["class_names"]) - 1)
    try:
        cnn.load_state_dict(state["model"])
    except RuntimeError as e:  # weights of other names or shapes: another version, other flags
        raise CheckpointError(
            f"{state.get('path', 'the checkpoint')}: its CNN does not fit this R-CNN (written by "
            f"an older version, whose CNN was smaller?): {str(e).splitlines()[0]}; train afresh"
        ) from None
    return cnn.eval()


def model_from_checkpoint(state: dict, cfg: RCNNConfig, proposer) -> RCNN:
    """Rebuild an RCNN from a loaded checkpoint (``stages.training.checkpoint.load_checkpoint``).

    ``state["model"]`` holds the CNN's weights, ``state["extra"]`` the SVMs and the regressors
    (absent from a checkpoint written before they were trained)."""
    cnn = load_region_cnn(state, cfg)
    extra = state.get("extra") or {}
    svms = ClassSVMs.from_tensors(extra["svm"]) if extra.get("svm") else None
    regressors = (BoxRegressors.from_tensors(extra["bbox_regressors"])
                  if extra.get("bbox_regressors") else None)
    return RCNN(cfg, proposer, cnn, svms, regressors).eval()


def phases_done(state: dict) -> list[str]:
    """The phases a loaded R-CNN checkpoint holds: [], ["cnn"] or ["cnn", "svm_bbox"].

    R-CNN trains in separate phases, as the paper does (sec. 2.3): the CNN is fine-tuned, then the
    SVMs and box regressors are fitted on its features. A checkpoint written before they were
    called phases keeps the list under "steps_done"; it is read the same."""
    extra = state.get("extra") or {}
    return list(extra.get("phases_done", extra.get("steps_done", [])))
