"""Faster R-CNN's settings: the Fast R-CNN head's (inherited, unchanged) plus the RPN's.

Defaults are the paper's values (Ren et al. 2015), scaled to our 128-pixel images, and said so.
Every field is a command-line flag (``--anchor-sizes 16 32 64``, ``--rpn-post-nms-test 300``...).
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.fast_rcnn.config import FastRCNNConfig
from stages.flags import param


@dataclass(frozen=True)
class FasterRCNNConfig(FastRCNNConfig):
    # --- anchors (sec. 3.1.1): ours on 128-px images with 12-56 px objects, stride 4 in image
    #     pixels (see anchors.py) ---
    anchor_sizes: tuple = param((16, 32, 64), paper="128, 256, 512 px on ~600-px images, stride 16 (sec. 3.1.1)",
                                help="anchor sides, pixels (sqrt of the area)")
    anchor_ratios: tuple = param((0.5, 1.0, 2.0), paper="1:1, 1:2, 2:1 (sec. 3.1.1)", help="height / width: 1:2, 1:1, 2:1")
    # --- anchor labels and sampling (sec. 3.1.2, 3.1.3) ---
    rpn_pos_iou: float = param(0.7, paper="0.7 (sec. 3.1.2)", help="positive: IoU >= this with a ground-truth box")
    rpn_neg_iou: float = param(0.3, paper="0.3 (sec. 3.1.2)", help="negative: IoU < this with every ground-truth box")
    rpn_batch: int = param(256, paper="256 (sec. 3.1.3)", help="anchors per image in the loss")
    rpn_pos_fraction: float = param(0.5, paper="up to 1:1 positive:negative (sec. 3.1.3)",
                                    help="the share of positive anchors, at most")
    # On 128-px images a 64-px anchor fits only when its centre is 32 px from every border: 2/3
    # of those anchors would be ignored, and objects at the border keep few positives. Off by
    # default (torchvision's choice too); --ignore-cross-boundary follows the paper.
    ignore_cross_boundary: bool = param(False, paper="ignored (sec. 3.3)",
                                        help="ignore the anchors that cross the image border in training")
    # --- RPN loss (Eq. 1): lambda / N_reg ~ 1 / N_cls, as the paper's 10 / 2400 ~ 1 / 256 (see
    #     rpn.rpn_loss). Our map: 32 x 32 = 1024 locations (C3 of the 2x image): lambda = 4 ---
    rpn_lambda: float = param(4.0, paper="lambda = 10 with N_reg ~ 2400 (Eq. 1)", measured="section 17",
                              help="lambda: the weight of the RPN's box loss")
    rpn_beta: float = param(1 / 9, paper="smooth L1 of Fast R-CNN (Eq. 1)",
                            help="smooth L1 switch point: sigma = 3 in py-faster-rcnn's RPN loss")
    # --- proposal layer (sec. 3.3): our 32 x 32 x 9 = 9216 anchors: top 1000 before NMS, 300 after ---
    rpn_pre_nms_train: int = param(1000, paper="all ~20000 anchors (sec. 3.3)",
                                   help="training: the best-scoring anchors decoded per image")
    rpn_post_nms_train: int = param(300, paper="2000 (sec. 3.3)", help="training: proposals kept after NMS")
    rpn_pre_nms_test: int = param(1000, paper="all ~20000 anchors (sec. 3.3)",
                                  help="test: the best-scoring anchors decoded per image")
    rpn_post_nms_test: int = param(300, paper="top 300 (sec. 3.3, 4.1)", help="test: proposals kept after NMS")
    rpn_nms_thresh: float = param(0.7, paper="0.7 (sec. 3.3)", help="IoU threshold of the NMS between proposals")
    rpn_min_size: float = param(2.0, paper="py-faster-rcnn: 16 px on 600-px images", help="pixels: smaller proposals are dropped")
    # --- the detection head: Fast R-CNN's fields above, unchanged (its nms_kernel included) ---
    # --- optimisation: approximate joint training (sec. 3.2), all losses summed; the shared
    #     recipe (stages.recipe.Recipe) ---
