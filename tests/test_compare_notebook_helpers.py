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
from stages.evaluation.comparison import Row, format_comparison, generation_ratios

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
