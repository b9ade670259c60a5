"""The tutorial's fine-tuning path with and without COCO weights (``stages.torchvision.finetune``).

Without the COCO file, ``build_finetune_model`` builds torchvision's ``MaskRCNN`` on our
ImageNet-pretrained EfficientNet-Lite0; with a file it takes the tutorial's ResNet-50-FPN path.
Both must run the tutorial's ``replace_predictors``. Nothing here reads a real COCO file: the
file path's loader is replaced by one that returns a small model of the COCO layout (91 classes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models.detection import MaskRCNN

from stages.backbone import build_backbone
from stages.data.sources import CocoDataset
from stages.torchvision import finetune
from stages.torchvision.adapter import TorchvisionDetector
from stages.torchvision.peer_models import BackboneWithPyramid, build_peer_mask_rcnn

COCO_CLASSES = 90  # torchvision's COCO model: 90 object classes + background = 91 outputs


def spy_on_replace_predictors(monkeypatch) -> list:
    """Record every call of ``finetune.replace_predictors`` as (model, num_classes)."""
    calls, original = [], finetune.replace_predictors

    def spy(model, num_classes):
        calls.append((model, num_classes))
        return original(model, num_classes)
    monkeypatch.setattr(finetune, "replace_predictors", spy)
    return calls


def assert_predictors_for(model: MaskRCNN, K: int) -> None:
    """K object classes: K + 1 scores, 4 (K + 1) box offsets, K + 1 masks of 28 x 28 per RoI."""
    box, mask = model.roi_heads.box_predictor, model.roi_heads.mask_predictor
    assert box.cls_score.out_features == K + 1
    assert box.bbox_pred.out_features == 4 * (K + 1)
    assert mask.mask_fcn_logits.out_channels == K + 1
    assert mask.conv5_mask.out_channels == 256  # the tutorial's hidden_layer


def test_replace_predictors_resizes_only_the_two_predictors():
    # a model built for COCO's 91 outputs, small heads (box head 128 wide, mask head 32 channels)
    torch.manual_seed(0)
    model = build_peer_mask_rcnn(COCO_CLASSES, body=build_backbone("tiny", "C5"),
                                 representation_size=128, mask_head_channels=32)
    box_head, mask_head = model.roi_heads.box_head, model.roi_heads.mask_head
    assert model.roi_heads.box_predictor.cls_score.out_features == COCO_CLASSES + 1
    assert finetune.replace_predictors(model, 2) is model
    assert_predictors_for(model, 2)  # 3 / 12 / 3
    # their inputs are read from the layers they replace: the box head's 128 and the mask head's 32
    assert model.roi_heads.box_predictor.cls_score.in_features == 128
    assert model.roi_heads.mask_predictor.conv5_mask.in_channels == 32
    assert model.roi_heads.box_head is box_head and model.roi_heads.mask_head is mask_head


def test_without_weights_the_imagenet_backbone_model_gets_the_tutorials_predictors(monkeypatch,
                                                                                    tiny_synthetic):
    calls = spy_on_replace_predictors(monkeypatch)
    torch.manual_seed(0)
    model, which = finetune.build_finetune_model(3, None, image_size=128)
    assert which == ("torchvision MaskRCNN on our ImageNet EfficientNet-Lite0 backbone, "
                     "no COCO weights available")
    assert isinstance(model, MaskRCNN) and len(calls) == 1 and calls[0] == (model, 3)
    assert_predictors_for(model, 3)  # 4 / 16 / 4
    # our EfficientNet-Lite0 with its ImageNet weights, through torchvision's FPN
    assert isinstance(model.backbone, BackboneWithPyramid)
    imagenet = build_backbone("efficientnet_lite0", "C5").state_dict()
    ours = model.backbone.body.state_dict()
    assert ours.keys() == imagenet.keys() and all(torch.equal(ours[k], imagenet[k]) for k in ours)
    assert model.transform.min_size == (128,) and model.transform.max_size == 128

    # it trains (torchvision's five losses, mask included) and predicts through our adapter
    ds = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")
    images, targets = zip(*(ds[i] for i in range(2)))
    detector = TorchvisionDetector(model).train()
    losses = detector(images, targets)
    assert {"loss_classifier", "loss_box_reg", "loss_mask"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    detector.eval()
    with torch.no_grad():
        out = detector(images[:1])[0]
    D = len(out["boxes"])
    assert out["masks"].shape == (D, 1, 128, 128) and set(out["labels"].tolist()) <= {1, 2, 3}


def test_a_weights_path_takes_the_tutorials_path(monkeypatch, tmp_path):
    # the file's loader returns a small model of the COCO layout (91 outputs) instead of reading
    # a 170 MB ResNet-50-FPN: what follows it is the tutorial's path, run for real
    torch.manual_seed(0)
    coco_layout = build_peer_mask_rcnn(COCO_CLASSES, body=build_backbone("tiny", "C5"),
                                       representation_size=128, mask_head_channels=32)
    loaded = []

    def fake_load_local_model(path, trainable_backbone_layers, **kwargs):
        loaded.append((path, kwargs))
        return coco_layout
    def offline_path(*args, **kwargs):
        raise AssertionError("a weights file was given, yet the offline path ran")
    monkeypatch.setattr(finetune, "load_local_model", fake_load_local_model)
    monkeypatch.setattr(finetune, "get_backbone_instance_segmentation_model", offline_path)
    calls = spy_on_replace_predictors(monkeypatch)

    path = str(tmp_path / "maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth")
    model, which = finetune.build_finetune_model(1, path, image_size=256, aspect_ratios=(1.0, 2.0, 3.0))
    assert which == f"COCO-pretrained ResNet-50-FPN from {path}"
    assert model is coco_layout and calls == [(model, 1)]
    assert loaded[0][0] == Path(path)
    assert loaded[0][1]["min_size"] == 256 and loaded[0][1]["max_size"] == 256
    assert_predictors_for(model, 1)  # 91 -> 2 / 8 / 2
    assert model.rpn.anchor_generator.aspect_ratios == ((1.0, 2.0, 3.0),) * 5


def test_no_stage_imports_the_torchvision_package():
    """The fine-tuning path is reached from ``stages.torchvision`` (``python -m
    stages.torchvision.finetune``): no module of a stage package imports it, anywhere in the file,
    so that stages 1-4 come before torchvision's models in the import graph."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "stages"
    found = []
    for stage in ("rcnn", "fast_rcnn", "faster_rcnn", "mask_rcnn"):
        for path in sorted((root / stage).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                         [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                found += [f"{path.relative_to(root)}: {n}" for n in names
                          if n == "stages.torchvision" or n.startswith("stages.torchvision.")]
    assert not found, found
