"""The shared data: one dataset item format for every stage.

    datasets.py    the (image, target) item; DetectionDataset, CocoDataset (any COCO-format file),
                   PennFudanDataset; DatasetError for bad input
    sources.py     load_dataset(spec): the synthetic set, any COCO-format file, Penn-Fudan; the
                   train / validation split rule
    synthetic.py   the built-in shapes set, generated on first use (python -m stages.data.synthetic)
    transforms.py  the training / validation transforms (flip, long side, the 1333-px cap)
    checks.py      check_inputs: every image opened before training, the problems said together
    box_statistics.py  the training boxes' sizes and shapes -> settings chosen from the data
    coco_format.py COCO's box (x, y, w, h) and mask (RLE) formats, for the writer and the evaluator

Imports go one way: ``sources`` -> ``synthetic`` -> ``datasets`` (the generator's command reads
its set back with ``CocoDataset``, so ``datasets`` must not need the other two).
"""
