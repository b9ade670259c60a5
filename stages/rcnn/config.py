"""R-CNN's settings: one frozen dataclass, defaults = the paper's values, scaled to our images.

Every default cites where it comes from: the paper (Girshick et al., CVPR 2014, arXiv 1311.2524,
"sec." and "Appendix") or, where the paper is silent, its released code (``rcnn`` on GitHub,
"rcnn code"). Where our 128 x 128 images, 12-56 pixel objects and a 2-core CPU demand another
value, the comment says "scaled" or "ours" and why. The command line is built from these fields
(``--warp-size 56``, ``--no-bbox-reg``, ...).

The budget of a run (how long the CNN trains) depends on ``--preset``: fields left at ``None``
take the preset's value (``PRESETS``), so ``--finetune-epochs 5`` still wins over any preset, and
``TIME_BUDGET`` caps the CNN's training seconds unless ``--time-budget`` says otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from stages.backbone import BackboneConfig, backbone_suffix
from stages.rcnn.sliding_windows import SlidingWindowConfig
from stages.selective_search import SelectiveSearchConfig


@dataclass(frozen=True)
class RCNNConfig(BackboneConfig):
    """Everything that defines an R-CNN run except the data and the run flags (``RunConfig``)."""

    # -- proposals (sec. 2.1) ---------------------------------------------------------------------
    proposals: Literal["selective_search", "sliding_window"] = "selective_search"  # selective_search | sliding_window (sec. 2.1)
    # selective search (stages.selective_search.SelectiveSearchConfig): the paper's "fast mode" gives
    # ~2000 boxes on a 500 x 375 VOC image; the package at scale 100 gives ~110 on our 128 x 128
    # images. ss_scale, ss_sigma and ss_min_size are the package's; OpenCV's modes have their own
    ss_scale: float = 100.0  # Felzenszwalb scale: larger -> bigger initial regions, fewer boxes
    ss_sigma: float = 0.8  # Gaussian smoothing before the segmentation
    ss_min_size: int = 10  # initial regions smaller than this (pixels) are merged
    ss_min_box: float = 4.0  # proposals narrower or shorter than this (pixels) are dropped
    ss_method: Literal["package", "opencv_fast", "opencv_quality"] | None = None  # package: the
    #   pure-Python selective search (one hierarchy) | opencv_fast / opencv_quality: OpenCV's,
    #   the paper's diversified modes. None: the data decides: the package on the built-in
    #   synthetic set (recall 0.95 at IoU 0.5 with ~110 boxes), opencv_fast on photos (Penn-Fudan
    #   at 256 px: 0.87 with ~715 boxes, where the package finds 0.52;
    #   benchmarks/bench_proposals.py)
    ss_max_boxes: int | None = None  # keep the first this many selective-search boxes (OpenCV's
    #                                  ranking: large regions first); none: all. Penn-Fudan at 256
    #                                  px: opencv_quality's first 750 find 0.94 at IoU 0.5 (all
    #                                  2433 boxes: 0.95), opencv_fast's first 500 0.85 (all 715:
    #                                  0.87)
    # sliding windows (stages.rcnn.sliding_windows.SlidingWindowConfig), the exhaustive baseline:
    # 5 sizes x 3 ratios at half a window's stride = 1080 windows per 128 x 128 image, recall 0.98
    # at IoU 0.5 but 0.20 at 0.7 (a quarter stride: 4084 windows, 1.00 / 0.77, 4x the CNN's time)
    sw_sizes: tuple = (16, 24, 32, 48, 64)  # sqrt(window area), pixels (our objects: 12-56)
    sw_ratios: tuple = (0.5, 1.0, 2.0)  # height / width
    sw_stride: float = 0.5  # step as a fraction of the window side

    # -- regions (sec. 2.1, Appendix A) -----------------------------------------------------------
    warp_size: int = 96  # the CNN's input side S; paper 227, 38 % of the s = 600 px at which Fast
    #                      R-CNN reads the image (Fast R-CNN sec. 5.2). Scaled: our stages 2-4 read
    #                      the 128-px image enlarged 2x (input_scale), and 96 is 38 % of its 256 px.
    #                      Its C3 (stride 8) is 12 x 12, max-pooled to pool5 = Fast R-CNN's 7 x 7.
    #                      Measured in comparisons (quick preset): 56 px gave box AP 62.9 and 110 ms
    #                      of network per image (against Fast R-CNN at 1x: 11.7x), 80 px 59.2 and
    #                      286 ms (against Fast R-CNN at 2x: 12.7x, too thin a margin)
    context_pad: float = 16.0  # p: pixels of context around the box *at 227* (Appendix A);
    #                            scaled to p * warp_size / 227 (= 3.9 px at 56)

    # -- the CNN (sec. 2.1, 2.3): stage 2's network, run on each region (stages.rcnn.cnn) ----------
    # the backbone (BackboneConfig's fields, up to C3) is FastRCNNConfig's: the same CNN
    pool_size: int = 7  # pool5's side: Fast R-CNN's RoI pooling size (VGG16's pool5: 7 x 7)
    fc_dim: int = 256  # width of fc6 and fc7; AlexNet / VGG16: 4096. Fast R-CNN's head has 1024
    #                    (torchvision's width, stages 2-4); here, per warped region, 1024 bought 64
    #                    CNN steps in the quick preset's 60 s and box AP 39.6, 256 105 steps and 48.5
    #                    (the README's run of 2026-12-06, its two invocations: report.md section 16)
    dropout: float = 0.0  # on fc6 and fc7; AlexNet 0.5. Ours none, as stage 2's head: measured
    #                       (60 s of fine-tuning), 0.5 left the loss at 0.83, 0 brought it to 0.70
    pretrain_epochs: int | None = None  # K-way on ground-truth crops (stands in for ImageNet)
    pretrain_lr: float = 0.03  # ours (SGD, momentum 0.9; the paper downloads these weights).
    #                            Chosen with an earlier, 3-layer region CNN (0.01 / 0.03 / 0.1 gave
    #                            box AP 32 / 41 / 32); with this CNN, measured for fine-tuning:
    #                            60 s at 0.01 / 0.03 / 0.1 left the loss at 0.82 / 0.83 / 0.84
    finetune_epochs: float | None = None  # (K+1)-way on proposals; 1 epoch = every positive once
    finetune_optimizer: Literal["adamw", "sgd"] = "adamw"  # sgd | adamw: stage 2's, for the same pre-trained network
    finetune_lr: float = 1e-3  # paper 0.001 (SGD) from ImageNet weights (sec. 2.3); ours AdamW at
    #                            1e-3, stage 2's rate (benchmarks/bench_finetune.py)
    fg_iou: float = 0.5  # fine-tuning positive: IoU >= 0.5 with a ground truth (sec. 2.3)
    batch_positives: int = 16  # per mini-batch, over all classes; paper 32 (sec. 2.3)
    batch_negatives: int = 16 * 3  # background windows per mini-batch; paper 96: the paper's
    #                    1:3 mix, half its 128. Measured, 130 s from scratch: 491 steps of 64 gave
    #                    softmax box AP 27.4; 156 steps of 128 gave 6.4 (a step of 128 costs 3x)

    # -- linear SVMs (sec. 2.3) -------------------------------------------------------------------
    classifier: Literal["svm", "softmax"] = "svm"  # svm | softmax (Appendix B; Fast R-CNN Table 8 compares the two)
    svm_neg_iou: float = 0.3  # negative: IoU < 0.3 with every instance of the class (sec. 2.3)
    svm_C: float = 0.1  # rcnn code: 0.001, for VOC's ~5000 images and 4096-d fc7. The hinge
    #                     losses are summed, so fewer examples mean stronger regularisation. Ours,
    #                     measured on the validation set with one fine-tuned CNN: C = 0.001 / 0.01
    #                     / 0.1 gave box AP 44.8 / 45.6 / 46.6; with another, C = 0.1 / 1 gave
    #                     48.2 / 47.7. So 0.1 (chosen on the data we report on: say so)
    svm_pos_weight: float = 2.0  # rcnn code: a positive's hinge loss counts twice
    svm_bias_mult: float = 10.0  # rcnn code: the bias is learnt as the weight of a constant 10
    feature_norm: float = 20.0  # rcnn code: features scaled to a mean L2 norm of 20
    hard_negative_rounds: int = 3  # sec. 2.3 ("converges quickly"); rcnn code: 1 pass + retrains
    hard_threshold: float = -1.0  # rcnn code: a negative scoring > -1 is inside the margin: hard
    evict_threshold: float = -1.2  # rcnn code: a cached negative scoring < -1.2 is evicted: easy
    initial_negatives: int = 2000  # negatives of round 0, drawn at random (ours: the code's
    #                                first pass adds all negatives of the first images)

    # -- box regression (Appendix C) --------------------------------------------------------------
    bbox_reg: bool = True  # class-specific ridge regression from pool5 features (Appendix C)
    bbox_iou: float = 0.6  # a training pair needs IoU > 0.6 with its best ground truth
    bbox_lambda: float = 1000.0  # ridge penalty lambda = 1000 (Appendix C), on features at norm 20

    # -- test (sec. 2.2) --------------------------------------------------------------------------
    nms_iou: float = 0.3  # per-class greedy NMS (sec. 2.2; 0.3 in the rcnn code)
    detections_per_image: int = 100  # COCO counts the top 100
    feature_batch: int = 256  # regions per CNN forward pass (memory, not results)
    workers: int = 2  # processes computing selective search for the training images (speed only)

    @property
    def context_pad_pixels(self) -> float:
        """p scaled to our warp: 16 * 56 / 227 = 3.95 pixels on each side."""
        return self.context_pad * self.warp_size / 227

    def selective_search(self) -> SelectiveSearchConfig:
        # ss_method None ("the data decides") is the package here: the command line replaces it
        # with the data's choice before the config is built (stages.training.run.stage_config)
        return SelectiveSearchConfig(method=self.ss_method or "package", scale=self.ss_scale,
                                     sigma=self.ss_sigma, min_size=self.ss_min_size,
                                     min_box=self.ss_min_box, max_boxes=self.ss_max_boxes)

    def sliding_window(self) -> SlidingWindowConfig:
        return SlidingWindowConfig(sizes=tuple(self.sw_sizes), ratios=tuple(self.sw_ratios),
                                   stride=self.sw_stride)

    # the fields that shape the trained weights; the others only choose what runs at test time
    # (so ``--eval-only --no-bbox-reg`` evaluates the same trained model without regression)
    TEST_TIME = ("proposals", "ss_scale", "ss_sigma", "ss_min_size", "ss_min_box", "ss_method",
                 "ss_max_boxes", "sw_sizes", "sw_ratios", "sw_stride", "classifier", "bbox_reg",
                 "nms_iou", "detections_per_image", "feature_batch", "workers")

    @property
    def variant(self) -> str:
        """The name of this run in a result table: the three ablation switches."""
        return (f"proposals={self.proposals} classifier={self.classifier} "
                f"bbox_reg={'on' if self.bbox_reg else 'off'}" + backbone_suffix(self))


# The budget of each preset, for the fields left at None. "quick": the whole command (selective
# search for 500 images, fine-tuning, SVM features of every training region, evaluation) in about
# 4-5 minutes on 2 CPU cores; the CNN fine-tunes from ImageNet weights for its time budget (60 s,
# ~150 mini-batches of 96-px warps: the feature pass over every training region then takes ~2.5 min), so the crop pre-training that stands in for ImageNet (for
# --backbone tiny) is skipped. (Measured earlier with the tiny CNN from random weights, 130 s in
# all: giving part of it to crop pre-training lowered softmax box AP, 23.7 against 27.4.) "full"
# pre-trains on crops, then fine-tunes without a time limit.
PRESETS = {
    "quick": {"pretrain_epochs": 0, "finetune_epochs": 1.5},
    "full": {"pretrain_epochs": 60, "finetune_epochs": 24.0},
}
TIME_BUDGET = {"quick": 60.0, "full": None}  # seconds of CNN training, unless --time-budget


def resolve(cfg: RCNNConfig, preset: str = "quick", epochs: int | None = None) -> RCNNConfig:
    """Fill the fields left at ``None`` from ``PRESETS[preset]``; ``epochs`` (the shared
    ``--epochs`` flag) sets the fine-tuning epochs."""
    values = {k: v for k, v in PRESETS[preset].items() if getattr(cfg, k) is None}
    if epochs is not None:
        values["finetune_epochs"] = float(epochs)
    return dataclasses.replace(cfg, **values)
