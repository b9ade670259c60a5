"""torchvision's detectors in our contract: the tutorial's Mask R-CNN, the peers, the adapter.

Nothing here touches the network: the COCO download is replaced by one that fails, as offline.
"""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_Weights
from torchvision.ops.misc import FrozenBatchNorm2d

from stages.training.checkpoint import save_checkpoint
from stages.data.sources import CocoDataset
from stages.evaluation import evaluate
from stages.torchvision.adapter import TorchvisionDetector
from stages.torchvision.anchors import PEDESTRIAN_ASPECT_RATIOS, make_anchor_generator
from stages.torchvision.finetune import get_instance_segmentation_model
from stages.torchvision.peer_models import build_peer_faster_rcnn, build_peer_mask_rcnn
from stages.torchvision.weights import WeightsFileError, WeightsUnavailableError, read_state_dict

LOSS_KEYS = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
# Fewer proposals, sampled RoIs and detections than torchvision's defaults (2000 / 512 / 100):
# the same code paths at a fraction of the CPU time (the mask head runs on every detection).
# box_score_thresh = 0 keeps the detections of an untrained model, so there are shapes to check.
FAST = dict(rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100, rpn_pre_nms_top_n_test=100,
            rpn_post_nms_top_n_test=50, box_batch_size_per_image=32, box_detections_per_img=8,
            box_score_thresh=0.0)
SMALL_HEADS = dict(representation_size=128, mask_head_channels=32)


@pytest.fixture(scope="module")
def tiny(tiny_synthetic):
    """Two items of the synthetic set (128 x 128, boxes + uint8 masks) and the dataset itself."""
    ds = CocoDataset(tiny_synthetic / "train.json", tiny_synthetic / "images")
    items = [ds[0], ds[1]]
    assert all(im.shape == (3, 128, 128) and len(t["boxes"]) > 0 for im, t in items)
    return ds, [im for im, _ in items], [t for _, t in items]


def params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------------
# anchors: torchvision's aspect ratio is h / w
# ------------------------------------------------------------------------------------------------

def test_aspect_ratio_two_is_a_tall_anchor():
    # size 16, r = 2: h = 16 * sqrt(2) = 22.6, w = 16 / sqrt(2) = 11.3; (x1, y1, x2, y2) centred on
    # 0 and rounded: (-5.66, -11.31, 5.66, 11.31) -> (-6, -11, 6, 11)
    (cell,) = make_anchor_generator((16,), (2.0,), n_levels=1).cell_anchors
    torch.testing.assert_close(cell, torch.tensor([[-6.0, -11.0, 6.0, 11.0]]))
    # flat sizes on 5 levels: one size per level; flat ratios repeat on every level
    gen = make_anchor_generator((16, 32, 64, 128, 256), PEDESTRIAN_ASPECT_RATIOS, n_levels=5)
    assert gen.sizes == ((16,), (32,), (64,), (128,), (256,)) and gen.num_anchors_per_location() == [3] * 5
    # flat sizes on one level: all of them there (3 sizes x 3 ratios = Faster R-CNN's 9)
    assert make_anchor_generator((16, 32, 64), (0.5, 1.0, 2.0), 1).num_anchors_per_location() == [9]
    with pytest.raises(ValueError, match="5 feature levels"):
        make_anchor_generator((16, 32), (1.0,), n_levels=5)


# ------------------------------------------------------------------------------------------------
# 1. the tutorial's Mask R-CNN ResNet-50-FPN
# ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scratch_model():
    torch.manual_seed(0)
    return get_instance_segmentation_model(3, weights="none", **FAST)


def test_instance_segmentation_model_from_scratch_trains_and_predicts_masks(scratch_model, tiny):
    _, images, targets = tiny
    model = scratch_model
    # K = 3 object classes -> 4 outputs (background + 3), in both predictors
    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 4 * 4
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 4
    assert model.transform.min_size == (128,) and model.transform.max_size == 128
    assert model.rpn.anchor_generator.sizes == ((16,), (32,), (64,), (128,), (256,))

    detector = TorchvisionDetector(model).train()
    losses = detector(images, targets)
    assert set(losses) == LOSS_KEYS | {"loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert model.roi_heads.mask_predictor.mask_fcn_logits.weight.grad is not None

    detector.eval()
    with torch.no_grad():
        out = detector(images[:1])[0]
    D = len(out["boxes"])
    assert 0 < D <= 8 and out["masks"].shape == (D, 1, 128, 128)
    assert out["masks"].dtype == torch.float32 and 0 <= out["masks"].min() and out["masks"].max() <= 1
    assert out["labels"].dtype == torch.int64 and set(out["labels"].tolist()) <= {1, 2, 3}
    assert set(out["timing"]) == {"proposals", "network"}


def test_coco_weights_offline_raise_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    # every way torchvision could fetch the file fails, as without internet
    monkeypatch.setattr(MaskRCNN_ResNet50_FPN_Weights, "get_state_dict", offline)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError, match="could not download") as info:
        get_instance_segmentation_model(2, weights="coco")
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    assert "--weights PATH" in message and MaskRCNN_ResNet50_FPN_Weights.DEFAULT.url in message


def test_missing_or_damaged_weights_file_is_named(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsFileError, match="nowhere.pth: weights file not found"):
        get_instance_segmentation_model(2, weights=str(missing))
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"this is not a torch file")
    with pytest.raises(WeightsFileError, match="damaged.pth: not a readable weights file"):
        get_instance_segmentation_model(2, weights=str(damaged))
    truncated = tmp_path / "truncated.pth"
    torch.save({"w": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(WeightsFileError, match="truncated.pth: not a readable weights file"):
        read_state_dict(truncated)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, other)
    with pytest.raises(WeightsFileError, match="other.pth: not a Mask R-CNN state_dict"):
        get_instance_segmentation_model(2, weights=str(other))


def test_a_saved_model_loads_back_from_its_path(scratch_model, tmp_path):
    # a bare state_dict of a from-scratch model (plain BatchNorm, K = 3): everything loads as saved
    path = tmp_path / "scratch.pth"
    torch.save(scratch_model.state_dict(), path)
    again = get_instance_segmentation_model(3, weights=str(path))
    assert params_equal(again, scratch_model)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in again.modules())
    # engine.train's checkpoint of the adapter (its "model" entry, keys with a "model." prefix)
    wrapped = save_checkpoint(tmp_path / "checkpoint.pt", stage="torchvision", config={},
                              class_names=["background", "a", "b", "c"],
                              model=TorchvisionDetector(scratch_model))
    assert read_state_dict(wrapped).keys() == scratch_model.state_dict().keys()
    # another class count and 4 anchors per location: predictors and the RPN's 1x1 output layers
    # are new, the rest (backbone, FPN, RPN 3x3 conv, box and mask heads) is loaded
    refit = get_instance_segmentation_model(1, weights=str(wrapped),
                                            aspect_ratios=(0.5,) + PEDESTRIAN_ASPECT_RATIOS)
    assert refit.roi_heads.box_predictor.cls_score.out_features == 2
    assert refit.rpn.head.cls_logits.out_channels == 4 and refit.rpn.head.bbox_pred.out_channels == 16
    assert params_equal(refit.backbone, scratch_model.backbone)
    assert params_equal(refit.rpn.head.conv, scratch_model.rpn.head.conv)
    assert params_equal(refit.roi_heads.mask_head, scratch_model.roi_heads.mask_head)


def test_a_coco_layout_file_loads_with_frozen_batchnorm_and_new_predictors(tmp_path):
    # torchvision's COCO checkpoint, offline: FrozenBatchNorm (no num_batches_tracked), 91 classes.
    # The same layout from resnet_fpn_backbone's defaults, random weights, stands in for it here.
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    torch.manual_seed(0)
    coco_like = MaskRCNN(resnet_fpn_backbone(backbone_name="resnet50", weights=None), num_classes=91)
    assert not any(k.endswith("num_batches_tracked") for k in coco_like.state_dict())
    path = tmp_path / "maskrcnn_resnet50_fpn_coco.pth"
    torch.save(coco_like.state_dict(), path)
    model = get_instance_segmentation_model(2, weights=str(path))
    assert model.roi_heads.box_predictor.cls_score.out_features == 3  # 91 -> K + 1 = 3
    assert model.roi_heads.mask_predictor.mask_fcn_logits.out_channels == 3
    assert params_equal(model.backbone, coco_like.backbone)
    frozen = [m for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    assert frozen and all(m.eps == 0.0 for m in frozen)  # as torchvision sets for COCO_V1
    # the tutorial's default: the stem and ResNet stage 1 stay frozen, the last 3 stages train
    body = model.backbone.body
    assert not body.conv1.weight.requires_grad and not body.layer1[0].conv1.weight.requires_grad
    assert body.layer2[0].conv1.weight.requires_grad


# ------------------------------------------------------------------------------------------------
# 2 + 3. the peers on our backbone, through the adapter
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("build", [build_peer_faster_rcnn, build_peer_mask_rcnn])
@pytest.mark.parametrize("fpn", [True, False])
def test_peer_trains_one_step_and_detects_inside_the_image(build, fpn, tiny):
    _, images, targets = tiny
    torch.manual_seed(0)
    heads = SMALL_HEADS if build is build_peer_mask_rcnn else {"representation_size": 128}
    tv_model = build(3, fpn=fpn, **heads, **FAST)
    detector = TorchvisionDetector(tv_model)
    has_mask = build is build_peer_mask_rcnn
    assert detector.has_mask == has_mask
    # the normalisation happens once, in our Backbone; torchvision does not rescale 128-px images
    assert tv_model.transform.image_mean == [0.0, 0.0, 0.0] and tv_model.transform.image_std == [1.0] * 3
    levels = tv_model.backbone(torch.zeros(1, 3, 128, 128))
    expected = ({"P2": 32, "P3": 16, "P4": 8, "P5": 4, "P6": 2} if fpn else {"C3": 16})
    assert {k: v.shape[-1] for k, v in levels.items()} == expected
    assert tv_model.rpn.anchor_generator.num_anchors_per_location() == ([3] * 5 if fpn else [9])

    detector.train()
    optimizer = torch.optim.SGD(detector.parameters(), lr=0.01, momentum=0.9)
    losses = detector(images, targets)
    assert set(losses) == LOSS_KEYS | ({"loss_mask"} if has_mask else set())
    assert all(torch.isfinite(v) for v in losses.values()), losses
    optimizer.zero_grad()
    sum(losses.values()).backward()
    optimizer.step()

    detector.eval()
    with torch.no_grad():
        outputs = detector(images)
    assert len(outputs) == 2
    for out in outputs:
        D = len(out["boxes"])
        assert D > 0 and out["boxes"].shape == (D, 4)
        assert (out["boxes"] >= 0).all() and (out["boxes"][:, [0, 2]] <= 128).all()
        assert (out["boxes"][:, [1, 3]] <= 128).all()
        assert set(out["labels"].tolist()) <= {1, 2, 3}
        assert ("masks" in out) == has_mask
        if has_mask:
            assert out["masks"].shape == (D, 1, 128, 128)
        assert set(out["timing"]) == {"proposals", "network"}
        assert out["timing"]["proposals"] > 0 and out["timing"]["network"] > 0


def test_peer_runs_through_evaluate(tiny):
    ds, _, _ = tiny
    torch.manual_seed(0)
    detector = TorchvisionDetector(build_peer_mask_rcnn(ds.num_classes, **SMALL_HEADS, **FAST))
    ev = evaluate(detector, ds, max_images=2)
    assert ev["mask"] is not None and ev["n_images"] == 2
    assert set(ev["timing_ms"]) == {"proposals", "network"} and ev["ms_proposals"] > 0
    assert 0 < ev["ms_proposals"] < ev["ms_per_image"]


def test_adapter_drops_crowds_and_masks_only_for_a_mask_model(tiny):
    _, _, targets = tiny
    target = dict(targets[0])
    N = len(target["boxes"])
    target["iscrowd"] = torch.zeros(N, dtype=torch.int64)
    target["iscrowd"][0] = 1
    faster = TorchvisionDetector(build_peer_faster_rcnn(3, fpn=False))
    mask = TorchvisionDetector(build_peer_mask_rcnn(3, fpn=False))
    tv = faster.torchvision_target(target)
    assert set(tv) == {"boxes", "labels"} and len(tv["boxes"]) == N - 1
    assert torch.equal(tv["boxes"], target["boxes"][1:])
    tv = mask.torchvision_target(target)
    assert tv["masks"].dtype == torch.uint8 and tv["masks"].shape == (N - 1, 128, 128)
