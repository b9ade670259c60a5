"""Checkpoints: written atomically, loaded without running code, refused when they do not fit.

A checkpoint is a plain dict saved with ``torch.save``::

    format       "rcnn-stages-checkpoint/1"
    stage        which stage wrote it ("fast_rcnn", ...): another stage's weights are refused
    class_names  ["background", ...]: a checkpoint for another class count is refused
    config       the stage config as a dict (what produced these weights)
    model        state_dict
    optimizer    state_dict or None (None for steps trained outside torch, e.g. R-CNN's SVMs)
    epoch, step  how far training got (epochs completed, optimizer steps)
    train_time_s training seconds so far (a time budget counts across resumes)
    history      the logged losses, one dict per logged step
    rng          torch's CPU generator state, so that a resumed run draws what it would have drawn
    extra        anything else a stage needs (R-CNN's SVM weights as tensors, say)

Loading uses ``torch.load(weights_only=True)``: only tensors and plain containers are read back,
so a checkpoint file from elsewhere cannot run code on this machine.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from stages import files

FORMAT = "rcnn-stages-checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message names the file and the reason."""


def save_checkpoint(path: str | os.PathLike, *, stage: str, class_names: list[str], config: dict,
                    model: torch.nn.Module, optimizer=None, epoch: int = 0, step: int = 0,
                    train_time_s: float = 0.0, history: list | None = None,
                    extra: dict | None = None) -> Path:
    """Write a checkpoint atomically (a crash mid-write leaves the previous file intact)."""
    state = {
        "format": FORMAT, "stage": stage, "class_names": list(class_names), "config": dict(config),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "epoch": int(epoch), "step": int(step), "train_time_s": float(train_time_s),
        "history": list(history or []), "rng": torch.get_rng_state(), "extra": dict(extra or {}),
    }
    return files.atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, *, stage: str | None = None,
                    class_names: list[str] | None = None, map_location="cpu") -> dict:
    """Read a checkpoint safely and check that it belongs to ``stage`` and to ``class_names``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is damaged
        raise CheckpointError(f"{path}: not a readable checkpoint (damaged or truncated?): "
                              f"it is not the zip archive that torch.save writes")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # weights_only refuses any pickled global that is not a tensor or a plain container
        reason = next((line.strip() for line in str(e).splitlines() if "GLOBAL" in line
                       or "Unsupported" in line), str(e).splitlines()[0])
        raise CheckpointError(f"{path}: refused: the file holds objects other than tensors and "
                              f"plain containers, and loading them could run code ({reason})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (damaged or truncated?): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an R-CNN Stages checkpoint (no '{FORMAT}' header)")
    if stage is not None and state["stage"] != stage:
        raise CheckpointError(f"{path}: this checkpoint was written by stage '{state['stage']}', "
                              f"not '{stage}'; pass a checkpoint of this stage or start afresh")
    if class_names is not None and list(state["class_names"]) != list(class_names):
        k_file, k_data = len(state["class_names"]) - 1, len(class_names) - 1
        what = (f"{k_file} classes, the data has {k_data}" if k_file != k_data
                else f"classes {state['class_names'][1:]}, the data has {list(class_names)[1:]}")
        raise CheckpointError(f"{path}: the checkpoint was trained for {what}; "
                              f"use a checkpoint trained on this data, or train afresh")
    state["path"] = str(path)  # for the errors of whoever restores it
    return state


def restore(state: dict, model: torch.nn.Module, optimizer=None, restore_rng: bool = True) -> None:
    """Load a checkpoint's weights (and optimizer state, and RNG) into live objects."""
    model.load_state_dict(state["model"])
    if optimizer is not None and state.get("optimizer") is not None:
        optimizer.load_state_dict(state["optimizer"])
    if restore_rng and state.get("rng") is not None:
        torch.set_rng_state(state["rng"])
