"""The shared data: one dataset item format for every stage.

    sources.py     load_dataset(spec): the synthetic set, any COCO-format file, Penn-Fudan; the
                   train / validation split rule; DetectionDataset items (image, target)
    synthetic.py   the built-in shapes set, generated on first use (python -m stages.data.synthetic)
    transforms.py  the training / validation transforms (flip, long side)
"""
