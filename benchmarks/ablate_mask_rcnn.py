"""Mask R-CNN's Table 2 on our data: RoIPool or RoIAlign, max or mean, sigmoid or softmax, FPN.

Trains ``python -m stages.mask_rcnn`` once per variant on the same data, split and time budget,
each into ``<runs>/<variant>``, and prints one table (box and mask AP / AP50 / AP75, ms per image)
with each row's difference from the default. The variants, their flags and what the paper measured
are listed in ``stages/mask_rcnn/ablation.py``::

    python benchmarks/ablate_mask_rcnn.py                          # all six, 120 s each (~16 min)
    python benchmarks/ablate_mask_rcnn.py --variants align roi_pool --budget 60
    python benchmarks/ablate_mask_rcnn.py --markdown runs/ablation/table.md
    python benchmarks/ablate_mask_rcnn.py --data pennfudan:../shared/datasets/PennFudanPed \\
        --runs runs/ablation_pennfudan --long-side 256 --anchor-ratios 1 2 3

A variant whose ``metrics.json`` exists (for the same ``--data``) is read back, not trained again,
unless ``--retrain``. Any other flag of ``python -m stages.mask_rcnn`` (``--long-side``,
``--device``, ``--no-progress``, ``--anchor-ratios``, ...) is read by its parser into the run
settings and the config every variant shares.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere, no install needed

import dataclasses  # noqa: E402

from stages.mask_rcnn.__main__ import SKIP  # noqa: E402
from stages.mask_rcnn.ablation import (VARIANTS, ablation_markdown, ablation_table,  # noqa: E402
                                       run_variants)
from stages.mask_rcnn.config import MaskRCNNConfig  # noqa: E402
from stages import files, run  # noqa: E402
from stages.flags import RunConfig, dataclass_from_args  # noqa: E402


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python benchmarks/ablate_mask_rcnn.py",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Any other flag goes to python -m stages.mask_rcnn.",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     allow_abbrev=False)  # --run must not become --runs
    parser.add_argument("--budget", type=float, default=120.0,
                        help="seconds of training per variant")
    parser.add_argument("--epochs", type=int, default=None, help="also stop after this many epochs")
    parser.add_argument("--data", default="synthetic", help="synthetic | coco:ANN.json[:IMAGES] | "
                        "pennfudan:DIR")
    parser.add_argument("--data-root", default="data", help="where generated data lives")
    parser.add_argument("--runs", default="runs/ablation", help="one folder per variant under it")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--retrain", action="store_true", help="train even the variants that have "
                        "a metrics.json")
    parser.add_argument("--markdown", default=None, help="also write the table here, as Markdown")
    args, stage_argv = parser.parse_known_args(argv)
    stage = run.build_parser(None, MaskRCNNConfig, skip=SKIP,  # the other flags: stage 4's
                             prog="python -m stages.mask_rcnn").parse_args(stage_argv)
    given = dataclass_from_args(RunConfig, stage)  # its --time-budget / --epochs win, as given last
    run_cfg = dataclasses.replace(given, data=args.data, data_root=args.data_root,
                                  time_budget=given.time_budget or args.budget,
                                  epochs=given.epochs if given.epochs is not None else args.epochs)
    results = run_variants(args.variants, args.runs, run_cfg,
                           dataclass_from_args(MaskRCNNConfig, stage), retrain=args.retrain)
    table = ablation_table(results)
    print("\nMask R-CNN ablations (cf. He et al. 2017, Table 2)\n" + table)
    if args.markdown:
        print(f"\nwrote {files.write_text(args.markdown, ablation_markdown(results))}")
    return table


if __name__ == "__main__":
    main()
