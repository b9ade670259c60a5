"""Stage 4: Mask R-CNN (He et al., ICCV 2017) with FPN (Lin et al., CVPR 2017).

**Reused from stage 3 (Faster R-CNN):** the detector with its backbone, RPN, box head, RoI
sampling, losses and detection, unchanged.
**Replaced:** the pooler, RoIPool -> RoIAlign (one part); with ``--fpn`` the one map -> a pyramid.
**Added:** the mask branch (per-class binary masks), FPN and the RPN on every level.

    pooling.py    RoIAlign, MultiLevelPooler, build_pooler        sec. 3; FPN Eq. 1
    fpn.py        FPN (top-down + lateral), assign_levels (FPN Eq. 1), PyramidRPN (FPN sec. 4.1)
    mask_head.py  MaskHead, mask_targets, class_channel, mask_loss, mask_probabilities, paste_masks
    model.py      MaskRCNN (= FasterRCNN + mask branch [+ FPN]), build_mask_rcnn
    config.py     MaskRCNNConfig (stage 3's settings + FPN, RoIAlign, masks; the Table 2 switches)
    ablation.py   the Table 2 variants, run and tabulated (benchmarks/ablate_mask_rcnn.py)

``python -m stages.mask_rcnn`` trains, evaluates and saves a run (``__main__.train_and_evaluate``);
torchvision's ``maskrcnn_resnet50_fpn`` fine-tuning path is ``python -m stages.torchvision.finetune``.
"""

from stages.mask_rcnn.config import MaskRCNNConfig
from stages.mask_rcnn.fpn import FPN, PyramidRPN, assign_levels
from stages.mask_rcnn.mask_head import (MaskHead, class_channel, mask_loss, mask_probabilities,
                                        mask_targets, paste_masks)
from stages.mask_rcnn.model import MaskRCNN, build_mask_rcnn
from stages.mask_rcnn.pooling import MultiLevelPooler, RoIAlign, build_pooler

__all__ = ["FPN", "MaskHead", "MaskRCNN", "MaskRCNNConfig", "MultiLevelPooler", "PyramidRPN", "RoIAlign",
           "assign_levels", "build_mask_rcnn", "build_pooler", "class_channel", "mask_loss",
           "mask_probabilities", "mask_targets", "paste_masks"]
