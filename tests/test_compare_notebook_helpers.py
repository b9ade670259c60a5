"""``compare.load_comparison``: what notebook 05 reads is what ``compare`` saved.

No training: two hand-made result records (R-CNN and Fast R-CNN, with the paper's test times in
ms, 47 000 and 320) go through ``save_comparison`` and come back through ``load_comparison``.
"""

from __future__ import annotations

import json

import pytest

from stages import compare
from stages.compare import load_comparison, save_comparison
from stages.evaluation import Result
from stages import compare_report as comparison
from stages.compare_report import Row, format_comparison, generation_ratios

BOX = {"AP": 50.0, "AP50": 70.0, "AP75": 55.0, "APs": 40.0, "APm": 60.0, "APl": -1.0}


def record(stage: str, ms_proposals: float, ms_network: float, box_ap: float) -> Result:
    return Result(stage=stage, variant="hand-made", data="synthetic", box={**BOX, "AP": box_ap},
                  mask=None, train_time_s=100.0, ms_per_image=ms_proposals + ms_network,
                  ms_proposals=ms_proposals, ms_network=ms_network,
                  timing_ms={"proposals": ms_proposals, "network": ms_network}, params=123_456,
                  n_train=400, n_val=100, device="cpu", seed=0)


@pytest.fixture
def saved(tmp_path):
    rcnn, fast = compare.STAGES[:2]
    rows = [Row(rcnn, record("rcnn", 1510.0, 47_000.0, 66.0), "trained"),
            Row(fast, record("fast_rcnn", 1510.0, 320.0, 66.9), "reused")]
    args = compare.build_parser().parse_args(["--stages", "rcnn", "fast_rcnn", "--epochs", "3",
                                              "--time-budget", "60"])
    save_comparison(tmp_path, rows, generation_ratios(rows), args)
    return rows, args, tmp_path / "comparison.json"


def test_the_rows_come_back_as_they_were_saved(saved):
    rows, args, path = saved
    loaded, settings = load_comparison(path)
    assert [r.entry for r in loaded] == [r.entry for r in rows]
    assert [r.status for r in loaded] == ["trained", "reused"]
    assert [r.result for r in loaded] == [r.result for r in rows]
    # the same table and the same ratios: 47000 / 320 = 146.9x, Fast R-CNN's Table 4
    assert format_comparison(loaded) == format_comparison(rows)
    assert generation_ratios(loaded) == generation_ratios(rows)
    assert "= 146.9x (target >= 12x: met)" in generation_ratios(loaded)[0]
    # the settings describe the run as compare described it
    assert compare.describe(settings) == compare.describe(args)
    assert settings.epochs == 3 and settings.time_budget == 60.0 and settings.data == "synthetic"


def test_a_row_of_an_unknown_stage_is_named(saved):
    _, _, path = saved
    document = json.loads(path.read_text())
    document["rows"][0]["name"] = "yolo"
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=r"unknown stages \['yolo'\]"):
        load_comparison(path)


def breakdown_of(ap50: float, **dap) -> dict:
    """A hand-made TIDE breakdown: AP50 and the dAP of the types given (0 for the others)."""
    return {"iou_type": "bbox", "t_f": 0.5, "t_b": 0.1, "ap50": ap50,
            "dAP": {t: dap.get(t, 0.0) for t in ("cls", "loc", "both", "dupe", "bkg", "missed")},
            "dAP_fp": 1.0, "dAP_fn": 2.0, "counts": {}}


def test_the_errors_table_and_what_each_step_removed(tmp_path):
    """R-CNN loses 20 AP50 points to localisation, Fast R-CNN 6 but misses 4 more objects: the
    sentence names loc as removed and missed as added; a change under half a point is left out;
    the breakdown goes into comparison.json / .csv / .md and comes back."""
    rcnn, fast = compare.STAGES[:2]
    a, b = record("rcnn", 1510.0, 47_000.0, 30.0), record("fast_rcnn", 1510.0, 320.0, 45.0)
    a.errors = {"box": breakdown_of(65.0, loc=20.0, bkg=2.2, missed=0.6)}
    b.errors = {"box": breakdown_of(81.6, loc=6.0, bkg=1.9, missed=4.6),
                "box_t75": breakdown_of(43.5, loc=44.9)}
    rows = [Row(rcnn, a, "trained"), Row(fast, b, "trained")]
    assert comparison.error_changes(rows) == [
        "R-CNN -> Fast R-CNN: box AP50 70.0 -> 70.0, AP75 55.0 -> 55.0; errors removed (dAP "
        "fell): loc 20.0 -> 6.0; added (dAP rose): missed 0.6 -> 4.6"]
    table = comparison.format_errors(rows, markdown=True).splitlines()
    assert table[0] == ("| stage | box AP50 | dAP cls | dAP loc | dAP both | dAP dupe | dAP bkg | "
                        "dAP missed | dAP FP | dAP FN | dAP loc@75 |")
    assert table[2] == "| R-CNN | 65.0 | 0.0 | 20.0 | 0.0 | 0.0 | 2.2 | 0.6 | 1.0 | 2.0 | - |"
    assert table[3].endswith("| 44.9 |")
    args = compare.build_parser().parse_args(["--stages", "rcnn", "fast_rcnn"])
    save_comparison(tmp_path, rows, generation_ratios(rows), args)
    loaded, _ = load_comparison(tmp_path / "comparison.json")
    assert comparison.format_errors(loaded) == comparison.format_errors(rows)
    assert "## Where the AP50 goes" in (tmp_path / "comparison.md").read_text()
    header, first = (tmp_path / "comparison.csv").read_text().splitlines()[:2]
    assert header.endswith("dAP FP,dAP FN,dAP loc@75") and first.endswith(",20.0,0.0,0.0,2.2,0.6,1.0,2.0,")
