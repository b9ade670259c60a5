"""R-CNN's settings: one frozen dataclass, defaults = the paper's values, scaled to our images.

Every default cites where it comes from: the paper (Girshick et al., CVPR 2014, arXiv 1311.2524,
"sec." and "Appendix") or, where the paper is silent, its released code (``rcnn`` on GitHub,
"rcnn code"). Where our 128 x 128 images, 12-56 pixel objects and a 2-core CPU demand another
value, the comment says "scaled" or "ours" and why. The command line is built from these fields
(``--warp-size 56``, ``--no-bbox-reg``, ...).

How the CNN trains is the shared recipe (``stages.recipe.Recipe``) with R-CNN's values: AdamW at
1e-3, weight decay 5e-4, the rate / 10 for the last quarter, no warm-up, no clipping. The budget
of a run depends on ``--preset``, as in every stage: ``quick_time_budget`` (60 s) caps the CNN's
training in the quick preset unless ``--time-budget`` or ``--steps`` says otherwise. R-CNN trains
in phases, and the epochs of its two CNN phases left at ``None`` take the preset's value
(``PHASE_EPOCHS``), so ``--finetune-epochs 5`` still wins over any preset.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from stages.backbone import BackboneConfig, backbone_suffix
from stages.recipe import Recipe
from stages.flags import param
from stages.rcnn.sliding_windows import SlidingWindowConfig
from stages.selective_search import SelectiveSearchConfig


@dataclass(frozen=True)
class RCNNConfig(Recipe, BackboneConfig):
    """Everything that defines an R-CNN run except the data and the run flags (``RunConfig``)."""

    # -- the training recipe (stages.recipe.Recipe), R-CNN's values: how its CNN is fine-tuned ----
    # stage 2's optimizer and rate, for the same pre-trained network; the rcnn code's weight decay
    optimizer: Literal["adamw", "sgd"] = param("adamw", paper="SGD (sec. 2.3)", measured="section 17",
                                               help=("adamw | sgd (with --momentum): the CNN's fine-tuning (its crop "
                                                     "pre-training: SGD)"))
    lr: float = param(1e-3, paper="0.001, SGD, from ImageNet weights (sec. 2.3)", measured="section 17",
                      help="the fine-tuning's rate (AdamW at stage 2's rate)")
    weight_decay: float = param(5e-4, paper="0.0005 (rcnn code, AlexNet's)", help="L2 penalty on the weights")
    lr_drop: float = param(0.75, paper="Caffe's step policy (rcnn code)",
                           help="lr / 10 after this fraction of the training (of its steps or of its time budget)")
    # R-CNN's fine-tuning has no warm-up and no gradient clipping: these values say so (the flags
    # are not offered: NOT_READ)
    warmup_steps: int = param(1, help="steps of linear warm-up: 1, none")
    clip_grad_norm: float = param(0.0, help="gradient norm cap: 0, none")
    quick_time_budget: float = param(60.0,
                                     help="seconds of the CNN's training in the quick preset (unless --time-budget or --steps)")

    # -- proposals (sec. 2.1) ---------------------------------------------------------------------
    proposals: Literal["selective_search", "sliding_window"] = param(
        "selective_search", paper="selective search's fast mode; sliding windows as the baseline (sec. 2.1)",
        help="selective_search | sliding_window: where the regions come from")
    # selective search (stages.selective_search.SelectiveSearchConfig, the same ss_* fields as
    # stage 2's): the paper's "fast mode" gives ~2000 boxes on a 500 x 375 VOC image; the package
    # at scale 100 gives ~110 on our 128 x 128 images. ss_scale, ss_sigma and ss_min_size are the
    # package's; OpenCV's modes have their own
    ss_scale: float = param(100.0, help="package: Felzenszwalb scale: larger -> bigger initial regions, fewer boxes")
    ss_sigma: float = param(0.8, help="package: Gaussian smoothing before the segmentation")
    ss_min_size: int = param(10, help="package: initial regions smaller than this (pixels) are merged")
    ss_min_box: float = param(4.0, help="proposals narrower or shorter than this (pixels) are dropped")
    ss_method: Literal["package", "opencv_fast", "opencv_quality"] | None = param(
        None, paper="fast mode (sec. 2.1)", measured="section 17",
        help=("package: the pure-Python selective search (one hierarchy) | opencv_fast / opencv_quality: OpenCV's, the paper's "
              "diversified modes. None: the data decides: the package on the built-in synthetic set, opencv_fast on photos"))
    ss_max_boxes: int | None = param(None, measured="section 17",
                                     help=("keep the first this many selective-search boxes (OpenCV's ranking: large regions "
                                           "first); none: all"))
    # sliding windows (stages.rcnn.sliding_windows.SlidingWindowConfig), the exhaustive baseline:
    # 5 sizes x 3 ratios at half a window's stride = 1080 windows per 128 x 128 image, recall 0.98
    # at IoU 0.5 but 0.20 at 0.7 (a quarter stride: 4084 windows, 1.00 / 0.77, 4x the CNN's time)
    sw_sizes: tuple = param((16, 24, 32, 48, 64), help="sqrt(window area), pixels (our objects: 12-56)")
    sw_ratios: tuple = param((0.5, 1.0, 2.0), help="height / width")
    sw_stride: float = param(0.5, help="step as a fraction of the window side")

    # -- regions (sec. 2.1, Appendix A) -----------------------------------------------------------
    # Scaled: our stages 2-4 read the 128-px image enlarged 2x (input_scale), and 96 is 38 % of its
    # 256 px, as 227 is of Fast R-CNN's s = 600 (Fast R-CNN sec. 5.2). Its C3 (stride 8) is 12 x 12,
    # max-pooled to pool5 = Fast R-CNN's 7 x 7.
    warp_size: int = param(96, paper="S = 227 (sec. 2.1)", measured="section 17", help="the CNN's input side S, pixels")
    context_pad: float = param(16.0, paper="p = 16 (Appendix A)",
                               help="p: pixels of context around the box at 227; scaled to p * warp_size / 227")

    # -- the CNN (sec. 2.1, 2.3): stage 2's network, run on each region (stages.rcnn.cnn) ----------
    # the backbone (BackboneConfig's fields, up to C3) is FastRCNNConfig's: the same CNN
    pool_size: int = param(7, paper="VGG16's pool5: 7 x 7", help="pool5's side: Fast R-CNN's RoI pooling size")
    # Fast R-CNN's head has 1024 (torchvision's width, stages 2-4); here, per warped region, 1024
    # bought 64 CNN steps in the quick preset's 60 s and box AP 39.6, 256 105 steps and 48.5
    fc_dim: int = param(256, paper="4096 (AlexNet, VGG16)", measured="section 16",
                        help="width of fc6 and fc7 (stages 2-4: 1024)")
    dropout: float = param(0.0, paper="0.5 (AlexNet)", measured="section 17", help="on fc6 and fc7 (none, as stage 2's head)")
    pretrain_epochs: int | None = param(None, paper="ImageNet weights, downloaded (sec. 2.3)",
                                        help=("K-way training on ground-truth crops (stands in for ImageNet); none: the "
                                              "preset's (PHASE_EPOCHS)"))
    pretrain_lr: float = param(0.03, measured="section 17", help="the crop pre-training's rate (SGD, momentum 0.9)")
    finetune_epochs: float | None = param(None,
                                          help=("(K+1)-way training on proposals; 1 epoch = every positive once; none: the "
                                                "preset's (PHASE_EPOCHS)"))
    fg_iou: float = param(0.5, paper="0.5 (sec. 2.3)", help="fine-tuning positive: IoU >= this with a ground truth")
    batch_positives: int = param(16, paper="32 (sec. 2.3)", help="positive windows per mini-batch, over all classes")
    batch_negatives: int = param(16 * 3, paper="96 (sec. 2.3)", measured="section 17",
                                 help="background windows per mini-batch (the paper's 1:3 mix)")

    # -- linear SVMs (sec. 2.3) -------------------------------------------------------------------
    classifier: Literal["svm", "softmax"] = param(
        "svm", paper="per-class linear SVMs (sec. 2.3, Appendix B)",
        help="svm | softmax (Fast R-CNN Table 8 compares the two)")
    svm_neg_iou: float = param(0.3, paper="0.3 (sec. 2.3)", help="negative: IoU < this with every instance of the class")
    # the hinge losses are summed, so fewer examples than VOC's mean stronger regularisation
    svm_C: float = param(0.1, paper="rcnn code: 0.001, for VOC's ~5000 images and 4096-d fc7", measured="section 17",
                         help="the SVMs' C (chosen on the data we report on: say so)")
    svm_pos_weight: float = param(2.0, paper="rcnn code: 2", help="a positive's hinge loss counts this many times")
    svm_bias_mult: float = param(10.0, paper="rcnn code: 10", help="the bias is learnt as the weight of a constant this large")
    feature_norm: float = param(20.0, paper="rcnn code: 20", help="features scaled to this mean L2 norm")
    hard_negative_rounds: int = param(3, paper="\"converges quickly\" (sec. 2.3); rcnn code: 1 pass + retrains",
                                      help="rounds of hard-negative mining")
    hard_threshold: float = param(-1.0, paper="rcnn code: -1", help="a negative scoring above this is inside the margin: hard")
    evict_threshold: float = param(-1.2, paper="rcnn code: -1.2", help="a cached negative scoring below this is evicted: easy")
    initial_negatives: int = param(2000, paper="rcnn code: all negatives of the first images",
                                   help="negatives of round 0, drawn at random")

    # -- box regression (Appendix C) --------------------------------------------------------------
    bbox_reg: bool = param(True, paper="Appendix C", help="class-specific ridge regression from pool5 features")
    bbox_iou: float = param(0.6, paper="0.6 (Appendix C)", help="a training pair needs IoU > this with its best ground truth")
    bbox_lambda: float = param(1000.0, paper="lambda = 1000 (Appendix C)", help="ridge penalty lambda, on features at norm 20")

    # -- test (sec. 2.2) --------------------------------------------------------------------------
    nms_thresh: float = param(0.3, paper="0.3 (sec. 2.2 learns it; the rcnn code's value)",
                              help="per-class greedy NMS: a box overlapping a better one by more than this IoU is dropped")
    detections_per_image: int = param(100, paper="COCO counts 100", help="the best-scoring ones kept per image")
    feature_batch: int = param(256, help="regions per CNN forward pass (memory, not results)")
    workers: int = param(2, help="processes computing selective search for the training images (speed only)")

    @property
    def context_pad_pixels(self) -> float:
        """p scaled to our warp: 16 * 56 / 227 = 3.95 pixels on each side."""
        return self.context_pad * self.warp_size / 227

    def selective_search(self) -> SelectiveSearchConfig:
        # ss_method None ("the data decides") is the package here: the command line replaces it
        # with the data's choice before the config is built (stages.run.stage_config)
        return SelectiveSearchConfig(ss_method=self.ss_method or "package", ss_scale=self.ss_scale,
                                     ss_sigma=self.ss_sigma, ss_min_size=self.ss_min_size,
                                     ss_min_box=self.ss_min_box, ss_max_boxes=self.ss_max_boxes)

    def sliding_window(self) -> SlidingWindowConfig:
        return SlidingWindowConfig(sizes=tuple(self.sw_sizes), ratios=tuple(self.sw_ratios),
                                   stride=self.sw_stride)

    # the Recipe's fields that R-CNN does not read, so its command does not offer them: its
    # fine-tuning has no warm-up and no clipping, its preset fixes epochs per phase (PHASE_EPOCHS), its
    # pool5 is a max pool of the warped region and its NMS ours (no kernel to choose)
    NOT_READ = ("warmup_steps", "clip_grad_norm", "full_epochs", "pool_kernel", "nms_kernel")

    # the fields that shape the trained weights; the others only choose what runs at test time
    # (so ``--eval-only --no-bbox-reg`` evaluates the same trained model without regression)
    TEST_TIME = ("proposals", "ss_scale", "ss_sigma", "ss_min_size", "ss_min_box", "ss_method",
                 "ss_max_boxes", "sw_sizes", "sw_ratios", "sw_stride", "classifier", "bbox_reg",
                 "nms_thresh", "detections_per_image", "feature_batch", "workers")

    @property
    def variant(self) -> str:
        """The name of this run in a result table: the three ablation switches."""
        return (f"proposals={self.proposals} classifier={self.classifier} "
                f"bbox_reg={'on' if self.bbox_reg else 'off'}" + backbone_suffix(self))


# The epochs of R-CNN's two CNN phases in each preset, for the fields left at None (the preset's
# seconds are the Recipe's quick_time_budget, as in every stage). "quick": the whole command
# (selective search for 500 images, fine-tuning, SVM features of every training region,
# evaluation) in about 4-5 minutes on 2 CPU cores; the CNN fine-tunes from ImageNet weights for its
# 60 s (~150 mini-batches of 96-px warps: the feature pass over every training region then takes
# ~2.5 min), so the crop pre-training that stands in for ImageNet (for --backbone tiny) is skipped.
# (Measured earlier with the tiny CNN from random weights, 130 s in all: giving part of it to crop
# pre-training lowered softmax box AP, 23.7 against 27.4.) "full" pre-trains on crops, then
# fine-tunes without a time limit.
PHASE_EPOCHS = {
    "quick": {"pretrain_epochs": 0, "finetune_epochs": 1.5},
    "full": {"pretrain_epochs": 60, "finetune_epochs": 24.0},
}


def resolve(cfg: RCNNConfig, preset: str = "quick", epochs: int | None = None) -> RCNNConfig:
    """Fill the fields left at ``None`` from ``PHASE_EPOCHS[preset]``; ``epochs`` (the shared
    ``--epochs`` flag) sets the fine-tuning epochs."""
    values = {k: v for k, v in PHASE_EPOCHS[preset].items() if getattr(cfg, k) is None}
    if epochs is not None:
        values["finetune_epochs"] = float(epochs)
    return dataclasses.replace(cfg, **values)
