"""Stage 1, R-CNN: worked examples for each step, then tiny end-to-end runs.

Proposals (inside the image, deterministic, cached), the warp (exactly the right pixels, and
torchvision's RoIAlign as a reference), context padding, hard negative mining, box regression,
the model call, and end-to-end runs on the ``tiny_synthetic`` fixture: a training image
recovered at AP50 = 100, and the awkward inputs (no proposals, no objects, one class).
"""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
import torchvision

from stages.backbone import Backbone
from stages.training.checkpoint import load_checkpoint, save_checkpoint
from stages.data.sources import CocoDataset
from stages.evaluation import evaluate
from stages.ops import box_iou
from stages.selective_search import ProposalCache, image_key, selective_search
from stages.rcnn import (RCNN, BoxRegressors, RCNNConfig, RegionCNN, compute_proposals,
                         dilate_boxes, make_proposer, mine_hard_negatives, proposal_report,
                         train_bbox_regressors, train_one_svm, train_rcnn, warp_regions)
from stages.rcnn.__main__ import main
from stages.rcnn.model import build_region_cnn
from stages.rcnn.bbox_regression import BOX_CODER
from stages.rcnn.regions import crop_regions, normalize, warp_from_images
from stages.data.transforms import val_transforms

# budgets for the end-to-end tests: seconds, not minutes (a narrow backbone, the same layers)
TINY_CHANNELS = (8, 16, 16, 16, 16)
TINY_RCNN = RCNNConfig(pretrain_epochs=10, finetune_epochs=20.0, pretrain_lr=0.03,
                       lr=0.03, svm_C=1.0, workers=1, backbone="tiny",
                       backbone_channels=TINY_CHANNELS, optimizer="sgd", warp_size=56)


@pytest.fixture(scope="module")
def tiny(tiny_synthetic):
    """(train, val) of the 8 + 4 image fixture, without random flips."""
    images = tiny_synthetic / "images"
    return (CocoDataset(tiny_synthetic / "train.json", images, transforms=val_transforms()),
            CocoDataset(tiny_synthetic / "val.json", images, transforms=val_transforms()))


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    """R-CNN trained on the 8 tiny training images (selective search, cached under tmp)."""
    torch.manual_seed(0)
    cache = tmp_path_factory.mktemp("proposals")
    model, record = train_rcnn(tiny[0], TINY_RCNN, cache_root=cache, log=lambda *a: None)
    return model, record, cache


# ------------------------------------------------------------------------------------------------
# 1. Proposals
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["sliding_window", "selective_search"])
def test_proposals_lie_inside_the_image_and_are_deterministic(tiny, method):
    image, _ = tiny[0][0]
    H, W = image.shape[-2:]
    propose = make_proposer(dataclasses.replace(RCNNConfig(), proposals=method))
    boxes = propose(image)
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 20
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= W).all() and (boxes[:, 3] <= H).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert len(torch.unique(boxes, dim=0)) == len(boxes)  # no duplicates
    assert torch.equal(boxes, propose(image))  # the same boxes, in the same order, every time


def test_cached_proposals_equal_fresh_ones_and_a_damaged_entry_is_recomputed(tiny, tmp_path):
    images = [tiny[1][i][0] for i in range(2)]
    cfg = RCNNConfig(workers=1)
    boxes, seconds, summary = compute_proposals(images, cfg, tmp_path)
    assert "0 of 2 images read from the cache" in summary and min(seconds) > 0
    assert torch.equal(boxes[0], selective_search(images[0], cfg.selective_search()))
    cache = ProposalCache(tmp_path, cfg.selective_search())
    cache.path(image_key(images[0])).write_bytes(b"not a numpy file")  # damage image 0's entry
    again, seconds2, summary = compute_proposals(images, cfg, tmp_path)
    assert "1 of 2 images read from the cache" in summary  # the damaged one was recomputed
    assert all(torch.equal(a, b) for a, b in zip(boxes, again))
    assert seconds2[1] == seconds[1]  # a cached entry reports the seconds measured back then
    assert np.load(cache.path(image_key(images[0])))["boxes"].shape == tuple(boxes[0].shape)


def test_proposal_report_recall_grows_with_the_number_of_proposals(tiny):
    items = [tiny[1][i] for i in range(len(tiny[1]))]
    images, gt = [im for im, _ in items], [t["boxes"] for _, t in items]
    methods = {}
    for method in ("sliding_window", "selective_search"):
        cfg = dataclasses.replace(RCNNConfig(), proposals=method)
        boxes, seconds, _ = compute_proposals(images, cfg)
        methods[method] = (boxes, seconds)
    report = proposal_report(gt, methods, top_n=(10, 50, 100, 1000))
    for method, r in report.items():
        recall = [r["recall"][0.5][n] for n in (10, 50, 100, 1000)]
        assert recall == sorted(recall), method  # more proposals never lose an object
        assert r["recall_all"][0.7] <= r["recall_all"][0.5]
    # the lesson: selective search reaches a recall with 10x fewer boxes, and costs more time
    ss, sw = report["selective_search"], report["sliding_window"]
    assert ss["recall"][0.5][100] > sw["recall"][0.5][100]
    assert ss["mean_proposals"] * 5 < sw["mean_proposals"]
    assert ss["ms_per_image"] > sw["ms_per_image"]


# ------------------------------------------------------------------------------------------------
# 2. Regions: the warp takes exactly the right pixels
# ------------------------------------------------------------------------------------------------

def arange_image(C=2, H=12, W=16):
    return torch.arange(C * H * W, dtype=torch.float32).reshape(C, H, W)


def test_warp_of_an_s_by_s_box_returns_exactly_its_pixels():
    image = arange_image()
    S = 4
    box = torch.tensor([[5.0, 3.0, 5.0 + S, 3.0 + S]])  # x in [5, 9), y in [3, 7)
    out = warp_regions(image, box, S)  # (1, C, S, S)
    # equal up to float32 rounding of grid_sample's [-1, 1] coordinates (~1e-7 relative)
    torch.testing.assert_close(out[0], image[:, 3:7, 5:9])
    assert (out[0] - image[:, 3:7, 5:9]).abs().max() < 1e-5


def test_warp_of_a_2s_box_averages_each_2x2_block():
    """A box twice the warp size: each output pixel samples at the corner shared by 4 pixels."""
    image = arange_image()
    box = torch.tensor([[2.0, 4.0, 10.0, 12.0]])  # 8 x 8 pixels -> 4 x 4
    out = warp_regions(image, box, 4)[0]
    expected = torch.nn.functional.avg_pool2d(image[None, :, 4:12, 2:10], 2)[0]
    torch.testing.assert_close(out, expected)


def test_warp_stretches_anisotropically():
    """An 8 x 2 box warped to 4 x 4: x is squeezed 2x, y stretched 2x, by hand."""
    image = arange_image()
    out = warp_regions(image, torch.tensor([[0.0, 2.0, 8.0, 4.0]]), 4)[0]  # (C, 4, 4)
    # columns sample x = 1, 3, 5, 7: the edge between two pixels, so the mean of each pair
    pairs = (image[:, :, 0:8:2] + image[:, :, 1:8:2]) / 2  # (C, H, 4)
    # rows sample y = 2.25, 2.75, 3.25, 3.75; pixel row r has its centre at r + 0.5, so
    # y = 2.25 is 1/4 of the way from row 1's centre to row 2's: 0.25 row 1 + 0.75 row 2, ...
    mix = torch.tensor([[0.25, 0.75, 0.0, 0.0],   # y = 2.25: rows 1, 2
                        [0.0, 0.75, 0.25, 0.0],   # y = 2.75: rows 2, 3
                        [0.0, 0.25, 0.75, 0.0],   # y = 3.25: rows 2, 3
                        [0.0, 0.0, 0.75, 0.25]])  # y = 3.75: rows 3, 4
    expected = torch.einsum("vr,crx->cvx", mix, pairs[:, 1:5])  # (C, 4, 4)
    torch.testing.assert_close(out, expected)


def test_warp_matches_torchvision_roi_align_inside_the_image():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 40, 50, generator=g)
    xy = torch.rand(20, 2, generator=g) * torch.tensor([30.0, 20.0])
    wh = 2 + torch.rand(20, 2, generator=g) * 18
    boxes = torch.cat([xy, xy + wh], dim=1)  # (20, 4), all inside the 50 x 40 image
    ours = warp_regions(image, boxes, 7)
    rois = torch.cat([torch.zeros(20, 1), boxes], dim=1)  # (20, 5): batch index, box
    reference = torchvision.ops.roi_align(image[None], rois, 7, spatial_scale=1.0,
                                          sampling_ratio=1, aligned=True)
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_warping_a_batch_from_many_images_equals_warping_each_image():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(5, 3, 20, 24, generator=g)
    image_index = torch.tensor([3, 0, 3, 1, 4, 0])
    boxes = torch.tensor([[0.0, 0, 10, 10], [2, 3, 20, 9], [5, 5, 6, 18], [-4, -4, 30, 30],
                          [1, 1, 23, 19], [7.5, 2.25, 12.5, 11.75]])
    batched = warp_from_images(images, image_index, boxes, 8, 1.0)  # one grid_sample call
    looped = warp_from_images(list(images), image_index, boxes, 8, 1.0)  # one call per image
    one_by_one = torch.cat([crop_regions(images[i], b[None], 8, 1.0)
                            for i, b in zip(image_index.tolist(), boxes)])
    torch.testing.assert_close(batched, one_by_one)
    torch.testing.assert_close(looped, one_by_one)


def test_outside_the_image_the_warp_reads_the_mean():
    image = torch.rand(3, 16, 16)
    inside = normalize(image)
    out = warp_regions(inside, torch.tensor([[-40.0, -40.0, -20.0, -20.0]]), 8)
    assert torch.equal(out, torch.zeros(1, 3, 8, 8))  # 0 = the mean colour after normalize


def test_context_padding_leaves_p_pixels_of_context_around_the_box():
    S, p = 32, 4
    box = torch.tensor([[12.0, 20.0, 36.0, 44.0]])  # 24 x 24 = S - 2p: the scale is exactly 32/24
    dilated = dilate_boxes(box, S, p)
    torch.testing.assert_close(dilated, torch.tensor([[8.0, 16.0, 40.0, 48.0]]))
    image = torch.zeros(1, 64, 64)
    image[:, 20:44, 12:36] = 1.0  # a white square exactly filling the box
    out = crop_regions(image, box, S, p)[0, 0]  # (S, S)
    assert (out[p:S - p, p:S - p] == 1).all()  # the box fills the centre...
    assert (out[:p] == 0).all() and (out[:, :p] == 0).all()  # ...with p pixels of context
    assert (out[S - p:] == 0).all() and (out[:, S - p:] == 0).all()


def test_paper_context_padding_scales_with_the_warp():
    assert RCNNConfig(warp_size=227).context_pad_pixels == 16  # the paper's p = 16 at 227
    assert RCNNConfig(warp_size=32).context_pad_pixels == pytest.approx(16 * 32 / 227)


# ------------------------------------------------------------------------------------------------
# 3. SVMs and hard negative mining
# ------------------------------------------------------------------------------------------------

def test_mine_hard_negatives_worked_example():
    scores = torch.tensor([-3.0, -0.5, 0.2, 2.0, -0.9])
    in_cache = torch.tensor([False, False, False, False, True])
    assert mine_hard_negatives(scores, in_cache).tolist() == [1, 2, 3]  # -0.9 is already cached


def test_hard_negative_mining_adds_the_negatives_the_current_svm_gets_wrong():
    """2-D toy: positives around (2, 2); most negatives far away around (-3, -3), a few hard ones
    near (0.8, 0.8). The random start set holds no hard one, so the first SVM is too generous."""
    g = torch.Generator().manual_seed(0)
    positives = torch.randn(40, 2, generator=g) * 0.3 + 2
    easy = torch.randn(500, 2, generator=g) * 0.5 - 3
    hard = torch.randn(30, 2, generator=g) * 0.2 + 0.8
    features = torch.cat([positives, easy, hard])  # (570, 2)
    pos = torch.arange(40)
    neg_easy, neg_hard = torch.arange(40, 540), torch.arange(540, 570)
    negatives = torch.cat([neg_easy, neg_hard])
    w, b, history = train_one_svm(features, pos, negatives, C=1.0, rounds=3,
                                  initial_negatives=20, seed=1)  # 20 of 530: almost surely easy
    first = history[0]
    mined = first["mined"]
    assert len(mined) > 0
    # every mined negative is one the round-0 SVM scored wrongly: above -1 (nonzero hinge loss)
    assert (features[mined] @ first["weight"] + first["bias"] > -1).all()
    assert set(mined.tolist()) & set(neg_hard.tolist())  # the hard cluster is found
    violators = [int((features[negatives] @ h["weight"] + h["bias"] > -1).sum()) for h in history]
    assert violators[-1] < violators[0]  # mining fixed (some of) what the first SVM got wrong
    hard_scores_first = features[neg_hard] @ first["weight"] + first["bias"]
    assert (features[neg_hard] @ w + b).mean() < hard_scores_first.mean()


# ------------------------------------------------------------------------------------------------
# 4. Box regression
# ------------------------------------------------------------------------------------------------

def test_box_regression_reduces_the_localisation_error_on_training_regions():
    """Features that carry the offsets linearly (plus nuisance dimensions): ridge regression
    must learn to move the jittered proposals back onto their ground truth."""
    g = torch.Generator().manual_seed(0)
    n = 300
    xy = torch.rand(n, 2, generator=g) * 60
    gt = torch.cat([xy, xy + 20 + torch.rand(n, 2, generator=g) * 20], dim=1)  # (n, 4)
    wh = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
    proposals = gt + (torch.rand(n, 4, generator=g) - 0.5) * 0.3 * wh  # jitter +-15 %
    t = BOX_CODER.encode(gt, proposals)  # (n, 4) the true targets
    mixing = torch.randn(4, 16, generator=g)
    features = torch.cat([t @ mixing, torch.rand(n, 16, generator=g)], dim=1)  # (n, 32)
    labels = torch.randint(1, 3, (n,), generator=g)
    regressors = train_bbox_regressors(features, proposals, gt, labels, num_classes=2, lam=1.0,
                                       log=lambda *a: None)
    before = box_iou(proposals, gt).diagonal()
    after = box_iou(regressors.apply(proposals, features, labels), gt).diagonal()
    assert after.mean() > before.mean() + 0.1
    assert after.mean() > 0.95
    # round trip through the checkpoint format
    again = BoxRegressors.from_tensors(regressors.to_tensors())
    torch.testing.assert_close(again.apply(proposals, features, labels),
                               regressors.apply(proposals, features, labels))


def test_box_regression_improves_the_real_training_pairs(trained):
    _, record, _ = trained
    f = record["features"]
    regressors = train_bbox_regressors(f.pair_pool5, f.pair_boxes, f.pair_gt, f.pair_labels,
                                       num_classes=3, log=lambda *a: None)
    before = box_iou(f.pair_boxes, f.pair_gt).diagonal().mean()
    after = box_iou(regressors.apply(f.pair_boxes, f.pair_pool5, f.pair_labels), f.pair_gt)
    assert len(f.pair_boxes) > 20
    assert after.diagonal().mean() > before


# ------------------------------------------------------------------------------------------------
# 5. The model and end-to-end runs
# ------------------------------------------------------------------------------------------------

def test_model_call_returns_detections_and_the_time_split(trained, tiny):
    model, _, _ = trained
    image, _ = tiny[1][0]
    out = model([image])[0]
    D = len(out["boxes"])
    assert 0 < D <= model.cfg.detections_per_image
    assert out["labels"].shape == (D,) and out["scores"].shape == (D,)
    assert ((out["labels"] >= 1) & (out["labels"] <= 3)).all()
    assert (out["scores"][:-1] >= out["scores"][1:]).all()  # best first
    assert set(out["timing"]) == {"proposals", "cnn", "svm_bbox"}
    assert all(s > 0 for s in out["timing"].values())
    # per-class NMS at 0.3: no two kept boxes of one class overlap more (before regression)
    steps = model.detect(image, return_steps=True)["steps"]
    kept = steps["before_regression"]
    for k in range(1, 4):
        boxes = kept[out["labels"] == k]
        iou = box_iou(boxes, boxes).fill_diagonal_(0)
        assert (iou <= 0.3 + 1e-6).all()


def test_training_mode_call_explains_how_rcnn_trains(trained, tiny):
    model, _, _ = trained
    image, target = tiny[0][0]
    model.train()
    try:
        with pytest.raises(RuntimeError, match="separate phases"):
            model([image], [target])
    finally:
        model.eval()


def test_end_to_end_recovers_the_ground_truth_of_a_training_image(trained, tiny):
    model, record, _ = trained
    data = record["data"]
    # a training image whose objects all have a proposal at IoU >= 0.5 (else AP50 < 100 for
    # reasons that are selective search's, not the detector's)
    covered = [i for i, (p, g) in enumerate(zip(data.proposals, data.gt_boxes))
               if len(g) and (box_iou(g, p).max(dim=1).values >= 0.5).all()]
    assert covered
    i = covered[0]
    one_image = tiny[0].subset([tiny[0].indices[i]], val_transforms())
    ev = evaluate(model, one_image)
    assert ev["box"]["AP50"] == pytest.approx(100.0)


def test_svm_and_softmax_and_regression_switches_all_run(trained, tiny):
    model, _, _ = trained
    image, _ = tiny[1][0]
    outputs = {}
    for classifier in ("svm", "softmax"):
        for bbox_reg in (True, False):
            model.cfg = dataclasses.replace(TINY_RCNN, classifier=classifier, bbox_reg=bbox_reg)
            outputs[classifier, bbox_reg] = model([image])[0]
    model.cfg = TINY_RCNN
    # regression moves boxes, and only the boxes
    a, b = outputs["svm", True], outputs["svm", False]
    assert torch.equal(a["scores"], b["scores"]) and not torch.equal(a["boxes"], b["boxes"])
    assert not torch.equal(outputs["softmax", False]["scores"], b["scores"])
    assert (outputs["softmax", False]["scores"] <= 1).all()


def test_an_image_without_any_proposal_gives_no_detections(trained):
    model, _, _ = trained
    tiny_image = torch.rand(3, 3, 3)  # every selective-search box is < min_box = 4 pixels
    assert len(selective_search(tiny_image)) == 0
    out = model([tiny_image])[0]
    assert out["boxes"].shape == (0, 4) and len(out["scores"]) == 0 and len(out["labels"]) == 0
    assert set(out["timing"]) == {"proposals", "cnn", "svm_bbox"}


def single_class_coco(tiny_synthetic, folder, n_images=10):
    """A COCO file of the fixture's images with circles only: one class, and images whose only
    objects were squares or triangles have no objects at all."""
    data = json.loads((tiny_synthetic / "train.json").read_text())
    images = data["images"][:n_images]
    ids = {im["id"] for im in images}
    anns = [a for a in data["annotations"] if a["image_id"] in ids and a["category_id"] == 1]
    anns = [a for a in anns if a["image_id"] != images[0]["id"]]  # image 0: surely empty
    cats = [c for c in data["categories"] if c["id"] == 1]
    folder.mkdir(parents=True, exist_ok=True)
    for im in images:
        shutil.copy(tiny_synthetic / "images" / im["file_name"], folder / im["file_name"])
    ann_file = folder / "circles.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann_file, len(anns)


def test_command_on_a_single_class_dataset_with_empty_images_then_eval_only(tiny_synthetic,
                                                                            tmp_path, capsys):
    ann_file, n_anns = single_class_coco(tiny_synthetic, tmp_path / "circles")
    assert n_anns > 0
    out = tmp_path / "run"
    args = ["--data", f"coco:{ann_file}", "--data-root", str(tmp_path / "data"), "--out", str(out),
            "--pretrain-epochs", "3", "--finetune-epochs", "3", "--workers", "1", "--no-progress",
            "--backbone", "tiny", "--backbone-channels", *map(str, TINY_CHANNELS)]
    main(args + ["--proposals", "sliding_window"])
    printed = capsys.readouterr().out
    assert "trained in" in printed and "proposal report" in printed
    for name in ("checkpoint.pt", "metrics.json", "predictions.png", "proposals.png", "losses.png",
                 "train_log.json"):
        assert (out / name).is_file(), name
    state = load_checkpoint(out / "checkpoint.pt", stage="rcnn")
    assert state["class_names"] == ["background", "circle"]
    assert state["extra"]["svm"]["weight"].shape == (1, RCNNConfig().fc_dim)
    assert state["extra"]["bbox_regressors"]["weight"].shape[:2] == (1, 4)
    first = json.loads((out / "metrics.json").read_text())
    assert set(first["timing_ms"]) == {"proposals", "cnn", "svm_bbox"}

    main(args + ["--eval-only"])  # the checkpoint alone reproduces the detector
    second = json.loads((out / "metrics.json").read_text())
    assert second["box"] == first["box"]
    assert "nothing left to train" in capsys.readouterr().out

    main(args + ["--eval-only", "--no-bbox-reg"])  # a test-time switch on the same checkpoint
    third = json.loads((out / "metrics.json").read_text())
    # only the switch given changes; the rest (sliding windows here) is the checkpoint's
    tiny = " backbone=tiny/none"  # the tests' narrow from-scratch CNN, not the default
    assert first["variant"] == "proposals=sliding_window classifier=svm bbox_reg=on" + tiny
    assert third["variant"] == "proposals=sliding_window classifier=svm bbox_reg=off" + tiny
    assert third["train_time_s"] == first["train_time_s"]  # evaluated, not retrained

    # --resume from a checkpoint that holds only the fine-tuned CNN (a run stopped after its first phase)
    cnn = RegionCNN(num_classes=1, body=Backbone(TINY_CHANNELS, "C3"))
    cnn.load_state_dict(state["model"])
    save_checkpoint(out / "checkpoint.pt", stage="rcnn", class_names=state["class_names"],
                    config=state["config"], model=cnn,
                    train_time_s=state["train_time_s"], extra={"phases_done": ["cnn"]})
    capsys.readouterr()
    main(args + ["--resume"])
    assert "reusing the fine-tuned CNN" in capsys.readouterr().out
    resumed = load_checkpoint(out / "checkpoint.pt", stage="rcnn")
    assert resumed["extra"]["phases_done"] == ["cnn", "svm_bbox"]
    for name, weight in state["model"].items():
        assert torch.equal(resumed["model"][name], weight), name  # the CNN was not retrained
    torch.testing.assert_close(resumed["extra"]["svm"]["weight"], state["extra"]["svm"]["weight"])


def test_phases_done_reads_checkpoints_written_before_the_word_phases():
    from stages.rcnn.model import phases_done

    assert phases_done({"extra": {"phases_done": ["cnn", "svm_bbox"]}}) == ["cnn", "svm_bbox"]
    assert phases_done({"extra": {"steps_done": ["cnn"]}}) == ["cnn"]  # the old key
    assert phases_done({"extra": None}) == [] and phases_done({}) == []


def test_trained_model_survives_its_checkpoint_format(trained, tiny):
    model, _, _ = trained
    svms = type(model.svms).from_tensors(model.svms.to_tensors())
    rebuilt = RCNN(model.cfg, model.proposer, model.cnn, svms, model.regressors).eval()
    image, _ = tiny[1][1]
    a, b = model([image])[0], rebuilt([image])[0]
    torch.testing.assert_close(a["boxes"], b["boxes"])
    torch.testing.assert_close(a["scores"], b["scores"])
    assert np.isfinite(a["scores"].numpy()).all()


def test_a_checkpoint_whose_cnn_does_not_fit_gets_an_error_naming_the_file(tiny_synthetic,
                                                                          tmp_path):
    """An older checkpoint (another CNN) is refused up front, with the file named."""
    ann_file, _ = single_class_coco(tiny_synthetic, tmp_path / "circles")
    out = tmp_path / "run"
    old_cnn = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3))  # not this CNN's weights
    config = dataclasses.asdict(RCNNConfig())
    save_checkpoint(out / "checkpoint.pt", stage="rcnn", class_names=["background", "circle"],
                    config=config, model=old_cnn, extra={"steps_done": ["cnn", "svm_bbox"]})
    with pytest.raises(SystemExit) as err:
        main(["--data", f"coco:{ann_file}", "--data-root", str(tmp_path / "data"), "--out",
              str(out), "--eval-only", "--no-progress"])
    message = str(err.value)
    assert str(out / "checkpoint.pt") in message and "does not fit" in message


# ------------------------------------------------------------------------------------------------
# The network of stage 2: R-CNN runs Fast R-CNN's backbone and fc layers (its own width) on every region
# ------------------------------------------------------------------------------------------------

def test_rcnn_runs_the_network_of_fast_rcnn_on_each_warped_region():
    from stages.fast_rcnn import FastRCNNConfig
    from stages.fast_rcnn.model import build_fast_rcnn

    fast_cfg = FastRCNNConfig()
    cnn = build_region_cnn(RCNNConfig(), 3)  # what stage 1 trains
    fast = build_fast_rcnn(fast_cfg, 3, cache=None)
    # the same backbone, layer for layer
    ours = {k: v.shape for k, v in cnn.body.state_dict().items()}
    theirs = {k: v.shape for k, v in fast.backbone.state_dict().items()}
    assert ours == theirs
    # pool5 has the shape of Fast R-CNN's RoI pooling, so fc6 reads the same inputs, in the same
    # class; only the width differs (R-CNN's fc 256, stages 2-4's 1024: each stage's measured choice)
    assert type(cnn.fc) is type(fast.head.fc)
    assert cnn.fc.fc6.in_features == fast.head.fc.fc6.in_features
    assert (cnn.fc.fc7.out_features, fast.head.fc.fc7.out_features) == (RCNNConfig().fc_dim, fast_cfg.fc_dim)
    same_width = build_region_cnn(RCNNConfig(fc_dim=fast_cfg.fc_dim), 3)
    assert same_width.fc.fc6.weight.shape == fast.head.fc.fc6.weight.shape
    assert same_width.fc.fc7.weight.shape == fast.head.fc.fc7.weight.shape


def test_pool5_of_a_56_pixel_region_is_its_c3_map_and_other_warps_pool_to_7x7():
    torch.manual_seed(0)
    cnn = RegionCNN(2, Backbone(TINY_CHANNELS, "C3"), warp_size=56).eval()
    regions = torch.randn(3, 3, 56, 56)
    with torch.no_grad():
        c3 = cnn.body.forward_normalized(regions)["C3"]  # (3, 16, 7, 7): nothing left to pool
        torch.testing.assert_close(cnn.features(regions)["pool5"], c3.flatten(1))
        big = RegionCNN(2, Backbone(TINY_CHANNELS, "C3"), warp_size=112).eval()
        assert big.features(torch.randn(2, 3, 112, 112))["pool5"].shape == (2, 16 * 7 * 7)
    with pytest.raises(ValueError, match="multiple of the backbone's stride 8"):
        RegionCNN(2, Backbone(TINY_CHANNELS, "C3"), warp_size=60)
