"""Mask R-CNN's settings: stage 3's (RPN + Fast R-CNN head, inherited) plus FPN, RoIAlign and masks.

Defaults are the papers' values (He et al. 2017; Lin et al. 2017 for FPN), scaled to our 128-pixel
images where they must be, and said so. Every field is a command-line flag; the ablations of the
paper's Table 2 are switches: ``--pool roi|align``, ``--mask-loss sigmoid|softmax``, ``--no-fpn``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stages.faster_rcnn.config import FasterRCNNConfig


@dataclass(frozen=True)
class MaskRCNNConfig(FasterRCNNConfig):
    # --- RoI features (sec. 3): RoIAlign, 2 x 2 sampling points per bin, no rounding. --pool
    #     roi is stage 2's RoI max pooling, the same module (stages.mask_rcnn.pooling) ---
    pool: Literal["align", "roi"] = "align"  # align: RoIAlign | roi: RoIPool (Table 2c's ablation, both branches)
    align_sampling_ratio: int = 2  # "four regularly sampled locations" per bin
    align_reduce: Literal["mean", "max"] = "mean"  # mean | max over a bin's sample points (the paper allows both)
    # --- FPN (Lin et al. 2017, sec. 3-4): P2..P5 for the heads, P6 for the RPN. Off by default:
    #     measured, 120 s from ImageNet weights, one level (C3 of the 2x image, stride 4 in image
    #     pixels, as stage 3) box / mask AP 68.8 / 70.4 in 883 steps; the pyramid on the 2x image
    #     44.8 / 46.9 in 424 steps; on the image as it is (--fpn --input-scale 1, P2 at stride 4)
    #     49.5 / 49.6 in 652 steps. Our objects span 12-56 px, a 5x range: one fine map serves
    #     them all, and in a 2-minute budget the pyramid's cost (C4, C5, five RPN levels) buys
    #     fewer steps, not better features. The paper's own ablations (Table 2c) use one level too
    #     (ResNet-50-C4). --fpn builds the pyramid ---
    fpn: bool = False  # --fpn: C2..C5 -> P2..P6; default one level (C3), as stage 3
    fpn_channels: int = 64  # the paper's d = 256; our backbone's widest map has 160 channels
    # FPN Eq. 1: k = floor(k0 + log2(sqrt(w h) / canonical)), clamped to 2..5. The paper's
    # canonical 224 px (ImageNet's size, k0 = 4) would put every one of our 12-56 px objects on P2.
    # With 56 px and --input-scale 1, RoIs under 28 px read P2 (stride 4), 28-55 px P3, 56-111 px P4
    # (at the default 2x the pyramid's strides halve in image pixels and each range reads one level up):
    # each RoI then spans 3.5 to 7 cells of its level, and our objects spread over P2..P4.
    fpn_k0: int = 4  # the level of an RoI of the canonical size (FPN Eq. 1)
    fpn_canonical_size: float = 56.0  # pixels: an RoI this size reads level k0 (paper: 224)
    # RPN anchors per level (FPN sec. 4.1): one size per level, 32^2..512^2 on P2..P6 in the paper
    # (8 x the stride... our objects are smaller): 16..256 px, 4 x the stride; 3 ratios each.
    fpn_anchor_sizes: tuple = (16, 32, 64, 128, 256)
    # RPN loss balance (rpn.rpn_loss: lambda / N_reg ~ 1 / N_cls): stage 3's lambda = 4 for one
    # 32 x 32 map. With --fpn --input-scale 1, P2..P6 have 32^2 + 16^2 + 8^2 + 4^2 + 2^2 = 1364
    # anchor locations: --rpn-lambda 5
    # --- mask branch (sec. 3, Figure 4 right): 14 x 14 RoIAlign -> 4 convs -> 2x deconv -> 28 x 28 ---
    mask_pool_size: int = 14
    mask_convs: int = 4  # 3 x 3 convs before the deconvolution (the paper's 4)
    mask_channels: int = 32  # the paper's 256; 64 made a training step 1.3x slower on our CPU
    mask_size: int = 28  # m = 28 for the FPN head
    mask_loss: Literal["sigmoid", "softmax"] = "sigmoid"  # sigmoid: per-class binary masks (the paper) | softmax (Table 2b)
    # (sec. 3.1 "Inference": masks are binarised at 0.5: the model returns probabilities, pasted
    # into the image, and the evaluator thresholds them at 0.5)
    # --- the box head on FPN (sec. 4.2 of FPN: 2 x 1024-d fc; our 256 as in stages 2-3) ---
    detections_per_image: int = 50  # the paper's 100; our images hold at most 6 objects

