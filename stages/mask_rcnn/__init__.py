"""Stage 4: Mask R-CNN (He et al., ICCV 2017) with FPN (Lin et al., CVPR 2017).

    fpn.py     FPN (top-down + lateral), assign_levels (FPN Eq. 1)
    heads.py   MultiLevelPooler (RoIAlign / RoIPool per level), MaskHead, mask_targets, mask_loss,
               mask_probabilities, paste_masks
    model.py   MaskRCNN, build_mask_rcnn
    config.py  MaskRCNNConfig (stage 3's settings + FPN, RoIAlign, masks; the Table 2 switches)
    ablation.py  the Table 2 variants, run and tabulated (benchmarks/ablate_mask_rcnn.py)

``python -m stages.mask_rcnn`` trains, evaluates and saves a run (``--model torchvision`` for
torchvision's ``maskrcnn_resnet50_fpn`` fine-tuning path).
"""

from stages.mask_rcnn.config import MaskRCNNConfig
from stages.mask_rcnn.fpn import FPN, assign_levels
from stages.mask_rcnn.heads import (MaskHead, MultiLevelPooler, mask_loss, mask_probabilities,
                                    mask_targets, paste_masks)
from stages.mask_rcnn.model import MaskRCNN, build_mask_rcnn

__all__ = ["FPN", "MaskHead", "MaskRCNN", "MaskRCNNConfig", "MultiLevelPooler", "assign_levels",
           "build_mask_rcnn", "mask_loss", "mask_probabilities", "mask_targets", "paste_masks"]
