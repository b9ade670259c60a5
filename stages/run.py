"""What every stage command does around its model: flags, data, output folder, result record.

A stage's ``main()`` reads top to bottom with these helpers (no framework, no callbacks)::

    parser = run.build_parser(__doc__, StageConfig)            # shared flags + the stage's own
    args = parser.parse_args(argv)
    ctx = run.prepare(args, stage="fast_rcnn")                 # seed, device, data, output folder
    model = build_model(cfg, ctx.num_classes)
    ... train (stages.engine.train) or load the checkpoint (--eval-only) ...
    run.finish(model, ctx, variant="pool=roi", train_time_s=...)   # evaluate, save, print a row

``finish`` writes ``metrics.json`` (the result record ``compare`` and the notebooks read) and
``predictions.png`` into the output folder and prints the table row.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from stages.cli import RunConfig, add_dataclass_args, dataclass_from_args
from stages.datasets import DatasetError, load_dataset
from stages.device import choose_device, count_parameters, seed_everything
from stages.draw import draw_detections, figure_grid
from stages.evaluate import Result, evaluate, format_table
from stages.io import save_figure
from stages.transforms import train_transforms, val_transforms

METRICS = "metrics.json"
PREDICTIONS = "predictions.png"


def build_parser(description: str | None, *config_classes) -> argparse.ArgumentParser:
    """The shared flags (``RunConfig``) plus one flag per field of each stage config class."""
    parser = argparse.ArgumentParser(description=(description or "").split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_dataclass_args(parser, RunConfig, "run")
    for cls in config_classes:
        add_dataclass_args(parser, cls, cls.__name__)
    return parser


@dataclass
class Context:
    run: RunConfig
    stage: str
    device: torch.device
    out_dir: Path
    train: object  # the training dataset (with flips)
    val: object  # the validation dataset

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names


def prepare(args: argparse.Namespace | RunConfig, stage: str) -> Context:
    """Seed, choose the device, load the data, make the output folder (``runs/<stage>``)."""
    run = args if isinstance(args, RunConfig) else dataclass_from_args(RunConfig, args)
    if run.preset not in ("quick", "full"):
        raise SystemExit(f"--preset {run.preset!r}: expected 'quick' or 'full'")
    seed_everything(run.seed)
    device = choose_device(run.device)
    try:
        train, val = load_dataset(run.data, run.data_root, train_transforms(run.long_side),
                                  val_transforms(run.long_side))
    except DatasetError as e:  # the user's data: one clear line, no traceback
        raise SystemExit(f"error: {e}") from None
    out_dir = Path(run.out or Path("runs") / stage)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"[{stage}] data {run.data}: {len(train)} train / {len(val)} val images, "
          f"classes {train.class_names[1:]}; device {device}; output {out_dir}")
    return Context(run, stage, device, out_dir, train, val)


def save_predictions(model, dataset, path, device, n: int = 8, score_threshold: float = 0.5):
    """A grid of the model's detections (and masks) on the first ``n`` images of ``dataset``."""
    n = min(n, len(dataset))
    fig, axes = figure_grid(n, cols=4)
    model.eval()
    with torch.no_grad():
        for i, ax in enumerate(axes):
            image, _ = dataset[i]
            out = model([image.to(device)])[0]
            draw_detections(ax, image, out["boxes"], out["labels"], out["scores"], out.get("masks"),
                            dataset.class_names, score_threshold=score_threshold,
                            title=f"image {i}: {(out['scores'] >= score_threshold).sum()} detections")
    fig.tight_layout()
    return save_figure(fig, path)


def finish(model, ctx: Context, *, variant: str, train_time_s: float,
           max_images: int | None = None) -> Result:
    """Evaluate on the validation set, save ``metrics.json`` and ``predictions.png``, print the row."""
    ev = evaluate(model, ctx.val, ctx.device, max_images=max_images, progress=ctx.run.progress)
    result = Result.from_evaluation(ev, stage=ctx.stage, variant=variant, data=ctx.run.data,
                                    train_time_s=train_time_s, params=count_parameters(model),
                                    n_train=len(ctx.train), device=str(ctx.device), seed=ctx.run.seed)
    result.save(ctx.out_dir / METRICS)
    save_predictions(model, ctx.val, ctx.out_dir / PREDICTIONS, ctx.device)
    print(format_table([result]))
    print(f"[{ctx.stage}] wrote {ctx.out_dir / METRICS} and {ctx.out_dir / PREDICTIONS}")
    return result
