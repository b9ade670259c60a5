"""What the papers contain, as far as this repository cites them: one ``Paper`` per paper.

``tests/test_citations.py`` checks every "Table N", "sec. N.N", "Eq. N", "Figure N" and
"Appendix X" of the README, ``benchmarks/report.md`` and the notebooks' Markdown against these
lists, and the numbers a sentence quotes against the table it cites (``numbers``).

Only what is certain is listed; a true citation of a part missing here fails the test, and the fix
is then to add that part, with what it is, after checking it in the paper. Numbering follows the
arXiv versions (the ones with appendices: R-CNN's tech report v5, Faster R-CNN v3, Mask R-CNN v3).

Layout of a ``Paper``:

* ``names``: how the text names the paper ("Mask R-CNN"); a citation belongs to the nearest name
  before it in its sentence (``test_citations`` says the whole rule);
* ``sections``, ``tables``, ``equations``, ``figures``, ``appendices``: label -> what it is. A
  table's panels are labels of their own ("2c"); citing "Table 2" covers all of them;
* ``numbers``: table label -> numbers the table holds that the repository quotes (AP in percent,
  times as printed). A sentence that cites a table of a paper and quotes a number that this list
  puts in *another* table of that paper only fails; numbers listed nowhere are not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Paper:
    key: str
    names: tuple[str, ...]
    reference: str
    sections: dict[str, str]
    tables: dict[str, str] = field(default_factory=dict)
    equations: dict[str, str] = field(default_factory=dict)
    figures: dict[str, str] = field(default_factory=dict)
    appendices: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def parts(self, kind: str) -> dict[str, str]:
        """The labelled parts of one kind: "table", "section", "equation", "figure", "appendix"."""
        return {"table": self.tables, "section": self.sections, "equation": self.equations,
                "figure": self.figures, "appendix": self.appendices}[kind]


RCNN = Paper(
    key="rcnn",
    names=("R-CNN",),
    reference="Girshick, Donahue, Darrell, Malik, Rich feature hierarchies for accurate object "
              "detection and semantic segmentation, CVPR 2014 (arXiv 1311.2524, tech report v5)",
    sections={
        "1": "Introduction",
        "2": "Object detection with R-CNN",
        "2.1": "Module design: region proposals (selective search), feature extraction (warp to 227 x 227)",
        "2.2": "Test-time detection: SVM scores, greedy per-class NMS; run-time analysis",
        "2.3": "Training: supervised pre-training (ImageNet), domain-specific fine-tuning, "
               "object category classifiers (SVMs, hard negative mining)",
        "2.4": "Results on PASCAL VOC 2010-12",
        "2.5": "Results on ILSVRC2013 detection",
        "3": "Visualization, ablation, and modes of error",
        "3.1": "Visualizing learned features",
        "3.2": "Ablation studies (performance layer by layer, with and without fine-tuning)",
        "3.3": "Network architectures (AlexNet against VGG16)",
        "3.4": "Detection error analysis",
        "3.5": "Bounding-box regression",
        "4": "The ILSVRC2013 detection dataset",
        "5": "Semantic segmentation",
        "6": "Conclusion",
    },
    tables={
        "1": "detection AP on VOC 2010 test",
        "2": "detection AP on VOC 2007 test: pool5 / fc6 / fc7 with and without fine-tuning, "
             "+ bounding-box regression (BB), DPM baselines",
        "3": "detection AP on VOC 2007 test for two CNN architectures (AlexNet, VGG16)",
        "4": "ILSVRC2013 ablation: training data, fine-tuning, bounding-box regression",
        "5": "segmentation mean accuracy on VOC 2011 validation",
        "6": "segmentation accuracy on VOC 2011 test",
    },
    equations={
        "1": "Appendix C: G^_x = P_w d_x(P) + P_x (the learned transformation, x)",
        "2": "Appendix C: G^_y = P_h d_y(P) + P_y",
        "3": "Appendix C: G^_w = P_w exp(d_w(P))",
        "4": "Appendix C: G^_h = P_h exp(d_h(P))",
        "5": "Appendix C: the ridge regression objective, lambda ||w||^2",
        "6": "Appendix C: target t_x = (G_x - P_x) / P_w",
        "7": "Appendix C: target t_y = (G_y - P_y) / P_h",
        "8": "Appendix C: target t_w = log(G_w / P_w)",
        "9": "Appendix C: target t_h = log(G_h / P_h)",
    },
    figures={
        "1": "object detection system overview (input, proposals, warp, CNN, classify)",
    },
    appendices={
        "A": "object proposal transformations (tightest square with/without context, warp; p = 16)",
        "B": "positive vs. negative examples and softmax (why SVMs: 54.2 against 50.9 mAP)",
        "C": "bounding-box regression (pool5 features, targets, ridge lambda = 1000, IoU > 0.6 pairs)",
        "D": "additional feature visualizations",
        "E": "per-category segmentation results",
        "F": "analysis of cross-dataset redundancy",
        "G": "document changelog",
    },
    numbers={
        "2": (44.7, 54.2, 58.5),  # fc7 not fine-tuned, fine-tuned fc7, + box regression (VOC 2007 mAP)
        "3": (54.2, 58.5, 66.0),  # AlexNet without / with BB; VGG16 with BB
    },
)

SPPNET = Paper(
    key="sppnet",
    names=("SPP-net", "SPPnet"),
    reference="He, Zhang, Ren, Sun, Spatial pyramid pooling in deep convolutional networks for "
              "visual recognition, ECCV 2014 (arXiv 1406.4729)",
    sections={
        "1": "Introduction",
        "2": "Deep networks with spatial pyramid pooling",
        "2.1": "Convolutional layers and feature maps",
        "2.2": "The spatial pyramid pooling layer",
        "2.3": "Training the network (single-size, multi-size)",
        "3": "SPP-net for image classification",
        "4": "SPP-net for object detection",
        "4.1": "Detection algorithm (features once per image, pooled per window)",
        "4.2": "Detection results",
        "4.3": "Complexity and running time",
        "5": "Conclusion",
    },
    figures={
        "1": "crop / warp against SPP: the pipelines of a conventional CNN and SPP-net",
        "3": "a network structure with a spatial pyramid pooling layer",
    },
)

FAST_RCNN = Paper(
    key="fast_rcnn",
    names=("Fast R-CNN",),
    reference="Girshick, Fast R-CNN, ICCV 2015 (arXiv 1504.08083)",
    sections={
        "1": "Introduction",
        "1.1": "R-CNN and SPPnet",
        "1.2": "Contributions",
        "2": "Fast R-CNN architecture and training",
        "2.1": "The RoI pooling layer (H x W grid of max-pooled sub-windows, 7 x 7 for VGG16)",
        "2.2": "Initializing from pre-trained networks",
        "2.3": "Fine-tuning for detection: multi-task loss, mini-batch sampling (N = 2, R = 128, "
               "25 % foreground), back-propagation through RoI pooling, SGD hyper-parameters",
        "2.4": "Scale invariance",
        "3": "Fast R-CNN detection",
        "3.1": "Truncated SVD for faster detection",
        "4": "Main results",
        "4.1": "Experimental setup",
        "4.2": "VOC 2010 and 2012 results",
        "4.3": "VOC 2007 results",
        "4.4": "Training and testing time",
        "4.5": "Which layers to fine-tune?",
        "5": "Design evaluation",
        "5.1": "Does multi-task training help?",
        "5.2": "Scale invariance: to brute force or finesse? (single scale s = 600)",
        "5.3": "Do we need more training data?",
        "5.4": "Do SVMs outperform softmax?",
        "5.5": "Are more proposals always better?",
        "5.6": "Preliminary MS COCO results",
        "6": "Conclusion",
    },
    tables={
        "1": "VOC 2007 test detection AP (VGG16): SPPnet, R-CNN, Fast R-CNN",
        "2": "VOC 2010 test detection AP",
        "3": "VOC 2012 test detection AP",
        "4": "runtime of the same models in Fast R-CNN, R-CNN and SPPnet: train hours, test "
             "seconds per image, with truncated SVD, VOC 2007 mAP",
        "5": "effect of restricting which layers are fine-tuned (VGG16)",
        "6": "multi-task training against stage-wise training",
        "7": "multi-scale against single-scale",
        "8": "Fast R-CNN with softmax against SVMs (VOC 2007 mAP)",
    },
    equations={
        "1": "the multi-task loss L = L_cls(p, u) + lambda [u >= 1] L_loc(t^u, v)",
        "2": "L_loc: smooth L1 summed over x, y, w, h",
        "3": "smooth_L1(x) = 0.5 x^2 if |x| < 1 else |x| - 0.5",
        "4": "back-propagation through the RoI pooling layer",
        "5": "truncated SVD of a fully connected layer, W ~ U S_t V^T",
    },
    figures={
        "1": "Fast R-CNN architecture",
        "2": "timing of VGG16 before and after truncated SVD",
        "3": "VOC 2007 mAP and average recall against the number of proposals",
    },
    numbers={
        "1": (66.9, 70.0, 66.0, 63.1),
        "4": (66.9, 66.6, 66.0, 63.1, 9.5, 84.0, 8.8, 0.32, 0.22, 47.0, 2.3, 146.0, 213.0),
        "8": (66.9, 66.8),
    },
)

FASTER_RCNN = Paper(
    key="faster_rcnn",
    names=("Faster R-CNN",),
    reference="Ren, He, Girshick, Sun, Faster R-CNN: towards real-time object detection with "
              "region proposal networks, NeurIPS 2015 (arXiv 1506.01497 v3)",
    sections={
        "1": "Introduction",
        "2": "Related work",
        "3": "Faster R-CNN",
        "3.1": "Region Proposal Networks (3 x 3 conv, sibling 1 x 1 cls and reg layers)",
        "3.1.1": "Anchors (k = 9: 3 scales x 3 aspect ratios; translation invariant; multi-scale)",
        "3.1.2": "Loss function (anchor labels by IoU 0.7 / 0.3, Eq. 1, box parameterisation Eq. 2)",
        "3.1.3": "Training RPNs (256 anchors per image, up to 1:1; new layers from random weights)",
        "3.2": "Sharing features for RPN and Fast R-CNN (4-step alternating, approximate joint)",
        "3.3": "Implementation details (scales, anchors, cross-boundary anchors, NMS 0.7, top-N)",
        "4": "Experiments",
        "4.1": "Experiments on PASCAL VOC",
        "4.2": "Experiments on MS COCO",
        "4.3": "From MS COCO to PASCAL VOC",
        "5": "Conclusion",
    },
    tables={
        "1": "the learned average proposal size for each anchor (ZF net)",
        "2": "VOC 2007 test detection results (ZF): proposal methods and RPN ablations",
        "3": "VOC 2007 test detection results (VGG16): SS + Fast R-CNN against RPN",
        "4": "VOC 2012 test detection results",
        "5": "timing (ms) on a K40 GPU: SS 1510 + 320 against conv 141 + proposals 10 + region-wise 47",
        "6": "VOC 2007 test results per class (VGG16)",
        "7": "VOC 2012 test results per class (VGG16)",
        "8": "VOC 2007 test results with different settings of anchors",
        "9": "VOC 2007 test results with different values of lambda",
        "10": "one-stage detection against two-stage proposal + detection",
        "11": "object detection results on MS COCO",
        "12": "VOC 2007 / 2012 test results with different training data (COCO)",
    },
    equations={
        "1": "the RPN loss (1/N_cls) sum L_cls + lambda (1/N_reg) sum p_i* L_reg",
        "2": "the box parameterisation t_x, t_y, t_w, t_h relative to the anchor",
    },
    figures={
        "1": "different schemes for addressing multiple scales and sizes (pyramids of images, "
             "of filters, of anchors)",
        "2": "Faster R-CNN is a single, unified network (RPN as attention)",
        "3": "left: the Region Proposal Network and its anchors; right: example detections",
    },
    numbers={
        "3": (66.9, 69.9, 70.0, 73.2, 78.8),
        "5": (1510.0, 320.0, 1830.0, 141.0, 47.0, 198.0),
    },
)

FPN = Paper(
    key="fpn",
    names=("FPN", "Feature Pyramid Network"),
    reference="Lin, Dollar, Girshick, He, Hariharan, Belongie, Feature pyramid networks for "
              "object detection, CVPR 2017 (arXiv 1612.03144)",
    sections={
        "1": "Introduction",
        "2": "Related work",
        "3": "Feature Pyramid Networks: bottom-up pathway, top-down pathway and lateral connections",
        "4": "Applications",
        "4.1": "Feature Pyramid Networks for RPN (one anchor scale per level, P2..P6)",
        "4.2": "Feature Pyramid Networks for Fast R-CNN (RoI to level, Eq. 1)",
        "5": "Experiments on object detection",
        "5.1": "Region proposal with RPN",
        "5.2": "Object detection with Fast/Faster R-CNN",
    },
    tables={
        "1": "bounding-box proposal results of RPN on COCO minival (AR), ablations",
        "2": "object detection results of Fast R-CNN on fixed proposals",
        "3": "object detection results of Faster R-CNN with consistent proposals",
        "4": "single-model results on the COCO detection benchmark",
    },
    equations={
        "1": "RoI to pyramid level: k = floor(k0 + log2(sqrt(w h) / 224)), k0 = 4",
    },
    figures={
        "1": "(a) featurized image pyramid, (b) single feature map, (c) pyramidal feature "
             "hierarchy, (d) Feature Pyramid Network",
        "2": "top: top-down architecture with skip connections, predicting on the finest level; "
             "bottom: the FPN, predicting on every level",
        "3": "a building block: lateral connection and top-down pathway merged by addition",
    },
)

MASK_RCNN = Paper(
    key="mask_rcnn",
    names=("Mask R-CNN",),
    reference="He, Gkioxari, Dollar, Girshick, Mask R-CNN, ICCV 2017 (arXiv 1703.06870 v3)",
    sections={
        "1": "Introduction",
        "2": "Related work",
        "3": "Mask R-CNN: the mask branch, mask representation, RoIAlign, network architecture, "
             "L = L_cls + L_box + L_mask",
        "3.1": "Implementation details: training (positive RoI IoU >= 0.5, 512 RoIs FPN / 64 C4, "
               "shorter side 800) and inference (masks on the top 100 boxes, binarised at 0.5)",
        "4": "Experiments: instance segmentation",
        "4.1": "Main results",
        "4.2": "Ablation experiments",
        "4.3": "Bounding box detection results",
        "4.4": "Timing",
        "5": "Mask R-CNN for human pose estimation",
    },
    tables={
        "1": "instance segmentation mask AP on COCO test-dev: MNC, FCIS, Mask R-CNN",
        "2": "ablations on COCO minival (2a backbone, 2b sigmoid vs softmax, 2c RoIAlign vs "
             "RoIPool C4, 2d C5 stride 32, 2e mask head)",
        "2a": "backbone architecture: ResNet-50/101-C4, -FPN, ResNeXt-101-FPN",
        "2b": "multinomial (softmax) against independent (per-class sigmoid) masks",
        "2c": "RoIAlign against RoIPool and RoIWarp, ResNet-50-C4 (stride 16); max or average",
        "2d": "RoIAlign against RoIPool, ResNet-50-C5 (stride 32): mask AP and box AP",
        "2e": "mask branch: MLP (fc layers) against FCN",
        "3": "object detection box AP on COCO test-dev (Faster R-CNN variants vs Mask R-CNN)",
        "4": "keypoint detection AP on COCO test-dev",
        "5": "multi-task learning of box, mask and keypoint, person category, minival",
        "6": "RoIAlign against RoIPool for keypoint detection, minival",
        "7": "results on Cityscapes val and test",
    },
    figures={
        "1": "the Mask R-CNN framework for instance segmentation",
        "2": "Mask R-CNN results on the COCO test set",
        "3": "RoIAlign: bilinear interpolation at sampling points in each bin, no quantisation",
        "4": "head architecture: the C4 and FPN heads with the mask branch",
    },
    appendices={
        "A": "experiments on Cityscapes",
        "B": "enhanced results on COCO",
    },
    numbers={
        # COCO test-dev mask AP / AP50 / AP75 / APS / APM / APL
        "1": (24.6, 44.3, 24.8, 4.7, 25.9, 43.6,    # MNC, ResNet-101-C4
              29.2, 49.5, 7.1, 31.3, 50.0,          # FCIS + OHEM, ResNet-101-C5-dilated
              33.6, 54.5,                           # FCIS+++ + OHEM
              33.1, 54.9, 34.8, 12.1, 35.6, 51.1,   # Mask R-CNN, ResNet-101-C4
              35.7, 58.0, 37.8, 15.5, 38.1, 52.4,   # Mask R-CNN, ResNet-101-FPN
              37.1, 60.0, 39.4, 16.9, 39.9, 53.5),  # Mask R-CNN, ResNeXt-101-FPN
        # COCO minival mask AP (AP / AP50 / AP75)
        "2a": (30.3, 51.2, 31.5, 33.6),               # ResNet-50-C4; ResNet-50-FPN mask AP
        "2b": (24.8, 44.1, 25.1, 30.3, 51.2, 31.5),   # softmax; per-class sigmoid
        "2c": (26.9, 48.8, 26.4, 27.2, 49.2, 27.1,    # RoIPool; RoIWarp
               30.2, 51.0, 31.8, 30.3, 51.2, 31.5),   # RoIAlign max; average
        "2d": (23.6, 46.5, 21.6, 30.9, 51.8, 32.1,    # RoIPool; RoIAlign, mask
               28.2, 34.0),                           # box AP, RoIPool; RoIAlign
        # COCO test-dev box AP
        "3": (37.3, 38.2),  # Faster R-CNN with RoIAlign, ResNet-101-FPN; Mask R-CNN, ResNet-101-FPN
    },
)

PAPERS: tuple[Paper, ...] = (RCNN, SPPNET, FAST_RCNN, FASTER_RCNN, FPN, MASK_RCNN)
