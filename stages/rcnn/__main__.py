"""Train R-CNN in its separate steps on the chosen data, evaluate it, and save what it measured.

    python -m stages.rcnn                                     quick preset, selective search
    python -m stages.rcnn --proposals sliding_window          the exhaustive baseline
    python -m stages.rcnn --eval-only --no-bbox-reg           the same trained model, no regression
    python -m stages.rcnn --eval-only --classifier softmax    Appendix B / Fast R-CNN Table 8

Steps (sec. 2.3): proposals for the training images (selective search is cached on disk under
<data-root>/proposals and computed on --workers processes), CNN pre-training on ground-truth
crops, (K+1)-way fine-tuning, features of every training region, SVMs with hard negative mining,
box regressors; then COCO evaluation on the validation images, with selective search run live.

Writes into --out (default runs/rcnn): checkpoint.pt (the CNN's weights; the SVMs and box
regressors as tensors in ``extra``), metrics.json (the shared result record), predictions.png,
proposals.png (recall against proposals per image) and train_log.json (losses, SVM rounds).
Devices: the warps, the CNN (fine-tuning and features), SVM scoring and box regression run on
--device (a GPU with auto, when there is one); selective search and the scikit-learn fits of the
SVMs and regressors run on the CPU, whatever the device. --steps N: the CNN trains N mini-batches.
Under torchrun (--nproc_per_node=N) the N processes fine-tune the CNN together, each warping its
share of every mini-batch (DistributedDataParallel); rank 0 then goes on alone with the features,
SVMs, regressors and evaluation, and writes every file.

--resume: R-CNN trains in steps, not epochs. The checkpoint is written once the CNN is fine-tuned
(the long step) and again when the SVMs and regressors are trained; --resume reuses what it holds:
a finished checkpoint is evaluated as it is, a CNN-only one goes on with the features, SVMs and
regressors. --eval-only evaluates a finished checkpoint; the test-time switches (--proposals,
--classifier, --bbox-reg, --nms-iou, ...) apply to it, the rest of its config is the trained one.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from matplotlib.figure import Figure

from stages.evaluation import Result
from stages.training import distributed, engine, loss_figure
from stages import run
from stages import files
from stages.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from stages.flags import RunConfig, dataclass_from_args, dataclass_from_dict
from stages.training.engine import CHECKPOINT
from stages.rcnn.config import RCNNConfig, resolve
from stages.rcnn.model import load_region_cnn, model_from_checkpoint, phases_done
from stages.rcnn.proposers import (OTHER_METHOD_IMAGES, compare_methods, format_proposal_report,
                                   make_proposer, plot_recall)
from stages.rcnn.train import train_rcnn
from stages.data.transforms import val_transforms
from stages.selective_search import CACHE_DIR

STAGE = "rcnn"
TRAIN_LOG = "train_log.json"
PROPOSALS_FIGURE = "proposals.png"
REPORT_IMAGES = 50  # validation images in the proposal report


def trained_config(saved: dict, switches: dict) -> RCNNConfig:
    """The checkpoint's config, with the test-time ``switches`` over it ({field: value}, fields of
    ``RCNNConfig.TEST_TIME``): ``--eval-only --no-bbox-reg`` changes only ``bbox_reg``."""
    cfg = dataclass_from_dict(RCNNConfig, saved)  # old names read under new ones (RENAMED)
    unknown = set(switches) - set(RCNNConfig.TEST_TIME)
    if unknown:
        raise ValueError(f"{sorted(unknown)}: not test-time fields (RCNNConfig.TEST_TIME); the "
                         f"trained model keeps the rest of its config")
    if switches:
        print(f"[rcnn] test-time switches over the checkpoint's config: {switches}")
    return dataclasses.replace(cfg, **switches)


def given_flags(parser: argparse.ArgumentParser, argv: list[str] | None, names) -> set[str]:
    """Which of the fields ``names`` the command line sets (argparse fills a default only for an
    attribute the namespace does not already have, so a pre-filled marker survives if unset)."""
    unset = object()
    probe = parser.parse_args(argv, namespace=argparse.Namespace(**{n: unset for n in names}))
    return {n for n in names if getattr(probe, n) is not unset}


def report_proposals(val, cfg: RCNNConfig, cache_root: Path, out_dir: Path) -> dict:
    """The first lesson: every proposal method on the first validation images, printed and drawn
    (the selective searches this run does not use on fewer images: ``compare_methods``)."""
    n = min(REPORT_IMAGES, len(val))
    items = [val[i] for i in range(n)]
    images, gt = [im for im, _ in items], [t["boxes"] for _, t in items]
    report = compare_methods(images, gt, cfg, cache_root, cfg.workers)
    print(f"[rcnn] proposal report, the first {n} validation images (recall with all proposals; "
          f"the selective searches this run does not use on the first "
          f"{min(OTHER_METHOD_IMAGES, n)}, to save time):")
    print(format_proposal_report(report))
    fig = Figure(figsize=(7, 5.5), layout="constrained")  # constrained: room for the legend below
    plot_recall(fig.add_subplot(1, 1, 1), report)
    files.save_figure(fig, out_dir / PROPOSALS_FIGURE)
    return report


@run.one_line_errors
def train_and_evaluate(run_cfg: RunConfig, cfg: RCNNConfig | None = None,
                       test_time: dict | None = None) -> Result | None:
    """Train R-CNN in its steps (or restore it), evaluate it, save the run into ``run_cfg.out``;
    returns its result record (None on the other ranks under torchrun). ``cfg``: None is the
    command's defaults (``run.command_defaults``). With ``run_cfg.eval_only`` or ``.resume`` the
    checkpoint's config is used, with ``test_time`` ({field of ``RCNNConfig.TEST_TIME``: value})
    over it."""
    ctx = run.prepare(run_cfg, stage=STAGE)
    cfg = resolve(run.stage_config(RCNNConfig, cfg or run.command_defaults(RCNNConfig), ctx),
                  ctx.run.preset, ctx.run.epochs)
    ckpt_path = ctx.out_dir / CHECKPOINT
    cache_root = Path(ctx.run.data_root) / CACHE_DIR

    state, done, saved_cnn = None, [], None
    if ctx.run.eval_only or (ctx.run.resume and ckpt_path.exists()):
        try:
            state = load_checkpoint(ckpt_path, stage=STAGE, class_names=ctx.class_names)
            cfg = trained_config(state["config"], test_time or {})
            saved_cnn = load_region_cnn(state, cfg)  # its CNN must fit: fail now, not later
        except CheckpointError as e:
            raise SystemExit(f"error: {e}") from None
        done = phases_done(state)
        print(f"[rcnn] checkpoint {ckpt_path}: steps done {done}")
    if ctx.run.eval_only and "svm_bbox" not in done:
        raise SystemExit(f"error: {ckpt_path} holds an unfinished R-CNN (steps {done}); "
                         f"train it first (python -m stages.rcnn --resume)")

    train_time = state["train_time_s"] if state else 0.0
    history = state["history"] if state else []
    stopped_by = state["extra"].get("stopped_by") if state else None
    if "svm_bbox" in done:
        if not distributed.is_main():
            return None  # rank 0 evaluates
        model = model_from_checkpoint(state, cfg, make_proposer(cfg)).to(ctx.device)
        print("[rcnn] the checkpoint is fully trained: evaluating it (nothing left to train)")
    else:
        def save_cnn(cnn, cnn_history, cnn_stopped_by, seconds):  # what --resume picks up
            if distributed.is_main():
                save_checkpoint(ckpt_path, stage=STAGE, class_names=ctx.class_names,
                                config=run.saved_config(ctx, cfg), model=cnn,
                                train_time_s=train_time + seconds, history=cnn_history,
                                extra={"phases_done": ["cnn"], "stopped_by": cnn_stopped_by})

        budget = ctx.run.time_budget
        if budget is None and ctx.run.steps is None:  # --steps replaces the preset's budget
            budget = cfg.quick_time_budget if ctx.run.preset == "quick" else None
        if "cnn" in done:
            print("[rcnn] reusing the fine-tuned CNN of the checkpoint")
        # R-CNN reads its training images without the random flips of the shared pipeline
        train_set = ctx.train.subset(ctx.train.indices, val_transforms(ctx.run.long_side))
        model, record = train_rcnn(
            train_set, cfg, cache_root=cache_root, workers=cfg.workers, seed=ctx.run.seed,
            time_budget=budget, max_steps=ctx.run.steps,
            steps_replace_epochs=ctx.run.epochs is None, device=ctx.device,
            cnn=saved_cnn.to(ctx.device) if "cnn" in done else None, on_cnn=save_cnn)
        if model is None:
            return None  # the processes fine-tuned the CNN together; rank 0 goes on alone
        if "cnn" not in done:
            history, stopped_by = record["cnn_history"], record["stopped_by"]
        train_time += record["seconds"].get("cnn", 0.0) + record["seconds"]["svm_bbox"]
        save_checkpoint(ckpt_path, stage=STAGE, class_names=ctx.class_names,
                        config=run.saved_config(ctx, cfg),
                        model=model.cnn, train_time_s=train_time,
                        history=history, extra={"phases_done": ["cnn", "svm_bbox"],
                                                "stopped_by": stopped_by,
                                                **model.extra_tensors()})
        files.write_json(ctx.out_dir / TRAIN_LOG, {
            "proposals": record["data"].summary, "cnn_history": history,
            "svm_rounds": record["svm_log"], "region_features_s": record["features"].seconds,
            "train_time_s": train_time})
        print(f"[rcnn] trained in {train_time:.1f} s (proposal computation not included); "
              f"wrote {ckpt_path}")

    report_proposals(ctx.val, cfg, cache_root, ctx.out_dir)
    if history:  # losses.png, as every run folder has: the CNN's cross-entropy per mini-batch
        steps = [{"step": i + 1, "loss": h["loss"]} for i, h in enumerate(history)]
        loss_figure.save_loss_figure(steps, ctx.out_dir / engine.LOSSES_FIGURE,
                                title=f"rcnn: the CNN's {len(steps)} mini-batches (pre-training, "
                                      f"then fine-tuning); the SVMs and regressors are fitted after")
    trained = run.Trained(train_time, len(history), stopped_by)
    result = run.finish(model, ctx, variant=cfg.variant, trained=trained)
    parts = ", ".join(f"{k} {v:.1f}" for k, v in result.timing_ms.items())
    print(f"[rcnn] ms per image: {parts} (proposals computed live at test time)")
    return result


def main(argv: list[str] | None = None) -> Result | None:
    # no --eval-every (R-CNN's AP exists only once its SVMs are trained) and no
    # --checkpoint-every: its checkpoint is written once the CNN is fine-tuned, then once the
    # SVMs and regressors are fitted (a Ctrl-C in between keeps the last of them)
    parser = run.build_parser(__doc__, RCNNConfig, prog=f"python -m stages.{STAGE}",
                              skip=("eval_every", "checkpoint_every", *RCNNConfig.NOT_READ))
    args = parser.parse_args(argv)
    cfg = dataclass_from_args(RCNNConfig, args)
    given = given_flags(parser, argv, RCNNConfig.TEST_TIME)  # over a checkpoint's config
    return train_and_evaluate(dataclass_from_args(RunConfig, args), cfg,
                              test_time={k: getattr(cfg, k) for k in RCNNConfig.TEST_TIME if k in given})


if __name__ == "__main__":
    main()
