"""Stage 4 on real photos: the settings chosen from the data (``auto``) against hand-picked flags.

    python benchmarks/bench_real_photos.py                               both rows, 300 s each
    python benchmarks/bench_real_photos.py --budget 60 --rows auto       one row, a minute

On Penn-Fudan's pedestrians (the torchvision fine-tuning tutorial's data), one after the other in
this one process, the same seed and training budget:

    auto   ``python -m stages.mask_rcnn --data pennfudan:DIR`` and nothing else: the long side,
           image scale and anchors chosen from the training boxes (``stages.data.box_statistics``)
    hand   the flags a person picked before ``auto`` existed: ``--long-side 256 --anchor-sizes
           32 64 128 --anchor-ratios 1 2 3 --input-scale 1``

It prints one table: box AP / AP50 / AP75, mask AP, the steps each row took in its seconds (a
loaded machine buys fewer: read them), and what ``auto`` chose. The project's target for the
``auto`` row at 300 s: box AP >= 55, mask AP >= 45.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

from stages.mask_rcnn.__main__ import main as mask_rcnn_main  # noqa: E402
from stages import run  # noqa: E402

PENNFUDAN = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "PennFudanPed"
ROWS = {
    "auto": [],
    "hand": ["--long-side", "256", "--anchor-sizes", "32", "64", "128", "--anchor-ratios", "1", "2",
             "3", "--input-scale", "1"],
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python benchmarks/bench_real_photos.py",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=f"pennfudan:{PENNFUDAN}", help="the photos (a --data spec)")
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of training per row")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--out", default="runs/bench_real_photos", help="one run folder per row")
    parser.add_argument("--device", default="auto")
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    rows = []
    for name in args.rows:
        out = Path(args.out) / name
        flags = ["--data", args.data, "--time-budget", str(args.budget), "--out", str(out),
                 "--device", args.device, "--no-progress", *ROWS[name],
                 *run.overwrite_flag(out)]  # this benchmark's own folder, trained again
        print(f"\n[bench_real_photos] {name}: python -m stages.mask_rcnn {' '.join(flags)}", flush=True)
        result = mask_rcnn_main(flags)
        config = {}
        try:  # what the run was built with: the values chosen from the data among them
            import torch
            config = torch.load(out / "checkpoint.pt", weights_only=True)["config"]
        except (OSError, RuntimeError, KeyError):
            pass
        rows.append({"row": name, "box AP": result.box["AP"], "AP50": result.box["AP50"],
                     "AP75": result.box["AP75"], "mask AP": result.mask["AP"], "steps": result.steps,
                     "train s": result.train_time_s, "long side": config.get("long_side"),
                     "input scale": config.get("input_scale"),
                     "anchor sizes": config.get("anchor_sizes"),
                     "anchor ratios": config.get("anchor_ratios")})
    print(f"\n[bench_real_photos] {args.data}, {args.budget:g} s of training per row")
    print("| row | box AP | AP50 | AP75 | mask AP | steps | train s | long side | input scale | "
          "anchor sizes | anchor ratios |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['row']} | {r['box AP']:.1f} | {r['AP50']:.1f} | {r['AP75']:.1f} | "
              f"{r['mask AP']:.1f} | {r['steps']} | {r['train s']:.0f} | {r['long side']} | "
              f"{r['input scale']:g} | {' '.join(f'{v:g}' for v in r['anchor sizes'])} | "
              f"{' '.join(f'{v:g}' for v in r['anchor ratios'])} |")
    (Path(args.out) / "bench_real_photos.json").write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
