"""Stage 1, R-CNN: Girshick, Donahue, Darrell, Malik, "Rich feature hierarchies for accurate
object detection and semantic segmentation", CVPR 2014 (arXiv 1311.2524).

The first detector of the family. Per image: propose ~2000 class-independent regions, warp each
one to a fixed size, run a CNN on every warped region, score its features with one linear SVM per
class, suppress overlapping detections, and refine each box with a class-specific regressor.

Reused (shared modules): the dataset item, ``stages.selective_search`` (selective search and its
proposal cache), proposal recall, ``stages.ops`` (IoU, the ground-truth match, NMS, the box
coder), the evaluator, and ``stages.backbone``: the CNN is stage 2's backbone and fc layers, run
on every warped region. Replaced: nothing, this is the first stage. Added, one module per paper
concept:

    config.py            RCNNConfig: every default with its section, scaled to 128 px images
    sliding_windows.py   the exhaustive baseline the proposals are measured against (sec. 2.1)
    proposers.py         the two proposal methods behind one call; the proposal report (sec. 2.1)
    regions.py           context padding + anisotropic warp to S x S (sec. 2.1, Appendix A)
    cnn.py               the region CNN (stage 2's network on each warp): pre-training on gt
                         crops, (K+1)-way fine-tuning (sec. 2.3)
    svm.py               one linear SVM per class, hard negative mining (sec. 2.3, Appendix B)
    bbox_regression.py   class-specific ridge regression of t_x, t_y, t_w, t_h (Appendix C)
    model.py             RCNN: the test-time pipeline behind the shared model call (sec. 2.2)
    train.py             the training phases, each a function; train_rcnn runs them all
    __main__.py          python -m stages.rcnn

What Fast R-CNN (stage 2) changes: the CNN runs once per image instead of once per region, RoI
pooling cuts each region out of the shared feature map, and a softmax with a box-regression
output, trained in one loss, replaces the SVMs and the separate regressors.

Shape shorthand everywhere: R regions (proposals), K object classes (labels 1..K, 0 is
background), S warp size, D fc7 width, F pool5 width. Boxes (x1, y1, x2, y2), absolute pixels.
"""

from stages.rcnn.bbox_regression import BoxRegressors, train_bbox_regressors
from stages.rcnn.cnn import RegionCNN, extract_features, finetune, pretrain_on_crops
from stages.rcnn.config import PHASE_EPOCHS, RCNNConfig, resolve
from stages.rcnn.model import RCNN
from stages.rcnn.proposers import (compute_proposals, format_proposal_report, make_proposer,
                                          plot_recall, proposal_report)
from stages.rcnn.regions import crop_regions, dilate_boxes, normalize, warp_regions
from stages.rcnn.svm import ClassSVMs, mine_hard_negatives, train_one_svm, train_svms
from stages.rcnn.train import (TrainingData, fit_bbox_regressors, fit_svms, prepare_training_data,
                               region_features, train_cnn, train_rcnn)

__all__ = [
    "BoxRegressors", "ClassSVMs", "PHASE_EPOCHS", "RCNN", "RCNNConfig", "RegionCNN", "TrainingData",
    "compute_proposals", "crop_regions", "dilate_boxes", "extract_features", "finetune",
    "fit_bbox_regressors", "fit_svms", "format_proposal_report", "make_proposer",
    "mine_hard_negatives", "normalize", "plot_recall", "prepare_training_data", "pretrain_on_crops",
    "proposal_report", "region_features", "resolve", "train_bbox_regressors", "train_cnn",
    "train_one_svm", "train_rcnn", "train_svms", "warp_regions",
]
