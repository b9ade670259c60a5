"""``python -m stages.errors``: where the AP went, TIDE's six error types for any COCO results file.

    python -m stages.errors runs/mask_rcnn                        a run folder: boxes, and masks
                                                                  when the detections have them
    python -m stages.errors results.json instances_val.json       any COCO results + ground truth
    python -m stages.errors results.json gt.json --iou-type segm --json tide.json

Every detection that is not a true positive at IoU 0.5 gets one type, every unmatched gt may be
"missed"; dAP is the AP50 gained if an oracle fixed that type alone (Bolya et al., "TIDE: A General
Toolbox for Identifying Object Detection Errors", ECCV 2020):
    cls     right box, wrong class: IoU >= 0.5 with a gt of another class     (fix: relabel it)
    loc     right class, box off: 0.1 <= IoU <= 0.5 with a gt of its class    (fix: move the box)
    both    wrong class and box off: 0.1 < IoU < 0.5 with a gt of another class      (fix: drop)
    dupe    a second detection of a gt that a higher-scoring one already took        (fix: drop)
    bkg     fired on nothing: IoU <= 0.1 with every gt                               (fix: drop)
    missed  a gt that no detection found, nor would after a cls or loc fix (fix: uncount the gt)
    FP / FN all false positives dropped / all unmatched gt uncounted (TIDE's "special" errors)

A run folder (every stage's --out) holds ``detections.json`` and ``ground_truth.json``. Without
--iou-type both boxes and, when every detection has a "segmentation", masks are broken down. The
definitions, the oracles and where we differ from the ``tidecv`` package are in
``stages/evaluation/errors.py``. Bad input ends in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stages.evaluation.errors import breakdown, check_ground_truth, check_results, format_breakdown
from stages.flags import command_parser
from stages.files import write_json

DETECTIONS, GROUND_TRUTH = "detections.json", "ground_truth.json"  # a run folder's two files


class InputError(Exception):
    """Input that cannot be broken down: the message names the file and the problem."""


def build_parser():
    parser = command_parser("python -m stages.errors", __doc__)
    parser.add_argument("results", help="COCO results file (a JSON list of detections), or a "
                                        "run folder holding detections.json and ground_truth.json")
    parser.add_argument("annotations", nargs="?", default=None,
                        help="COCO ground-truth file (images, annotations, categories); "
                             "not given with a run folder")
    parser.add_argument("--iou-type", choices=("bbox", "segm"), default=None,
                        help="overlap of boxes or of masks (default: bbox, and segm too when "
                             "every detection has a segmentation)")
    parser.add_argument("--t-f", type=foreground_threshold, default=0.5, metavar="IOU",
                        help="the IoU a match needs (TIDE's t_f, default 0.5, AP50's); 0.75 asks "
                             "which errors cost AP75: a box of IoU 0.5-0.75 is then a loc error")
    parser.add_argument("--json", metavar="OUT", default=None,
                        help="also write the breakdowns to OUT as JSON, {iou_type: breakdown}")
    return parser


def foreground_threshold(text: str) -> float:
    """argparse's type of --t-f: an IoU above the background threshold 0.1, at most 1."""
    value = float(text)
    if not 0.1 < value <= 1.0:  # NaN fails this too
        raise argparse.ArgumentTypeError(f"{text}: expected an IoU in (0.1, 1]")
    return value


def input_files(results: str, annotations: str | None) -> tuple[Path, Path]:
    """(results file, annotations file) from the command line: two files, or one run folder."""
    path = Path(results)
    if path.is_dir():
        if annotations is not None:
            raise InputError(f"{path}: a run folder takes no second file (got {annotations})")
        path, annotations = path / DETECTIONS, path / GROUND_TRUTH
    elif annotations is None:
        raise InputError(f"{path}: give the COCO annotations file too, or a run folder")
    for p in (path, Path(annotations)):
        if not p.is_file():
            raise InputError(f"{p}: no such file")
    return path, Path(annotations)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read it ({e})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON ({e})") from None


def iou_types(detections: list, requested: str | None) -> list[str]:
    """The requested type, or bbox plus segm when every detection carries a mask."""
    if requested is not None:
        return [requested]
    with_masks = detections and all(isinstance(d, dict) and "segmentation" in d for d in detections)
    return ["bbox", "segm"] if with_masks else ["bbox"]


def run(results: str, annotations: str | None = None, iou_type: str | None = None,
        t_f: float = 0.5) -> dict:
    """{iou_type: breakdown} for the command line's files; InputError on bad input."""
    results_path, gt_path = input_files(results, annotations)
    detections, coco_gt = read_json(results_path), read_json(gt_path)
    out = {}
    for kind in iou_types(detections, iou_type):
        try:
            check_ground_truth(coco_gt, kind)
        except ValueError as e:
            raise InputError(f"{gt_path}: {e}") from None
        try:
            check_results(detections, coco_gt, kind)
            out[kind] = breakdown(coco_gt, detections, kind, t_f=t_f)
        except (ValueError, TypeError, KeyError) as e:  # e.g. a box that is not 4 numbers
            raise InputError(f"{results_path}: {e}") from None
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        breakdowns = run(args.results, args.annotations, args.iou_type, args.t_f)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n\n".join(format_breakdown(b) for b in breakdowns.values()))
    if args.json:
        try:
            write_json(args.json, breakdowns)
        except OSError as e:
            print(f"error: --json {args.json}: cannot write it ({e.strerror})", file=sys.stderr)
            return 2
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
