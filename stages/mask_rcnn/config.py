"""Mask R-CNN's settings: stage 3's (RPN + Fast R-CNN head, inherited) plus FPN, RoIAlign and masks.

Defaults are the papers' values (He et al. 2017; Lin et al. 2017 for FPN), scaled to our 128-pixel
images where they must be, and said so. Every field is a command-line flag; the ablations of the
paper's Table 2 are switches: ``--pool roi|align``, ``--mask-loss sigmoid|softmax``, ``--no-fpn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stages.fast_rcnn.config import Pool
from stages.flags import param
from stages.faster_rcnn.config import FasterRCNNConfig


@dataclass(frozen=True)
class MaskRCNNConfig(FasterRCNNConfig):
    SUPPORTED = {"pool": ("align", "roi")}  # stage 4 builds RoIAlign and stage 2's RoIPool; no SPP

    # --- RoI features (sec. 3): RoIAlign, 2 x 2 sampling points per bin, no rounding. --pool roi
    #     is stage 2's RoI max pooling, the same module (stages.mask_rcnn.pooling) ---
    pool: Pool = param("align", paper="RoIAlign (sec. 3)",
                       help="align: RoIAlign | roi: RoIPool (Table 2c's ablation, both branches)")
    align_sampling_ratio: int = param(2, paper="\"four regularly sampled locations\" per bin (sec. 3)",
                                      help="sampling points per bin side")
    align_reduce: Literal["mean", "max"] = param("mean", paper="either (sec. 3)", help="mean | max over a bin's sample points")
    # --- FPN (Lin et al. 2017, sec. 3-4): P2..P5 for the heads, P6 for the RPN. Off by default:
    #     our objects span 12-56 px, a 5x range: one fine map serves them all, and in a 2-minute
    #     budget the pyramid's cost (C4, C5, five RPN levels) buys fewer steps, not better
    #     features. The paper's own ablations (Table 2c) use one level too (ResNet-50-C4) ---
    fpn: bool = param(False, paper="ResNet-FPN; its ablations of Table 2c: one level (C4)", measured="section 17",
                      help="C2..C5 -> P2..P6 (--no-fpn: one level, C3, as stage 3)")
    fpn_channels: int = param(64, paper="d = 256 (FPN sec. 3)",
                              help="the pyramid's width (our backbone's widest map has 160 channels)")
    # FPN Eq. 1: k = floor(k0 + log2(sqrt(w h) / canonical)), clamped to 2..5. The paper's
    # canonical 224 px (ImageNet's size, k0 = 4) would put every one of our 12-56 px objects on P2.
    # With 56 px and --input-scale 1, RoIs under 28 px read P2 (stride 4), 28-55 px P3, 56-111 px P4
    # (at the default 2x the pyramid's strides halve in image pixels and each range reads one level up):
    # each RoI then spans 3.5 to 7 cells of its level, and our objects spread over P2..P4.
    fpn_k0: int = param(4, paper="k0 = 4 (FPN Eq. 1)", help="the level of an RoI of the canonical size")
    fpn_canonical_size: float = param(56.0, paper="224 (FPN Eq. 1)", help="pixels: an RoI this size reads level k0")
    # 4 x the stride here (8 x in the paper): our objects are smaller; 3 ratios at each level
    fpn_anchor_sizes: tuple = param((16, 32, 64, 128, 256), paper="32^2..512^2 px on P2..P6 (FPN sec. 4.1)",
                                    help="--fpn: the RPN's anchor side on P2..P6, one per level")
    # RPN loss balance (rpn.rpn_loss: lambda / N_reg ~ 1 / N_cls): stage 3's lambda = 4 for one
    # 32 x 32 map. With --fpn --input-scale 1, P2..P6 have 32^2 + 16^2 + 8^2 + 4^2 + 2^2 = 1364
    # anchor locations: --rpn-lambda 5
    # --- mask branch (sec. 3, Figure 4 right): 14 x 14 RoIAlign -> 4 convs -> 2x deconv -> 28 x 28 ---
    mask_pool_size: int = param(14, paper="14 x 14 (Figure 4 right)", help="the side of the mask branch's RoIAlign")
    mask_convs: int = param(4, paper="4 (Figure 4 right)", help="3 x 3 convs before the deconvolution")
    mask_channels: int = param(32, paper="256 (Figure 4 right)",
                               help="the mask branch's width (64 made a training step 1.3x slower on our CPU)")
    mask_size: int = param(28, paper="m = 28 (sec. 3)", help="m: the side of a predicted mask")
    mask_loss: Literal["sigmoid", "softmax"] = param(
        "sigmoid", paper="per-pixel sigmoid, binary loss (sec. 3)",
        help="sigmoid: per-class binary masks | softmax: masks compete (Table 2b)")
    # (sec. 3.1 "Inference": masks are binarised at 0.5: the model returns probabilities, pasted
    # into the image, and the evaluator thresholds them at 0.5)
    # --- the box head on FPN (sec. 4.2 of FPN: 2 x 1024-d fc; ours too, as in stages 2-3) ---
    detections_per_image: int = param(50, paper="100 (sec. 3.1)",
                                      help="the best-scoring ones kept per image (our images hold at most 6 objects)")

