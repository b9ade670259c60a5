"""The one training loop every stage trains with, and what it needs; generic: it imports no stage,
no evaluation and no figure (the stage commands' side of a run is ``stages.run``).

    engine.py      train(model, optimizer, dataset, ...): the short visible loop
    optimizer.py   build_optimizer and lr_factor: one optimizer and one lr schedule for all
    batches.py     each epoch's mini-batches: seeded per image, each process its share
    checkpoint.py  save / load / resume, refused for another stage's run
    distributed.py torchrun: DistributedDataParallel, each process's share, rank 0 writes
    loss_figure.py losses.png: each loss against the step, validation AP against seconds
"""
