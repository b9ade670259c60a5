"""Stage 2: Fast R-CNN (Girshick 2015) with RoI pooling, or SPP-net's pyramid pooling.

    python -m stages.fast_rcnn [--pool roi|spp] [--pool-kernel ours|torchvision] [--help]

Modules: config (FastRCNNConfig), sampling (RoI labels and mini-batches), head (poolers, fc
head, multi-task loss, detection), model (FastRCNN assembled from backbone, proposer, head).
"""

from stages.fast_rcnn.config import FastRCNNConfig
from stages.fast_rcnn.head import FastRCNNHead, RoIPool, SPPPool, build_pooler, detect, fast_rcnn_loss
from stages.fast_rcnn.model import FastRCNN, SelectiveSearchProposer, build_fast_rcnn
from stages.fast_rcnn.sampling import match_proposals, sample_batch, sample_rois

__all__ = ["FastRCNN", "FastRCNNConfig", "FastRCNNHead", "RoIPool", "SPPPool", "SelectiveSearchProposer",
           "build_fast_rcnn", "build_pooler", "detect", "fast_rcnn_loss", "match_proposals", "sample_batch",
           "sample_rois"]
