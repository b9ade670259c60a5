"""Stage 3: Faster R-CNN (Ren et al., NeurIPS 2015): a Region Proposal Network on shared features.

**Reused from stage 2 (Fast R-CNN):** the detector (``FastRCNN``), its backbone, head, RoI
sampling, loss and detection, unchanged.
**Replaced:** the proposer: selective search -> the RPN, on the head's own feature map.
**Added:** anchors, the RPN (its head, anchor labels, loss and proposal layer).

    anchors.py   anchor_shapes, grid_anchors             3 scales x 3 ratios at every location
    rpn.py       RPNHead, assign_anchors, sample_anchors, rpn_loss, propose, RegionProposalNetwork
    model.py     FasterRCNN (= FastRCNN with an RPN), build_faster_rcnn
    config.py    FasterRCNNConfig (stage 2's head settings + the RPN's)
    rpn_vs_selective_search.py   the two proposers compared: recall against N, ms per image

``python -m stages.faster_rcnn`` trains, evaluates and saves a run.
"""

from stages.faster_rcnn.anchors import anchor_shapes, grid_anchors
from stages.faster_rcnn.config import FasterRCNNConfig
from stages.faster_rcnn.model import FasterRCNN, build_faster_rcnn
from stages.faster_rcnn.rpn import (RegionProposalNetwork, RPNHead, assign_anchors, flatten_rpn_outputs,
                                    inside_image, propose, rpn_loss, sample_anchors)

__all__ = ["FasterRCNN", "FasterRCNNConfig", "RPNHead", "RegionProposalNetwork", "anchor_shapes",
           "assign_anchors", "build_faster_rcnn", "flatten_rpn_outputs", "grid_anchors",
           "inside_image", "propose", "rpn_loss", "sample_anchors"]
