"""The plumbing every stage command shares: the training loop and what it needs.

    engine.py      train(model, optimizer, dataset, ...): the short visible loop
    optimizer.py   build_optimizer and lr_factor: one optimizer and one lr schedule for all
    batches.py     each epoch's mini-batches: seeded per image, each process its share
    loss_figure.py losses.png: each loss against the step, validation AP against seconds
    run.py         a stage command's life: parse, prepare, train or resume, evaluate, save
    cli.py         flags built from the config dataclasses (help = the field's ``param`` metadata)
    checkpoint.py  save / load / resume, refused for another stage's run
    load.py        a trained run rebuilt from its folder (stages.predict, the figures)
    device.py      --device auto|cpu|cuda, and synchronize before a clock is read
    distributed.py torchrun: DistributedDataParallel, each process's share, rank 0 writes
    io.py          atomic writes: nothing a user made is lost
"""
