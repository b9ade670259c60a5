"""Faster R-CNN's settings: the Fast R-CNN head's (inherited, unchanged) plus the RPN's.

Defaults are the paper's values (Ren et al. 2015), scaled to our 128-pixel images, and said so.
Every field is a command-line flag (``--anchor-sizes 16 32 64``, ``--rpn-post-nms-test 300``...).
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.fast_rcnn.config import FastRCNNConfig


@dataclass(frozen=True)
class FasterRCNNConfig(FastRCNNConfig):
    # --- anchors (sec. 3.1.1): paper 128, 256, 512 px on ~600-px images, stride 16; ours on
    #     128-px images with 12-56 px objects, stride 4 in image pixels (see anchors.py) ---
    anchor_sizes: tuple = (16, 32, 64)
    anchor_ratios: tuple = (0.5, 1.0, 2.0)  # height / width: 1:2, 1:1, 2:1
    # --- anchor labels and sampling (sec. 3.1.2, 3.1.3) ---
    rpn_pos_iou: float = 0.7  # an anchor with IoU >= this with a ground-truth box is positive
    rpn_neg_iou: float = 0.3  # an anchor with IoU < this with every ground-truth box is negative
    rpn_batch: int = 256  # anchors per image in the loss
    rpn_pos_fraction: float = 0.5  # up to 1:1 positive:negative
    # The paper ignores anchors that cross the image border in training (sec. 3.3). On 128-px
    # images a 64-px anchor fits only when its centre is 32 px from every border: 2/3 of those
    # anchors would be ignored, and objects at the border keep few positives. Off by default
    # (torchvision's choice too); --ignore-cross-boundary follows the paper.
    ignore_cross_boundary: bool = False
    # --- RPN loss (Eq. 1): lambda / N_reg ~ 1 / N_cls, as the paper's 10 / 2400 ~ 1 / 256 (see
    #     rpn.rpn_loss). Our map: 32 x 32 = 1024 locations (C3 of the 2x image): lambda = 4.
    #     Measured, 120 s: lambda 1 box AP 59.7, lambda 4 61.5 ---
    rpn_lambda: float = 4.0
    rpn_beta: float = 1 / 9  # smooth L1 switch point: sigma = 3 in py-faster-rcnn's RPN loss
    # --- proposal layer (sec. 3.3): paper ~20000 anchors per image -> NMS 0.7 -> 2000 (train) /
    #     top 300 (test); our 32 x 32 x 9 = 9216 anchors: top 1000 before NMS, 300 after ---
    rpn_pre_nms_train: int = 1000  # training: the best-scoring anchors decoded per image
    rpn_post_nms_train: int = 300  # training: proposals kept after NMS (paper 2000)
    rpn_pre_nms_test: int = 1000  # test: the best-scoring anchors decoded per image
    rpn_post_nms_test: int = 300  # test: proposals kept after NMS (paper: top 300)
    rpn_nms: float = 0.7  # IoU threshold of the NMS between proposals (sec. 3.3)
    rpn_min_size: float = 2.0  # pixels; py-faster-rcnn drops proposals under 16 px on 600-px images
    # --- the detection head: Fast R-CNN's fields above, unchanged (its nms_kernel included) ---
    # --- optimisation: approximate joint training (sec. 3.2), all losses summed; stage 2's
    #     optimiser and rate (FastRCNNConfig) ---
