"""Tests for stages/evaluation/: worked examples checked by hand and against pycocotools."""

import json
import time

import numpy as np
import pytest
import torch

from stages.evaluation import (
    Result, ResultFileError, average_precision, coco_ground_truth, coco_metrics, detections_to_coco,
    evaluate, explain_missing, format_rows, format_table, hand_ap, match_detections,
    precision_recall,
)
from stages.evaluation.tables import COLUMNS, TEXT_COLUMNS, result_cells
from stages.devices import count_parameters

H = W = 128
CLASS_NAMES = ["background", "square", "disc"]


def rect_mask(box, h=H, w=W):
    """uint8 [h, w] mask filling an integer box (x1, y1, x2, y2): pixels x1 <= x < x2."""
    x1, y1, x2, y2 = [int(v) for v in box]
    m = torch.zeros(h, w, dtype=torch.uint8)
    m[y1:y2, x1:x2] = 1
    return m


def make_item(image_id, boxes, labels):
    """A dataset item whose masks fill the boxes exactly, so box and mask areas agree."""
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    masks = torch.stack([rect_mask(b) for b in boxes]) if len(boxes) else torch.zeros(0, H, W,
                                                                                       dtype=torch.uint8)
    target = {"boxes": boxes, "labels": torch.tensor(labels, dtype=torch.int64),
              "masks": masks, "image_id": image_id,
              "iscrowd": torch.zeros(len(boxes), dtype=torch.int64),
              "area": masks.flatten(1).sum(1).float()}
    return torch.rand(3, H, W), target


class ListDataset:
    def __init__(self, items, class_names=CLASS_NAMES):
        self.items, self.class_names = items, class_names

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def perfect_output(target, score=0.9):
    """Predictions equal to the ground truth, masks as bool [D, H, W]."""
    n = len(target["boxes"])
    return {"boxes": target["boxes"].clone(), "labels": target["labels"].clone(),
            "scores": torch.full((n,), score), "masks": target["masks"].bool()}


def detections_for(dataset, outputs):
    return [d for (_, t), o in zip(dataset.items, outputs) for d in detections_for_one(o, t)]


def detections_for_one(output, target):
    return detections_to_coco(output, target["image_id"])


# small (16x16 = 256 px) and medium (40x40 = 1600 px) objects, no large one (> 96^2 = 9216 px)
SMALL_AND_MEDIUM = ListDataset([
    make_item(1, [[10, 10, 26, 26], [50, 50, 90, 90]], [1, 2]),
    make_item(2, [[0, 0, 40, 40]], [2]),
    make_item(3, [], []),  # a negative image: no objects
])


def test_perfect_predictions_give_ap_100_for_boxes_and_masks():
    gt = coco_ground_truth(SMALL_AND_MEDIUM)
    dets = detections_for(SMALL_AND_MEDIUM, [perfect_output(t) for _, t in SMALL_AND_MEDIUM.items])
    for iou_type in ("bbox", "segm"):
        m = coco_metrics(gt, dets, iou_type)
        assert m["AP"] == pytest.approx(100.0) and m["AP50"] == pytest.approx(100.0)
        assert m["AP75"] == pytest.approx(100.0)
        assert m["APs"] == pytest.approx(100.0) and m["APm"] == pytest.approx(100.0)
        assert m["APl"] == -1.0  # no large object: undefined, not zero


def test_ground_truth_is_built_from_items():
    gt = coco_ground_truth(SMALL_AND_MEDIUM)
    assert sorted(gt.getImgIds()) == [1, 2, 3]  # the negative image is kept
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == ["square", "disc"]
    ann = gt.loadAnns(gt.getAnnIds(imgIds=[1]))[1]
    assert ann["bbox"] == [50.0, 50.0, 40.0, 40.0]  # xyxy (50, 50, 90, 90) -> xywh
    assert ann["area"] == 1600.0 and ann["category_id"] == 2
    assert isinstance(ann["segmentation"]["counts"], str)  # JSON-ready
    assert gt.annToMask(ann).sum() == 1600
    json.dumps(gt.dataset)  # the whole ground truth serialises
    sub = coco_ground_truth(SMALL_AND_MEDIUM, indices=[1])
    assert sub.getImgIds() == [2] and len(sub.getAnnIds()) == 1


def test_empty_detections_give_zero_where_gt_exists_and_minus_one_where_not():
    gt = coco_ground_truth(SMALL_AND_MEDIUM)
    for iou_type in ("bbox", "segm"):
        m = coco_metrics(gt, [], iou_type)
        assert m == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": 0.0, "APm": 0.0, "APl": -1.0}


def test_only_large_objects_give_minus_one_for_small_and_medium():
    data = ListDataset([make_item(7, [[0, 0, 100, 100]], [1])])  # 10000 px > 96^2
    m = coco_metrics(coco_ground_truth(data), [], "bbox")
    assert m == {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "APs": -1.0, "APm": -1.0, "APl": 0.0}


def test_images_without_objects():
    # a false positive on the negative image, scored above every true positive: precision at full
    # recall is 1/2 for class 2 (the only class with a detection there)
    outputs = [perfect_output(t) for _, t in SMALL_AND_MEDIUM.items]
    outputs[2] = {"boxes": torch.tensor([[60.0, 60.0, 100.0, 100.0]]), "labels": torch.tensor([1]),
                  "scores": torch.tensor([0.95]), "masks": rect_mask([60, 60, 100, 100])[None]}
    gt = coco_ground_truth(SMALL_AND_MEDIUM)
    m = coco_metrics(gt, detections_for(SMALL_AND_MEDIUM, outputs), "bbox")
    assert m["AP50"] < 100.0  # negatives count: the FP costs precision
    # class 1 ("square"): one gt, ranked [FP, TP] -> precision after interpolation 0.5 at all recalls
    # class 2: perfect -> 1.0; mean over classes = 0.75
    assert m["AP50"] == pytest.approx(75.0, abs=1e-6)
    # the same FP scored below everything costs nothing
    outputs[2]["scores"] = torch.tensor([0.05])
    m = coco_metrics(gt, detections_for(SMALL_AND_MEDIUM, outputs), "bbox")
    assert m["AP50"] == pytest.approx(100.0)
    # a set of negatives only: everything is undefined
    negatives = ListDataset([make_item(1, [], []), make_item(2, [], [])])
    m = coco_metrics(coco_ground_truth(negatives), [], "segm")
    assert set(m.values()) == {-1.0}
    assert len(explain_missing(m)) == 6


def test_shifted_box_lowers_ap75_but_not_ap50():
    data = ListDataset([make_item(1, [[20, 20, 60, 60]], [1])])  # 40x40, medium
    # shifted 8 px right: IoU = (32*40) / (1600 + 1600 - 1280) = 1280 / 1920 = 2/3
    shifted = {"boxes": torch.tensor([[28.0, 20.0, 68.0, 60.0]]), "labels": torch.tensor([1]),
               "scores": torch.tensor([0.9])}
    m = coco_metrics(coco_ground_truth(data), detections_for(data, [shifted]), "bbox")
    assert m["AP50"] == pytest.approx(100.0)
    assert m["AP75"] == pytest.approx(0.0)
    # a TP at thresholds 0.50, 0.55, 0.60, 0.65 (IoU 0.667), a miss at 0.70 ... 0.95: 4 of 10
    assert m["AP"] == pytest.approx(40.0)


def test_hand_steps_on_a_worked_example():
    gt_boxes = [[0, 0, 20, 20], [40, 40, 60, 60], [80, 80, 100, 100]]  # A, B, C
    pred_boxes = [[41, 40, 61, 60],   # 0.7: B                      -> TP
                  [0, 0, 20, 20],     # 0.9: A                      -> TP
                  [1, 1, 21, 21],     # 0.6: A again, already taken -> FP
                  [100, 0, 120, 20],  # 0.8: nothing                -> FP
                  ]                   # C is never found
    pred_scores = [0.7, 0.9, 0.6, 0.8]
    is_tp = match_detections(pred_boxes, pred_scores, gt_boxes, 0.5)
    assert is_tp.tolist() == [True, False, True, False]  # in score order 0.9, 0.8, 0.7, 0.6
    precision, recall = precision_recall(is_tp, n_gt=3)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 2 / 4])
    np.testing.assert_allclose(recall, [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # interpolated precision: 1 for r in 0.00..0.33 (34 points), 2/3 for 0.34..0.66 (33 points),
    # 0 for 0.67..1.00 (recall never reaches them): AP = (34 + 33 * 2/3) / 101 = 56 / 101
    ap = average_precision(precision, recall)
    assert ap == pytest.approx(56 / 101, abs=1e-12)

    # and pycocotools agrees
    data = ListDataset([make_item(1, gt_boxes, [1, 1, 1])], class_names=["background", "thing"])
    pred = {"boxes": torch.tensor(pred_boxes, dtype=torch.float32), "labels": torch.ones(4, dtype=torch.int64),
            "scores": torch.tensor(pred_scores)}
    m = coco_metrics(coco_ground_truth(data), detections_for(data, [pred]), "bbox")
    assert m["AP50"] / 100 == pytest.approx(ap, abs=1e-6)


def test_hand_functions_edge_cases():
    assert match_detections(np.zeros((0, 4)), [], [[0, 0, 10, 10]], 0.5).tolist() == []
    assert match_detections([[0, 0, 10, 10]], [0.5], np.zeros((0, 4)), 0.5).tolist() == [False]
    assert average_precision([], []) == 0.0
    with pytest.raises(ValueError):
        precision_recall([True], n_gt=0)
    # ties keep input order: the first of two equal-score detections takes the gt
    assert match_detections([[0, 0, 10, 10], [0, 0, 10, 10]], [0.5, 0.5],
                            [[0, 0, 10, 10]], 0.5).tolist() == [True, False]


def random_scene(rng, n_images=6):
    """Single-class images: jittered copies of the gt (good and poor), duplicates and clutter."""
    gts, preds, scores = [], [], []
    for _ in range(n_images):
        n_gt = rng.integers(0, 5)
        xy = rng.uniform(0, 80, size=(n_gt, 2))
        wh = rng.uniform(8, 45, size=(n_gt, 2))
        gt = np.round(np.concatenate([xy, xy + wh], axis=1))
        jitter = gt + rng.normal(0, rng.uniform(0.5, 6, size=(n_gt, 1)), size=gt.shape)
        dup = jitter[: rng.integers(0, n_gt + 1)] + rng.normal(0, 2, size=(1, 4))
        cxy = rng.uniform(0, 100, size=(rng.integers(0, 4), 2))
        clutter = np.concatenate([cxy, cxy + rng.uniform(5, 25, size=cxy.shape)], axis=1)
        p = np.concatenate([jitter, dup, clutter]).reshape(-1, 4)
        p = np.concatenate([p[:, :2], np.maximum(p[:, 2:], p[:, :2] + 1)], axis=1)  # x2 > x1
        gts.append(gt.reshape(-1, 4))
        preds.append(p)
        scores.append(rng.uniform(0, 1, size=len(p)))  # distinct with probability 1
    return gts, preds, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hand_ap_equals_pycocotools_on_random_images(seed):
    rng = np.random.default_rng(seed)
    gts, preds, scores = random_scene(rng)
    items = [make_item(i + 1, g.tolist(), [1] * len(g)) for i, g in enumerate(gts)]
    data = ListDataset(items, class_names=["background", "thing"])
    outputs = [{"boxes": torch.tensor(p, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.ones(len(p), dtype=torch.int64),
                "scores": torch.tensor(s, dtype=torch.float64)} for p, s in zip(preds, scores)]
    dets = detections_for(data, outputs)
    # compare on exactly what pycocotools sees (boxes rounded to float32 by the dataset and outputs)
    gt_f = [t["boxes"].double().numpy() for _, t in items]
    pred_f = [o["boxes"].double().numpy() for o in outputs]
    m = coco_metrics(coco_ground_truth(data), dets, "bbox")
    assert 0 < m["AP50"] < 100  # a non-trivial case
    assert hand_ap(pred_f, scores, gt_f, 0.5) * 100 == pytest.approx(m["AP50"], abs=1e-4)
    assert hand_ap(pred_f, scores, gt_f, 0.75) * 100 == pytest.approx(m["AP75"], abs=1e-4)


def test_explain_missing():
    notes = explain_missing({"AP": 50.0, "AP50": 70.0, "AP75": 40.0, "APs": 30.0, "APm": 60.0,
                             "APl": -1.0})
    assert len(notes) == 1
    assert notes[0].startswith("APl = -1") and "96^2" in notes[0] and "not zero" in notes[0]
    assert explain_missing({"AP": 50.0, "APs": 0.0}) == []  # 0 is a real score, not missing


def make_result(**changes):
    fields = dict(stage="fast_rcnn", variant="proposals=selective_search pool=roi", data="synthetic seed=0",
                  box={"AP": 51.25, "AP50": 80.0, "AP75": 55.5, "APs": 30.0, "APm": 60.0, "APl": -1.0},
                  mask=None, train_time_s=123.4, ms_per_image=250.0, ms_proposals=200.0,
                  ms_network=50.0, timing_ms={"proposals": 200.0, "cnn": 45.0}, params=1_234_567,
                  n_train=400, n_val=100, device="cpu", seed=0)
    fields.update(changes)
    return Result(**fields)


def test_result_round_trips_through_save_and_load(tmp_path):
    r = make_result(mask={"AP": 40.0, "AP50": 70.0, "AP75": 41.0, "APs": 20.0, "APm": 50.0, "APl": -1.0},
                    notes=["APl = -1: ..."])
    path = r.save(tmp_path / "run" / "result.json")
    loaded = Result.load(path)
    assert loaded == r
    assert loaded.created == r.created and "T" in r.created  # an ISO timestamp
    assert Result.from_dict(json.loads(path.read_text())) == r


@pytest.mark.parametrize("content", ['{"stage": "rcnn", "box": ', '[1, 2, 3]', '{"stage": "rcnn"}'])
def test_result_load_names_the_damaged_file(tmp_path, content):
    path = tmp_path / "damaged_result.json"
    path.write_text(content)
    with pytest.raises(ResultFileError, match="damaged_result.json"):
        Result.load(path)


def test_result_load_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        Result.load(tmp_path / "nowhere.json")


def test_format_table_and_markdown():
    a = make_result()
    b = make_result(stage="mask_rcnn", variant="pool=roi_align", params=45_600,
                    mask={"AP": 40.0, "AP50": 70.0, "AP75": 41.0, "APs": 20.0, "APm": 50.0, "APl": -1.0})
    table = format_table([a, b])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["stage", "variant", "box"]
    row_a, row_b = lines[2], lines[3]
    assert "51.2" in row_a or "51.3" in row_a
    assert "n/a" in row_a and "1.2M" in row_a and row_a.count(" - ") >= 2  # no mask: "-"
    assert "45.6K" in row_b and "41.0" in row_b
    assert len(lines[0]) == len(lines[1]) == len(row_a) == len(row_b)  # numbers right-aligned
    assert lines[1].split()[0] == "-" * len("fast_rcnn")  # columns as wide as their widest cell
    assert table.count("APl = -1") == 1  # explained once, for all rows and box + mask
    # the same rows in Markdown (the comparison's and the ablation's tables)
    md = format_rows(COLUMNS, [result_cells(a), result_cells(b)], TEXT_COLUMNS, markdown=True)
    md_lines = md.splitlines()
    assert md_lines[0].startswith("| stage | variant | box AP")
    assert md_lines[1].startswith("|---|---|---:")
    assert md_lines[0].count("|") == md_lines[2].count("|") == md_lines[3].count("|")


class FakeDetector(torch.nn.Module):
    """Returns prepared outputs in call order, sleeps to take measurable time, reports timing."""

    def __init__(self, outputs, sleep_s=0.01):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(10, 5))  # 50 parameters
        self.outputs, self.sleep_s, self.calls = outputs, sleep_s, 0

    def forward(self, images):
        assert not self.training and not torch.is_grad_enabled()
        time.sleep(self.sleep_s * len(images))
        out = self.outputs[self.calls: self.calls + len(images)]
        self.calls += len(images)
        return out


def probability_masks(target):
    """Masks as torchvision gives them: float [D, 1, H, W], 0.6 inside the object, 0.4 outside.

    A wrong binarisation fails: casting to uint8 empties every mask, "> 0" fills the whole image."""
    return (0.4 + 0.2 * target["masks"].float())[:, None]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_evaluate_with_a_fake_model(batch_size):
    data = SMALL_AND_MEDIUM
    outputs = []
    for k, (_, t) in enumerate(data.items):
        out = perfect_output(t)
        out["masks"] = probability_masks(t)
        out["timing"] = {"proposals": 0.002 * (k + 1), "cnn": 0.001}  # 2, 4, 6 ms; 1 ms
        outputs.append(out)
    model = FakeDetector(outputs)
    model.train()
    ev = evaluate(model, data, batch_size=batch_size, warmup=0)
    assert set(ev) == {"box", "mask", "ms_per_image", "ms_proposals", "ms_network", "timing_ms",
                       "n_images", "notes", "detections", "ground_truth", "per_class", "errors"}
    assert len(ev["ground_truth"]["images"]) == 3  # what the detections were scored against
    # perfect detections: every class at AP 100, no error of any type
    for kind in ("box", "mask"):
        assert all(v["AP"] == pytest.approx(100.0) and v["AP50"] == pytest.approx(100.0)
                   for v in ev["per_class"][kind].values())
        assert ev["errors"][kind]["ap50"] == pytest.approx(100.0)
        assert all(v == 0 for v in ev["errors"][kind]["dAP"].values())
    assert ev["n_images"] == 3 and model.calls == 3
    assert ev["box"]["AP"] == pytest.approx(100.0)
    assert ev["mask"]["AP"] == pytest.approx(100.0) and ev["mask"]["AP75"] == pytest.approx(100.0)
    assert ev["ms_proposals"] == pytest.approx(4.0)  # mean of 2, 4, 6 ms
    assert ev["timing_ms"] == pytest.approx({"proposals": 4.0, "cnn": 1.0})
    assert ev["ms_per_image"] >= 10.0  # the model sleeps 10 ms per image
    assert ev["ms_network"] == pytest.approx(ev["ms_per_image"] - 4.0)
    assert any(n.startswith("APl = -1") for n in ev["notes"])
    assert count_parameters(model) == 50

    r = Result.from_evaluation(ev, stage="fake", variant="", data="test", train_time_s=0.0,
                               params=count_parameters(model), n_train=0, device="cpu", seed=0)
    assert r.n_val == 3 and r.mask["AP"] == pytest.approx(100.0)
    assert r.per_class == ev["per_class"] and r.errors == ev["errors"]  # kept in metrics.json
    assert Result.from_dict(r.to_dict()) == r
    plain = evaluate(model, data, batch_size=batch_size, warmup=0, analysis=False)
    assert plain["per_class"] == {} and plain["errors"] == {}


def test_evaluate_without_masks_or_timing_and_max_images():
    data = SMALL_AND_MEDIUM
    outputs = [{k: v for k, v in perfect_output(t).items() if k != "masks"} for _, t in data.items]
    ev = evaluate(FakeDetector(outputs, sleep_s=0.0), data, max_images=2, warmup=0)
    assert ev["n_images"] == 2
    assert ev["mask"] is None
    assert ev["ms_proposals"] == 0.0 and ev["timing_ms"] == {}
    assert ev["ms_network"] == pytest.approx(ev["ms_per_image"])
    assert ev["box"]["AP"] == pytest.approx(100.0)  # only images 1 and 2 are in the ground truth


def test_coco_metrics_leaves_detections_unchanged_and_checks_inputs():
    gt = coco_ground_truth(SMALL_AND_MEDIUM)
    dets = detections_for(SMALL_AND_MEDIUM, [perfect_output(t) for _, t in SMALL_AND_MEDIUM.items])
    keys = [sorted(d) for d in dets]
    coco_metrics(gt, dets, "segm")
    assert [sorted(d) for d in dets] == keys  # loadRes did not write ids / areas into our dicts
    with pytest.raises(ValueError, match="iou_type"):
        coco_metrics(gt, dets, "keypoints")
    with pytest.raises(ValueError, match="image ids"):
        coco_metrics(gt, [dict(dets[0], image_id=99)], "bbox")


def test_warmup_calls_are_made_but_not_timed():
    data = SMALL_AND_MEDIUM
    outputs = [perfect_output(t) for _, t in data.items]
    model = FakeDetector([outputs[0]] + outputs)  # the warm-up call consumes one output
    ev = evaluate(model, data, warmup=1)
    assert model.calls == len(data) + 1
    assert ev["box"]["AP"] == pytest.approx(100.0)


def test_cached_proposals_are_charged_at_their_recorded_time():
    # A model whose proposals came from a cache says how long they took when computed (20 ms)
    # and how long reading them took now (1 ms): ms_per_image must include the 20, not the 1.
    data = SMALL_AND_MEDIUM
    outputs = []
    for _, t in data.items:
        out = perfect_output(t)
        out["timing"] = {"proposals": 0.020, "cache_read": 0.001, "network": 0.010}
        outputs.append(out)
    ev = evaluate(FakeDetector(outputs, sleep_s=0.011), data, warmup=0)
    assert ev["ms_proposals"] == pytest.approx(20.0)
    assert ev["ms_per_image"] >= 11.0 - 1.0 + 20.0 - 1e-6
    assert ev["ms_network"] == pytest.approx(ev["ms_per_image"] - 20.0)
    assert "cache_read" not in ev["timing_ms"]


@pytest.mark.parametrize("stage", ["faster_rcnn", "mask_rcnn"])
def test_detections_json_read_by_pycocotools_gives_metrics_json(trained_runs, stage):
    """What a run leaves for other tools: ``detections.json`` (COCO results) scored by pycocotools
    itself against ``ground_truth.json``, as any user would, gives the APs of ``metrics.json``."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    folder = trained_runs / stage
    metrics = json.loads((folder / "metrics.json").read_text())
    detections = json.loads((folder / "detections.json").read_text())
    truth = json.loads((folder / "ground_truth.json").read_text())
    assert {im["id"] for im in truth["images"]} >= {d["image_id"] for d in detections}
    assert all(im["file_name"].endswith(".png") for im in truth["images"])
    kinds = [("bbox", "box")] + ([("segm", "mask")] if stage == "mask_rcnn" else [])
    assert detections, "the tiny run found nothing: nothing to check"
    for iou_type, key in kinds:
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(folder / "ground_truth.json"))
            ev = COCOeval(gt, gt.loadRes(str(folder / "detections.json")), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        for name, value in zip(("AP", "AP50", "AP75"), ev.stats[:3]):
            assert metrics[key][name] == pytest.approx(100 * value, abs=1e-6), (iou_type, name)
