"""From our stages to torchvision's peers, one difference at a time: what each difference is worth.

    python benchmarks/walk_to_peer.py                          every row, 120 s of training each
    python benchmarks/walk_to_peer.py --rows ours_faster fc1024 --budget 60
    python benchmarks/walk_to_peer.py --runs runs/walk_s1 --seed 1 --rows ours_faster beta19

torchvision's ``FasterRCNN`` on our backbone (``python -m stages.torchvision.peers faster_rcnn``)
beat our Faster R-CNN by 8 box AP points in the run that issue 28 quotes, with the same backbone,
data, optimiser and seconds. The two detectors differ in more than their paper's change (RoIPool
against RoIAlign). This walk starts at our stage 3 and adds torchvision's choices one at a time,
cumulatively, each row a stage command with flags (so each row is an ordinary run under
``--runs``), then our stage 4 (RoIAlign and the mask branch) with the same choices, then the two
peers. Each row prints box AP, AP50, AP75 (mask AP where there is one), the steps its budget
bought and the test ms per image. The differences, read from the two models' code:

    fc1024        the box head's fc6 / fc7 width: torchvision's TwoMLPHead 1024, ours 256
    nms05         the head's per-class NMS threshold: torchvision's box_nms_thresh 0.5, ours 0.3
    bg0           background RoIs: torchvision samples any RoI of IoU < 0.5 (box_bg_iou_thresh),
                  ours only IoU in [0.1, 0.5) (Fast R-CNN sec. 2.3's heuristic)
    beta19        the head's smooth L1 switch point: torchvision 1/9, ours 1 (Fast R-CNN Eq. 3)
    rpn_pre2000   RPN proposals decoded before NMS in training: torchvision 2000, ours 1000

What does not differ (checked): RoIs per image (64: ``PeerConfig.box_batch_size_per_image``),
proposals kept after NMS (300 / 300), the box coder's weights (10, 10, 5, 5), the RPN's IoU
thresholds (0.7 / 0.3), its 256 anchors per image at 1:1, the head's positive fraction (0.25),
score threshold (0.05), 100 detections per image, RoIAlign's sampling ratio (2), the anchors, the
backbone, the images (enlarged 2x), the optimiser and its schedule.

One run per row, on one machine in one go: a row's AP moves by up to about 2 points on a redraw
of the random samples alone (``benchmarks/report.md``, section 11), so a step smaller than that is
not resolved by one walk. Steps are reported beside seconds: a wider head buys fewer steps.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

from stages.evaluation.tables import format_rows  # noqa: E402
from stages.faster_rcnn.__main__ import main as faster_rcnn_main  # noqa: E402
from stages.mask_rcnn.__main__ import main as mask_rcnn_main  # noqa: E402
from stages.torchvision.peers import main as peers_main  # noqa: E402
from stages import run  # noqa: E402


@dataclass(frozen=True)
class Row:
    name: str
    what: str  # the difference this row adds
    command: str  # "faster_rcnn", "mask_rcnn" or "peer:<kind>"
    flags: tuple = ()


# torchvision's choices, cumulatively (each row keeps the ones above it)
STEPS = (("fc1024", "box head 1024 wide (TwoMLPHead)", ("--fc-dim", "1024")),
         ("nms05", "head NMS 0.5", ("--nms-thresh", "0.5")),
         ("bg0", "background RoIs of any IoU < 0.5", ("--bg-iou-lo", "0")),
         ("beta19", "head smooth L1 beta 1/9", ("--smooth-l1-beta", "0.1111")),
         ("rpn_pre2000", "RPN 2000 pre-NMS proposals in training", ("--rpn-pre-nms-train", "2000")))

# the three of them that cost no test time: all but the head's width and the RPN's count
NARROW = ("--nms-thresh", "0.5", "--bg-iou-lo", "0", "--smooth-l1-beta", "0.1111")


def walk_rows() -> list[Row]:
    rows = [Row("ours_faster", "our stage 3 (RoIPool, fc 256)", "faster_rcnn")]
    flags: tuple = ()
    for name, what, more in STEPS:
        flags += more
        rows.append(Row(name, "+ " + what, "faster_rcnn", flags))
    rows += [Row("ours_mask", "our stage 4 (RoIAlign + masks), defaults", "mask_rcnn"),
             Row("ours_mask_walked", "our stage 4 + every step above", "mask_rcnn", flags),
             Row("peer_faster", "torchvision FasterRCNN, our backbone", "peer:faster_rcnn"),
             Row("peer_mask", "torchvision MaskRCNN, our backbone", "peer:mask_rcnn")]
    # the three choices that cost no test time (every step but the head's width and the RPN's)
    rows += [Row("faster_narrow", "our stage 3 + nms05, bg0, beta19 (fc 256)", "faster_rcnn", NARROW),
             Row("mask_narrow", "our stage 4 + nms05, bg0, beta19 (fc 256)", "mask_rcnn", NARROW)]
    return rows


ROWS = {row.name: row for row in walk_rows()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/walk_to_peer.py",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--budget", type=float, default=120.0, help="seconds of training per row")
    parser.add_argument("--runs", default="runs/walk", help="one run folder per row")
    parser.add_argument("--data", default="synthetic")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0,
                        help="the seed of every row (another seed redraws the samples and flips)")
    return parser


def train_row(row: Row, args) -> tuple[dict, float]:
    """Train and evaluate one row with its stage command; (result record as a dict, wall s)."""
    out = Path(args.runs) / row.name
    argv = ["--data", args.data, "--time-budget", str(args.budget), "--out", str(out),
            "--device", args.device, "--no-progress", "--seed", str(args.seed), *row.flags,
            *run.overwrite_flag(out)]  # this benchmark's own folder, trained again
    print(f"\n[walk] {row.name}: {row.what}", flush=True)
    t0 = time.perf_counter()
    if row.command.startswith("peer:"):
        result = peers_main([row.command.split(":")[1], *argv])
    else:
        result = {"faster_rcnn": faster_rcnn_main, "mask_rcnn": mask_rcnn_main}[row.command](argv)
    return result.to_dict(), time.perf_counter() - t0


def table(results: dict) -> str:
    header = ["row", "what", "box AP", "AP50", "AP75", "mask AP", "steps", "train s",
              "test ms/img", "vs previous"]
    lines, previous = [], None
    for name, r in results.items():
        box = r["box"]
        delta = "" if previous is None else f"{box['AP'] - previous:+.1f}"
        previous = box["AP"] if ROWS[name].command == "faster_rcnn" else previous
        lines.append([name, ROWS[name].what, f"{box['AP']:.1f}", f"{box['AP50']:.1f}",
                      f"{box['AP75']:.1f}", f"{r['mask']['AP']:.1f}" if r["mask"] else "-",
                      str(r["steps"]), f"{r['train_time_s']:.0f}", f"{r['ms_per_image']:.1f}",
                      delta if ROWS[name].command == "faster_rcnn" else ""])
    return format_rows(header, lines, text_columns=2, markdown=True)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    print(f"# the walk to torchvision's peers: {args.budget:g} s of training per row, data "
          f"{args.data}, seed {args.seed}, {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}")
    results, seconds = {}, {}
    for name in args.rows:
        results[name], seconds[name] = train_row(ROWS[name], args)
    print("\n" + table(results))
    print(f"\n(wall: {sum(seconds.values()) / 60:.1f} min for {len(results)} rows; 'vs previous': "
          f"box AP against the row above, along the stage-3 walk)")
    return results


if __name__ == "__main__":
    main()
