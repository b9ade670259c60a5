"""Stage 2: Fast R-CNN (Girshick, ICCV 2015) with RoI pooling, or SPP-net's pyramid pooling.

**Reused from stage 1 (R-CNN):** selective-search proposals (the same cache), the backbone, fc6 and
fc7, the box coding (R-CNN Appendix C), per-class NMS.
**Replaced:** a CNN pass per warped region -> one pass per image and RoI pooling of each proposal
from the shared map; SVMs and box regressors trained apart -> one head, one loss.
**Added:** RoI pooling / SPP (``pooling.py``), RoI sampling (``sampling.py``), the multi-task loss.

    python -m stages.fast_rcnn [--pool roi|spp] [--pool-kernel ours|torchvision] [--help]

    config.py    FastRCNNConfig (the paper's settings, scaled to our images)
    pooling.py   RoIPool, SPPPool, build_pooler                     sec. 2.1; SPP-net sec. 2.2
    sampling.py  sample_rois, sample_batch: RoI labels and mini-batches      sec. 2.3
    head.py      FastRCNNHead, fast_rcnn_loss (Eq. 1-3), detect (test time, sec. 3)
    model.py     CachedSelectiveSearch, FastRCNN, build_fast_rcnn: the parts assembled
"""

from stages.fast_rcnn.config import FastRCNNConfig
from stages.fast_rcnn.head import FastRCNNHead, detect, fast_rcnn_loss
from stages.fast_rcnn.model import CachedSelectiveSearch, FastRCNN, build_fast_rcnn
from stages.fast_rcnn.pooling import RoIPool, SPPPool, build_pooler
from stages.fast_rcnn.sampling import sample_batch, sample_rois

__all__ = ["CachedSelectiveSearch", "FastRCNN", "FastRCNNConfig", "FastRCNNHead", "RoIPool", "SPPPool",
           "build_fast_rcnn", "build_pooler", "detect", "fast_rcnn_loss", "sample_batch", "sample_rois"]
