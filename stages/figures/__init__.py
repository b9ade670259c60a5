"""The pictures: drawing helpers and the lecture figures, one module per stage, in lecture order.

    draw.py          the drawing helpers the notebooks, the runs and the figures share
    common.py        Inputs (the image, its proposals, the runs), Skip, trained_model, slide sizes
    rcnn.py          proposals, warped_regions, hard_negatives        (R-CNN 2.1, 2.3, App. A)
    fast_rcnn.py     roi_pool, spp                                    (Fast R-CNN 2.1, SPP-net 2.2)
    faster_rcnn.py   anchors, rpn                                     (Faster R-CNN 3.1, 3.3)
    mask_rcnn.py     roi_align, fpn, masks, mask_path                 (Mask R-CNN 3, Fig. 4, FPN Eq. 1)
    evaluation.py    precision_recall: AP as the area under the curve, mAP (COCO)
    comparison.py    all four stages: AP against test time (``python -m stages.compare``'s plot)
    gallery.py       the list of figures and ``python -m stages.figures``, which writes them
                     (``--out docs/figures --dpi 80 --palette``: the committed gallery)

Nothing is imported here, so ``import stages.figures.draw`` stays light (no stage package).
"""
