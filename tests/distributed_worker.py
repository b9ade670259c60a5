"""A stage command run by ``tests/test_distributed.py``, with two things recorded per process.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/distributed_worker.py \\
        RECORD_DIR faster_rcnn --steps 1 ...

Runs ``python -m stages.<stage>`` with the remaining arguments (in one process, or in each of
torchrun's), and writes into RECORD_DIR, for the process of rank r:

- ``rank<r>.pt``: the weights that process holds before and after training (its own model, not
  a file the stage wrote; R-CNN: its CNN after training), and the training's step count;
- ``rank<r>.json``: every file the process wrote through ``stages.files`` (all of the
  project's outputs go through it: checkpoints, metrics, figures, losses).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

import torch

from stages.training import engine
from stages import files


def main() -> None:
    record_dir, stage, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    rank = int(os.environ.get("RANK", "0"))
    writes, trained = [], {}

    atomic_write = files.atomic_write

    def recording_write(path, write, mode="wb"):
        writes.append(str(path))
        return atomic_write(path, write, mode)

    train = engine.train

    def recording_train(model, *args, **kwargs):
        trained["initial"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        result = train(model, *args, **kwargs)
        trained["weights"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        trained["steps"] = result.steps
        return result

    files.atomic_write, engine.train = recording_write, recording_train
    command = importlib.import_module(f"stages.{stage}.__main__")
    if stage == "rcnn":  # the engine trains R-CNN's CNN inside a RegionClassifier, in two
        #                    phases (pre-training, fine-tuning), called by train_rcnn: record
        #                    the CNN that comes out
        rcnn_train = importlib.import_module("stages.rcnn.train")
        train_cnn = rcnn_train.train_cnn

        def recording_train_cnn(*args, **kwargs):
            cnn, history, stopped_by = train_cnn(*args, **kwargs)
            trained["weights"] = {k: v.detach().cpu().clone() for k, v in cnn.state_dict().items()}
            trained["steps"] = len(history)
            return cnn, history, stopped_by
        rcnn_train.train_cnn = recording_train_cnn
    command.main(argv)
    record_dir.mkdir(parents=True, exist_ok=True)
    torch.save(trained, record_dir / f"rank{rank}.pt")
    (record_dir / f"rank{rank}.json").write_text(json.dumps(writes))


if __name__ == "__main__":
    main()
