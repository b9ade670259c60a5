"""R-CNN Stages: object detection from R-CNN to Mask R-CNN, one runnable stage at a time.

The package is organised by paper concept (see ``README.md``):

    datasets, synthetic, transforms   the shared data: one dataset item format for every stage
    backbone                          the shared CNN: EfficientNet-Lite0 from ImageNet weights
                                      (or the tiny CNN from random weights, the ablation)
    ops                               box ops, NMS, box coding, RoI pooling, RoIAlign
    evaluate                          COCO-style AP through pycocotools + timing, one result record
    engine, checkpoint, device        the short visible training loop and what it needs
    draw                              matplotlib pictures of boxes, labels, scores and masks

``python -m stages`` lists the stages and the commands that run them.
"""

__version__ = "0.1.0"

# (command-line module, paper, what it adds) -- printed by ``python -m stages``
STAGES = [
    ("stages.rcnn", "R-CNN (Girshick et al., CVPR 2014)",
     "selective search / sliding windows, warped regions, a CNN per region, linear SVMs, box regression"),
    ("stages.fast_rcnn", "Fast R-CNN (Girshick, ICCV 2015) + SPP-net (He et al., ECCV 2014)",
     "one CNN pass per image, RoI pooling or SPP, softmax + box regression in one multi-task loss"),
    ("stages.faster_rcnn", "Faster R-CNN (Ren et al., NeurIPS 2015)",
     "a Region Proposal Network (3 scales x 3 ratios of anchors) replaces selective search"),
    ("stages.mask_rcnn", "Mask R-CNN (He et al., ICCV 2017) + FPN (Lin et al., CVPR 2017)",
     "RoIAlign replaces RoI pooling, a per-class mask branch, a feature pyramid"),
]
