"""torchvision's detection models in this repo's contract: the tutorial's fine-tuning path and the
peers of our stages, all assembled from torchvision parts.

    finetune.py     the "TorchVision Object Detection Finetuning Tutorial": replace_predictors (its
                    lines: the two predictors for our K classes) on get_instance_segmentation_model
                    (ResNet-50-FPN with COCO weights) or, without them,
                    get_backbone_instance_segmentation_model (MaskRCNN on our ImageNet backbone);
                    build_finetune_model picks one and says which; python -m
                    stages.torchvision.finetune fine-tunes it on our data like a stage
    weights.py      its weights: torchvision's COCO download (WeightsUnavailableError offline), or
                    a local file (read_state_dict; WeightsFileError names a bad one)
    anchors.py      make_anchor_generator and the anchor sizes / ratios for 128-px images
    peer_models.py  build_peer_faster_rcnn / build_peer_mask_rcnn: torchvision's FasterRCNN /
                    MaskRCNN on OUR backbone, the benchmark peers of our stages 3 and 4
    adapter.py      TorchvisionDetector: any of these behind our model contract (losses in train
                    mode, detections with a "timing" dict in eval mode)
    peers.py        python -m stages.torchvision.peers: train and evaluate a peer like a stage

Conventions that differ between torchvision and this repo (each is converted in these modules,
once):

    classes        ours: K object classes, background excluded (``dataset.num_classes``);
                   torchvision's ``num_classes`` = K + 1, background included. Every function
                   here takes OUR K and passes K + 1 to torchvision.
    aspect ratio   torchvision's ``AnchorGenerator`` uses r = h / w: an anchor of size s has
                   h = s * sqrt(r), w = s / sqrt(r), so r = 2.0 is TALL (pedestrians: 2 to 3).
    resizing       ``GeneralizedRCNNTransform`` rescales every image by
                   min(min_size / shorter side, max_size / longer side). With
                   min_size = max_size = 128 an image whose longer side is 128 (our synthetic set,
                   or any set read with ``--long-side 128``) keeps its size (scale 1); a smaller
                   image is enlarged. Detections come back in the input image's pixels.
    normalisation  our backbones normalise their input themselves; the peers therefore set
                   torchvision's image_mean = 0, image_std = 1, so it happens exactly once. The
                   ResNet-50 model keeps torchvision's own normalisation (its weights expect it).
    masks          targets: uint8 [N, H, W] in both. Outputs: torchvision gives float
                   probabilities [D, 1, H, W] pasted into the image, which ``evaluate`` reads.
    crowds         torchvision has no notion of iscrowd; the adapter drops crowd objects from
                   training targets (our datasets never train on them either).

Shape shorthand: N images, K object classes, D detections per image, A anchors per location.
"""
