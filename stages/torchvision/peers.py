"""``python -m stages.torchvision.peers``: torchvision's Faster / Mask R-CNN on our backbone, trained like a stage.

    python -m stages.torchvision.peers faster_rcnn                    the stage-3 peer, the quick preset's 120 s
    python -m stages.torchvision.peers mask_rcnn --time-budget 180    the stage-4 peer, 3 minutes of training
    python -m stages.torchvision.peers mask_rcnn --eval-only          evaluate runs/torchvision_mask_rcnn again

The project measures our stages 3 and 4 against these peers: "ours must match or beat these at the
same budget, measured side by side in one run" (``benchmarks/bench_peers.py`` does that run).
A peer is torchvision's ``FasterRCNN`` or ``MaskRCNN`` assembled by
``stages.torchvision.peer_models.build_peer_faster_rcnn`` / ``build_peer_mask_rcnn`` on the very
backbone our stages use (``stages.backbone``: EfficientNet-Lite0 from ImageNet weights by default,
the same ``--backbone`` / ``--pretrained`` flags; C2..C5 -> torchvision's FPN, 64 channels ->
P2..P6), wrapped in
``TorchvisionDetector`` and then treated exactly like one of our stages: the same flags, the same
data and split, the same loop (``engine.train``) and optimiser as stage 3, the same evaluator.
It writes what a stage writes into ``--out`` (default ``runs/torchvision_<kind>``):
``checkpoint.pt``, ``losses.json``, ``metrics.json`` (stage ``torchvision_faster_rcnn`` or
``torchvision_mask_rcnn``) and ``predictions.png``.

Kept as torchvision designed it (this is the design we compare against): the RPN head (one 3x3
conv, two 1x1 convs), its anchor labels (IoU 0.7 / 0.3) and 256 sampled anchors per image, 2000
(train) / 1000 (test) top anchors per level before NMS 0.7; ``MultiScaleRoIAlign`` 7x7, sampling
ratio 2, each RoI pooled from the FPN level of its size (FPN Eq. 1); the box head
``TwoMLPHead`` (two fc layers of 1024) and its class-specific box regression; the mask branch (four
3x3 convs of 256, a 2x deconvolution, 28x28 masks); RoI labels (IoU 0.5), 25 % foreground, test
score threshold 0.05, NMS 0.5, 100 detections per image; its losses.

Changed, because our images are 128 px (each is a flag of ``PeerConfig`` or set in ``build_peer_*``):

    image size     min_size = max_size = the images' long side times ``input_scale`` (2 x 128 =
                   256, as our stages enlarge them): torchvision's 800 / 1333 would enlarge them
                   6x (see "resizing" in ``stages.torchvision``)
    anchors        16..256 px, one size per level P2..P6 (torchvision 32..512), for 12-56 px objects
    normalisation  image_mean = 0, image_std = 1: our backbones normalise their input themselves
    proposals      300 after NMS, in training and test (torchvision 2000 / 1000). torchvision keeps
                   under 1 % of the ~270k anchors of an 800 x 1333 image; a 128-px image has 4092
                   (P2..P6 x 3 ratios), and 1000 proposals would be a quarter of them, mostly
                   near-duplicates that the box head pays for. 300 is the Faster R-CNN paper's
                   test count (sec. 4.1) and our stage 3's.
    sampled RoIs   64 per image (torchvision 512, drawn from 2000 proposals): with 300 proposals
                   512 would mean all of them. 64 is Fast R-CNN's (R = 128 for N = 2, sec. 2.3)
                   and our stages 2 and 3's.

Training is our stage 3's (``FasterRCNNConfig``), for both peers: AdamW, lr 1e-3, weight decay
1e-4, gradients clipped to norm 10, 2 images per batch, a linear warm-up over the first 50 steps;
the quick preset trains for its 120 s budget (``--time-budget`` to change), the full preset for
30 epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from stages import run
from stages.backbone import BackboneConfig, backbone_from_config, backbone_suffix
from stages.evaluation import Result
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.recipe import Recipe
from stages.flags import param
from stages.torchvision.adapter import TorchvisionDetector
from stages.torchvision.peer_models import build_peer_faster_rcnn, build_peer_mask_rcnn
from stages.flags import RunConfig, dataclass_from_args

KINDS = ("faster_rcnn", "mask_rcnn")  # the stage each peer is measured against


def stage_name(kind: str) -> str:
    """The name a peer's runs and result records carry: "torchvision_faster_rcnn", ..."""
    return f"torchvision_{kind}"


@dataclass(frozen=True)
class PeerConfig(Recipe, BackboneConfig):
    """The peers' settings: torchvision's defaults except where 128-px images demand (docstring).
    Training is every stage's recipe (``Recipe``: optimizer, warm-up, clipping, budgets), so that
    only the model differs; torchvision runs its own kernels (the recipe's two are not offered)."""

    # --- the network: our backbone, torchvision's FPN, heads and RoIAlign ---
    # our stages' choices, so that only the detector's design differs: one level (C3, 3 x 3 anchors
    # on it) unless --fpn (C2..C5 -> FPN -> P2..P6), images enlarged 2x (stage 2's input_scale)
    fpn: bool = param(False, help="C2..C5 -> torchvision's FPN -> P2..P6 (--no-fpn: one level, C3)")
    input_scale: float = param(FasterRCNNConfig.input_scale, help="images enlarged by this before the backbone (stage 2's)")
    fpn_channels: int = param(64, paper="d = 256 (FPN sec. 3), torchvision's too",
                              help="the FPN's width (our stage 4's --fpn-channels)")
    representation_size: int = param(1024, paper="2 x 1024-d fc (FPN sec. 4.2)", help="TwoMLPHead's width, torchvision's")
    mask_head_channels: int = param(256, paper="256 (Mask R-CNN Figure 4)", help="MaskRCNNHeads' width, torchvision's")
    # --- scaled to 128-px images (docstring): torchvision 2000 / 1000 / 512 ---
    rpn_post_nms_top_n_train: int = param(300, paper="2000 (Faster R-CNN sec. 3.3); torchvision 2000",
                                          help="training: proposals kept after the RPN's NMS")
    rpn_post_nms_top_n_test: int = param(300, paper="300 (Faster R-CNN sec. 4.1); torchvision 1000",
                                         help="test: proposals kept after the RPN's NMS")
    box_batch_size_per_image: int = param(64, paper="R = 128 for N = 2 (Fast R-CNN sec. 2.3); torchvision 512",
                                          help="RoIs sampled per image for the box head's loss")
    images_per_batch: int = param(FasterRCNNConfig.images_per_batch, help="images per mini-batch (stage 3's)")

    # the recipe's kernels are ours or torchvision's for our own operators; a peer runs
    # torchvision's model, with its own
    NOT_READ = ("pool_kernel", "nms_kernel")


def build_peer(kind: str, cfg: PeerConfig, num_classes: int, image_size: int) -> TorchvisionDetector:
    """The peer of stage ``kind`` for K = ``num_classes`` object classes, behind our model contract.

    image_size: the images' long side; torchvision then leaves them as they are (min = max size).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown peer {kind!r}: expected one of {', '.join(KINDS)}")
    body = backbone_from_config(cfg, "C5" if cfg.fpn else "C3")  # the same backbone as our stages'
    common = dict(body=body, fpn=cfg.fpn,
                  fpn_channels=cfg.fpn_channels, representation_size=cfg.representation_size,
                  min_size=image_size, max_size=image_size,
                  rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
                  rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
                  box_batch_size_per_image=cfg.box_batch_size_per_image)
    if kind == "faster_rcnn":
        model = build_peer_faster_rcnn(num_classes, **common)
    else:
        model = build_peer_mask_rcnn(num_classes, mask_head_channels=cfg.mask_head_channels, **common)
    return TorchvisionDetector(model)


def describe(kind: str, cfg: PeerConfig) -> str:
    """The ``variant`` column of the result record."""
    features = f"fpn={cfg.fpn_channels}" if cfg.fpn else "c3"
    text = f"torchvision {features} box_head=mlp{cfg.representation_size} pool=roi_align"
    return (text + (f" mask_head={cfg.mask_head_channels}" if kind == "mask_rcnn" else "")
            + backbone_suffix(cfg))


def build_parser():
    parser = run.build_parser(__doc__, PeerConfig, prog="python -m stages.torchvision.peers",
                              skip=PeerConfig.NOT_READ)
    parser.add_argument("kind", choices=KINDS,
                        help="which peer: torchvision's FasterRCNN (stage 3's) or MaskRCNN (stage 4's)")
    return parser


@run.one_line_errors
def train_and_evaluate(kind: str, run_cfg: RunConfig, cfg: PeerConfig | None = None) -> Result | None:
    """Train the peer of our stage ``kind`` ("faster_rcnn" or "mask_rcnn"; or restore it:
    ``run_cfg.eval_only``), evaluate it, save the run into ``run_cfg.out`` (default
    ``runs/torchvision_<kind>``); returns its result record (None on the other ranks under
    torchrun). ``cfg``: None is the command's defaults (``run.command_defaults``)."""
    if kind not in KINDS:
        raise ValueError(f"unknown peer {kind!r}: expected one of {', '.join(KINDS)}")
    ctx = run.prepare(run_cfg, stage_name(kind))
    # the image scale: from the data, as ours
    cfg = run.stage_config(PeerConfig, cfg or run.command_defaults(PeerConfig), ctx)
    # torchvision rescales every image to this long side: the data's own (128 for the synthetic
    # set, --long-side when given) times input_scale, so that it sees them as our stages do
    image_size = round((ctx.run.long_side or max(ctx.val[0][0].shape[-2:])) * cfg.input_scale)

    torch.manual_seed(ctx.run.seed)
    model = build_peer(kind, cfg, ctx.num_classes, image_size).to(ctx.device)
    config = {**run.saved_config(ctx, cfg), "kind": kind, "image_size": int(image_size)}
    trained = run.train_or_restore(model, ctx, cfg, config)
    return run.finish(model, ctx, variant=describe(kind, cfg), trained=trained)


def main(argv: list[str] | None = None) -> Result | None:
    args = build_parser().parse_args(argv)
    return train_and_evaluate(args.kind, dataclass_from_args(RunConfig, args),
                              dataclass_from_args(PeerConfig, args))


if __name__ == "__main__":
    main()
