"""Each stage is the previous stage with what its paper changed, and nothing else.

    stage 2 -> 3   only the proposer: selective search (cached) -> a Region Proposal Network
    stage 3 -> 4   the pooler, RoIPool -> RoIAlign (one part), plus the mask branch (and FPN)

The tests build the stages with the same settings and compare them part for part, then run them
on the same images with the same weights and check that they compute the same thing.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stages.fast_rcnn import CachedSelectiveSearch, FastRCNN, FastRCNNConfig, RoIPool, build_fast_rcnn
from stages.faster_rcnn import FasterRCNN, FasterRCNNConfig, RegionProposalNetwork, build_faster_rcnn
from stages.mask_rcnn import MaskRCNN, MaskRCNNConfig, PyramidRPN, RoIAlign, build_mask_rcnn
from stages.selective_search import ProposalCache

K = 3  # classes
# the tiny backbone from random weights: fast, and the same in every stage
SMALL = dict(backbone="tiny", fc_dim=32, nms_kernel="ours", pool_kernel="ours")


def images_and_targets(n: int = 2, size: int = 64):
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    targets = []
    for i in range(n):
        masks = torch.zeros(2, size, size, dtype=torch.uint8)
        masks[0, 8:30, 10:34] = 1
        masks[1, 36:60, 30 + i:56] = 1
        targets.append({"boxes": torch.tensor([[10., 8., 34., 30.], [30. + i, 36., 56., 60.]]),
                        "labels": torch.tensor([1, 3]), "masks": masks})
    return images, targets


def module_types(model: nn.Module, skip: tuple = ()) -> dict[str, type]:
    """{name: class} of every submodule, without the ones under ``skip``."""
    return {name: type(m) for name, m in model.named_modules()
            if name and not name.startswith(skip)}


def same_outputs(a: nn.Module, b: nn.Module, images, targets):
    """Equal losses in train mode (same RoI sampling: same seed; the losses both compute) and equal
    detections in eval."""
    a.train(), b.train()
    torch.manual_seed(1)
    losses_a = a(images, targets)
    torch.manual_seed(1)
    losses_b = b(images, targets)
    for k in set(losses_a) & set(losses_b):
        torch.testing.assert_close(losses_a[k], losses_b[k], rtol=0, atol=0)
    a.eval(), b.eval()
    with torch.no_grad():
        detections_a, detections_b = a(images), b(images)
        assert sum(len(d["boxes"]) for d in detections_a) > 0  # something to compare
        for da, db in zip(detections_a, detections_b):
            for k in ("boxes", "labels", "scores"):
                torch.testing.assert_close(da[k], db[k], rtol=0, atol=0)
    return losses_a, losses_b


def test_faster_rcnn_class_adds_no_code_to_fast_rcnn():
    assert issubclass(FasterRCNN, FastRCNN)
    own = [name for name, v in vars(FasterRCNN).items() if callable(v) and not name.startswith("__")]
    assert own == [], f"FasterRCNN defines {own}: the stage 2 -> 3 diff should be the proposer only"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return ProposalCache(tmp_path_factory.mktemp("proposals"))


def test_stage_3_with_selective_search_in_place_of_its_rpn_is_stage_2(cache):
    torch.manual_seed(0)
    fast = build_fast_rcnn(FastRCNNConfig(**SMALL), K, cache)
    faster = build_faster_rcnn(FasterRCNNConfig(**SMALL), K)
    assert type(fast.proposer) is CachedSelectiveSearch and type(faster.proposer) is RegionProposalNetwork
    # part for part the same, the proposer aside
    assert module_types(fast, skip=("proposer",)) == module_types(faster, skip=("proposer",))
    # swap the proposer back to selective search, take stage 2's weights: the same model
    faster.proposer = fast.proposer
    faster.load_state_dict(fast.state_dict(), strict=True)
    images, targets = images_and_targets()
    losses_2, losses_3 = same_outputs(fast, faster, images, targets)
    assert set(losses_2) == set(losses_3) == {"loss_cls", "loss_box"}


def test_stage_4_without_fpn_with_roi_pooling_has_stage_3s_detection_path():
    torch.manual_seed(0)
    cfg3 = FasterRCNNConfig(**SMALL)
    cfg4 = MaskRCNNConfig(**SMALL, fpn=False, pool="roi", detections_per_image=cfg3.detections_per_image)
    faster, mask = build_faster_rcnn(cfg3, K), build_mask_rcnn(cfg4, K)
    assert module_types(mask, skip=("mask_head",)) == module_types(faster)
    assert type(mask.head.pooler) is RoIPool and type(mask.proposer) is RegionProposalNetwork
    # stage 3's weights in stage 4: only the mask branch is missing
    missing, unexpected = mask.load_state_dict(faster.state_dict(), strict=False)
    assert unexpected == [] and missing and all(k.startswith("mask_head.") for k in missing)
    images, targets = images_and_targets()
    losses_3, losses_4 = same_outputs(faster, mask, images, targets)
    assert set(losses_4) - set(losses_3) == {"loss_mask"} and set(losses_3) < set(losses_4)


def test_stage_3_to_4_swaps_one_part_for_roi_align():
    """The default stage 4 (no FPN): stage 3's modules, the pooler RoIAlign, plus the mask branch."""
    faster = build_faster_rcnn(FasterRCNNConfig(**SMALL), K)
    mask = build_mask_rcnn(MaskRCNNConfig(**SMALL), K)
    assert isinstance(mask, FasterRCNN) and isinstance(mask, MaskRCNN)
    three, four = module_types(faster), module_types(mask, skip=("mask_head",))
    assert set(three) == set(four)  # no module added or removed outside the mask branch
    changed = {name for name in three if three[name] is not four[name]}
    assert changed == {"head.pooler"} and four["head.pooler"] is RoIAlign
    assert type(mask.mask_head.pooler) is RoIAlign


def test_stage_4_with_fpn_runs_stage_3s_rpn_on_every_level():
    mask = build_mask_rcnn(MaskRCNNConfig(**SMALL, fpn=True), K)
    assert isinstance(mask.proposer, RegionProposalNetwork) and type(mask.proposer) is PyramidRPN
    # the RPN's own methods: only the scoring over levels is new
    own = {name for name, v in vars(PyramidRPN).items() if callable(v) and not name.startswith("__")}
    assert own == {"score"}
    images, targets = images_and_targets()
    mask.train()
    assert set(mask(images, targets)) == {"loss_objectness", "loss_rpn_box", "loss_cls", "loss_box",
                                          "loss_mask"}


def test_pool_names_the_same_operation_in_every_stage(cache):
    """--pool roi is RoI max pooling in stages 2, 3 and 4 alike."""
    fast = build_fast_rcnn(FastRCNNConfig(**SMALL, pool="roi"), K, cache)
    faster = build_faster_rcnn(FasterRCNNConfig(**SMALL, pool="roi"), K)
    mask = build_mask_rcnn(MaskRCNNConfig(**SMALL, pool="roi"), K)
    assert type(fast.head.pooler) is type(faster.head.pooler) is type(mask.head.pooler) is RoIPool
    assert fast.head.pooler.size == faster.head.pooler.size == mask.head.pooler.size == 7
