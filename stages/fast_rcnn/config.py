"""Fast R-CNN's settings: one frozen dataclass, defaults = the paper's values (Girshick 2015),
scaled where our 128-pixel images and CPU budget demand it, and said so.

Each field states the paper's value and its section (``paper=``); the training recipe (optimizer,
warm-up, clipping, budgets, kernels) is the shared ``stages.recipe.Recipe``, the backbone's fields
``stages.backbone.BackboneConfig``. The measurements behind our defaults are in
``benchmarks/report.md``, section 16.

The pooling vocabulary is one for every stage: ``--pool roi`` (RoI max pooling, sec. 2.1),
``spp`` (SPP-net's pyramid, He et al. 2014), ``align`` (RoIAlign, Mask R-CNN sec. 3). Stages 2
and 3 build roi and spp (``SUPPORTED``); stage 4 builds align and roi.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stages.backbone import BackboneConfig
from stages.recipe import Recipe
from stages.flags import param

Pool = Literal["roi", "spp", "align"]  # every stage's --pool words (stages.fast_rcnn.pooling)


@dataclass(frozen=True)
class FastRCNNConfig(Recipe, BackboneConfig):
    SUPPORTED = {"pool": ("roi", "spp")}  # the poolings stages 2 and 3 build; align: stage 4

    # --- pooling (sec. 2.1; SPP-net sec. 2.2) ---
    pool: Pool = param("roi", paper="RoI max pooling (sec. 2.1)",
                       help="roi: RoI max pooling (one level) | spp: a {4, 2, 1} spatial pyramid")
    pool_size: int = param(7, paper="H = W = 7 for VGG16 (sec. 2.1)", help="H = W: the side of a pooled RoI")
    # --- image scale. Our objects are 12-56 px on 128-px images: on the stride-8 map a 20-px
    #     object covers 2.5 cells, and RoI pooling's rounding to whole cells costs it most of its
    #     localisation. So the image is enlarged 2x before the backbone (bilinear); boxes stay in
    #     the original pixels and the map's stride becomes 8 / 2 = 4 of them ---
    input_scale: float = param(
        2.0, paper="single scale, shorter side s = 600 px: VOC's images 1.6x (sec. 5.2)", measured="section 17",
        help="the image is resized by this factor before the backbone")
    spp_levels: tuple = param(
        (4, 2, 1), paper="SPP-net's classification pyramid; its detection one is {6, 3, 2, 1} (SPP-net sec. 2.2)",
        help="--pool spp: the pyramid's grids")
    # --- network: VGG16's fc6 / fc7 are 4096-d on 512 channels. Ours 1024, torchvision's
    #     TwoMLPHead (and FPN sec. 4.2's 2 x 1024). This and three choices below (background from
    #     IoU 0, smooth L1 beta 1/9, NMS 0.5) are torchvision's, measured together (the walk to the
    #     peers, three seeds): stage 3 box AP 60.0 -> 62.6 (stage 4 68.2 -> 69.8 with them and the
    #     RPN's 2000 pre-NMS proposals, not adopted); the wider head costs test time ---
    fc_dim: int = param(1024, paper="4096 (VGG16)", measured="section 15",
                        help="width of fc6 and fc7 (torchvision's 1024)")
    # --- mini-batches (sec. 2.3) ---
    images_per_batch: int = param(2, paper="N = 2 (sec. 2.3)", measured="section 17", help="images per mini-batch")
    rois_per_image: int = param(64, paper="R = 128 per batch of N = 2: 64 per image (sec. 2.3)",
                                help="RoIs sampled per image for the loss")
    fg_fraction: float = param(0.25, paper="25 % (sec. 2.3)", help="the share of foreground RoIs")
    fg_iou: float = param(0.5, paper="0.5 (sec. 2.3)", help="foreground: IoU >= this with a ground-truth box")
    bg_iou_lo: float = param(0.0, paper="0.1, \"a heuristic for hard example mining\" (sec. 2.3)",
                             measured="section 15",
                             help="background: max IoU in [lo, hi); ours 0 (torchvision's): any RoI below hi")
    bg_iou_hi: float = param(0.5, paper="0.5 (sec. 2.3)", help="background: max IoU below this (the foreground threshold)")
    flip: float = param(0.5, paper="0.5 (sec. 2.3)", help="horizontal flip probability")
    # --- multi-task loss (sec. 2.3, Eq. 1-3) ---
    loss_lambda: float = param(1.0, paper="lambda = 1 (Eq. 1)", help="lambda in L = L_cls + lambda [u >= 1] L_loc")
    smooth_l1_beta: float = param(1 / 9, paper="beta = 1: smooth_L1(x) = 0.5 x^2 if |x| < 1 else |x| - 0.5 (Eq. 3)",
                                  measured="section 15",
                                  help="where smooth L1 turns from squared to linear (torchvision's 1/9)")
    box_weights: tuple = param((10.0, 10.0, 5.0, 5.0), paper="targets normalised to zero mean, unit variance (sec. 2.3)",
                               help="target normalisation: = 1 / std of t")
    # --- test (sec. 3) ---
    score_thresh: float = param(0.05, help="detections scoring below this are dropped before NMS")
    nms_thresh: float = param(0.5, paper="0.3 (sec. 3, R-CNN's)", measured="section 15",
                              help="per-class NMS: a box overlapping a better one by more than this IoU is dropped "
                                   "(torchvision's 0.5)")
    detections_per_image: int = param(100, paper="COCO counts 100", help="the best-scoring ones kept per image")
