"""R-CNN Stages: object detection from R-CNN to Mask R-CNN, one runnable stage at a time.

The package reads as the course (README.md, "What is where"): the shared parts first, then the
four stages, each built from the previous one's parts with what its paper changed, then what runs
them, the measurements and the pictures.

    The layers go one way, bottom first (tests/test_architecture.py checks it):

    ops/            from scratch: boxes, nms, box_coder, roi_pool, roi_align, rois, matcher
    data/           the shared (image, target) item: datasets (readers), sources (--data,
                    the split rule), synthetic (the built-in set), transforms, coco_format
    files, devices, flags   atomic writes; --device and synchronize; config dataclasses <->
                    command-line flags (``param``: each field's help and paper value)
    backbone        the CNN all stages share: EfficientNet-Lite0 from ImageNet weights (or the
                    tiny CNN from random weights, the ablation)
    selective_search  selective search and its disk cache, shared by stages 1 and 2
    evaluation/     one evaluator: ap (by hand), coco (pycocotools), evaluator, result, tables,
                    recall (of proposals), errors (TIDE's error types)
    training/       the one loop (engine), optimizer and schedule, batches, checkpoint,
                    distributed (torchrun), loss_figure
    recipe          the training recipe every stage config inherits: optimizer, warm-up,
                    clipping, lr drop, the presets' budgets, kernels (no paper's values)
    figures/draw    the drawing helpers (matplotlib) that runs, notebooks and figures share
    rcnn/           stage 1, R-CNN: sliding windows, proposers, warped regions, CNN, SVMs, boxes
    fast_rcnn/      stage 2, Fast R-CNN: pooling (RoI, SPP), sampling, head, model
    faster_rcnn/    stage 3, Faster R-CNN: anchors, rpn, model (stage 2's, another proposer)
    mask_rcnn/      stage 4, Mask R-CNN: pooling (RoIAlign), fpn, mask_head, model
    run             a stage command's life: prepare, train or restore, evaluate, save
    torchvision/    torchvision's fine-tuning path (finetune, weights), the peers, the adapter
    run_stage       run_stage(stage, run, cfg) -> Result: the typed function of each stage
                    command, by name (what compare, the ablation and the benchmarks call)
    trained_run     a trained run rebuilt from its folder (stages.predict, the figures)
    compare         python -m stages.compare: every stage on the same data, one table, one plot;
                    compare_report (its tables, ratios and files), compare_reuse (reuse a run)
    predict         python -m stages.predict: every trained stage on your own photos, side by side
    errors          python -m stages.errors: TIDE's error types for a run or any COCO results file
    figures/        one module of lecture figures per stage, diagrams, gallery, dataset_preview
    mask_rcnn/ablation  the Mask R-CNN paper's Table 2 ablations, by run_stage
    notebook        the notebooks' setup (setup) and show_source: one home for what they share

``python -m stages`` lists the stages and the commands that run them.
"""

__version__ = "0.1.0"

# (command-line module, paper, what it adds) -- printed by ``python -m stages``
STAGES = [
    ("stages.rcnn", "R-CNN (Girshick et al., CVPR 2014)",
     "selective search / sliding windows, warped regions, a CNN per region, linear SVMs, box regression"),
    ("stages.fast_rcnn", "Fast R-CNN (Girshick, ICCV 2015) + SPP-net (He et al., ECCV 2014)",
     "one CNN pass per image, RoI pooling or SPP, softmax + box regression in one multi-task loss"),
    ("stages.faster_rcnn", "Faster R-CNN (Ren et al., NeurIPS 2015)",
     "a Region Proposal Network (3 scales x 3 ratios of anchors) replaces selective search"),
    ("stages.mask_rcnn", "Mask R-CNN (He et al., ICCV 2017) + FPN (Lin et al., CVPR 2017)",
     "RoIAlign replaces RoI pooling, a per-class mask branch, a feature pyramid"),
]
