"""Fast R-CNN's settings: one frozen dataclass, defaults = the paper's values (Girshick 2015),
scaled where our 128-pixel images and CPU budget demand it, and said so."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stages.backbone import BackboneConfig


@dataclass(frozen=True)
class FastRCNNConfig(BackboneConfig):
    # --- pooling (sec. 2.1; SPP-net sec. 2.2). A --pool value names the same operation in every
    #     stage (stages.fast_rcnn.pooling); stage 4 adds align (RoIAlign) ---
    pool: Literal["roi", "spp"] = "roi"  # roi: RoI max pooling (one level) | spp: a {4, 2, 1} spatial pyramid
    pool_size: int = 7  # H = W = 7 for VGG16 (sec. 2.1)
    # --- image scale (sec. 5.2: single scale, the shorter side resized to s = 600 px, which
    #     enlarges VOC's ~375 x 500 images 1.6x). Our objects are 12-56 px on 128-px images: on the
    #     stride-8 map a 20-px object covers 2.5 cells, and RoI pooling's rounding to whole cells
    #     costs it most of its localisation. So the image is enlarged 2x before the backbone
    #     (bilinear); boxes stay in the original pixels and the map's stride becomes 8 / 2 = 4 of
    #     them. Measured, 60 s from ImageNet weights: box AP 48.8 at 1x, 58.0 at 1.5x, 62.2 at 2x
    #     (AP75 53.5 / 65.2 / 75.4), network 6.1 / 9.7 / 15.3 ms per image ---
    input_scale: float = 2.0  # the image is resized by this factor before the backbone
    spp_levels: tuple = (4, 2, 1)  # SPP-net's classification pyramid; its detection one is {6,3,2,1}
    # Training uses torchvision's C++ RoI pooling by default for speed (ours is equal, tested, but
    # a Python loop over RoIs: ~10x slower per step); the notebooks and tests run ours.
    pool_kernel: Literal["ours", "torchvision"] = "torchvision"  # ours | torchvision
    # --- network: the backbone's fields (BackboneConfig) come first; VGG16's fc6/fc7 are
    #     4096-d on 512 channels. Ours 1024, torchvision's TwoMLPHead (and FPN sec. 4.2's 2 x 1024).
    #     This and three choices below (NMS 0.5, background from IoU 0, beta 1/9) are torchvision's;
    #     measured together (benchmarks/walk_to_peer.py, report.md section 15, three seeds, 120 s):
    #     stage 3 box AP 60.0 -> 62.6 (stage 4 68.2 -> 69.8 with them and the RPN's 2000 pre-NMS
    #     proposals, not adopted); the wider head costs test time ---
    fc_dim: int = 1024  # width of fc6 and fc7 (VGG16: 4096; ours was 256)
    # --- mini-batches (sec. 2.3) ---
    images_per_batch: int = 2  # N = 2; measured (stage 4, 60 s): 4 images gave 36.0 / 35.0
    #                            box / mask AP in 219 steps, 2 gave 37.3 / 39.1 in 367
    rois_per_image: int = 64  # R = 128 per batch, 64 per image
    fg_fraction: float = 0.25  # 25 % foreground
    fg_iou: float = 0.5  # foreground: IoU >= 0.5 with a ground-truth box
    bg_iou_lo: float = 0.0  # background: max IoU in [lo, hi). The paper's lo = 0.1 is "a heuristic
    #                         for hard example mining"; ours 0 (torchvision's): any RoI below hi
    bg_iou_hi: float = 0.5  # background: max IoU below this (the foreground threshold)
    flip: float = 0.5  # horizontal flip probability (sec. 2.3)
    # --- multi-task loss (sec. 2.3, Eq. 1-3) ---
    loss_lambda: float = 1.0  # lambda in L = L_cls + lambda [u >= 1] L_loc
    smooth_l1_beta: float = 1 / 9  # smooth_L1 switches from 0.5 x^2 / beta to |x| - 0.5 beta at
    #                                |x| = beta; the paper's Eq. 3 has beta = 1, ours torchvision's 1/9
    box_weights: tuple = (10.0, 10.0, 5.0, 5.0)  # target normalisation: = 1 / std of t (sec. 2.3)
    # --- optimisation (paper: SGD, lr 0.001, momentum 0.9, decay 0.0005, from ImageNet weights).
    #     Measured on stage 4, 60 s from ImageNet weights (benchmarks/bench_finetune.py, box / mask
    #     AP, report.md section 5): AdamW 1e-3 37.3 / 39.1; 3e-4 39.4 / 29.8; 1e-4 28.2 / 12.7;
    #     3e-3 3.9 / 5.3; SGD 0.01 29.5 / 30.4; SGD 0.02 (the old from-scratch default) 0.1 / 0.1.
    #     So AdamW at 1e-3, the best on masks and within 2 points of the best on boxes ---
    optimizer: Literal["adamw", "sgd"] = "adamw"  # adamw | sgd (momentum below)
    lr: float = 1e-3  # the learning rate after the warm-up (paper: SGD at 0.001)
    momentum: float = 0.9  # SGD only (the paper's 0.9)
    weight_decay: float = 1e-4  # L2 penalty on the weights (paper: 0.0005; torchvision: 1e-4)
    warmup_steps: int = 50  # linear warm-up; measured: without (1 step) 18.8 / 22.0
    # a guard against one bad batch blowing the weights up (loss_objectness 1e29, then NaN: the
    # test in tests/test_training_errors.py); measured: without it 31.4 / 30.5
    clip_grad_norm: float = 10.0  # scale all gradients down to this norm when above it; 0: off
    lr_drop: float = 0.75  # lr / 10 after 3/4 of the training (sec. 2.3: 30k of 40k iterations)
    quick_time_budget: float = 120.0  # seconds of training in the quick preset (the README's
    #                                   comparison: four stages within 12 minutes on 2 cores)
    full_epochs: int = 30  # epochs of training in the full preset
    # --- test (sec. 3: per-class NMS at 0.3; ours 0.5, torchvision's box_nms_thresh); the NMS
    #     kernel for speed (ours is equal, tested; the notebooks and tests run ours) ---
    nms_kernel: Literal["ours", "torchvision"] = "torchvision"  # ours | torchvision
    score_thresh: float = 0.05  # detections scoring below this are dropped before NMS
    nms_thresh: float = 0.5  # per-class NMS: a box overlapping a better one by more is dropped
    detections_per_image: int = 100  # the best-scoring ones kept per image (COCO counts 100)
