"""Where a run computes, and how it is made repeatable: ``--device`` and ``--seed``.

``choose_device("auto")`` takes CUDA when present and the CPU otherwise; everything in the project
runs on a CPU-only laptop. ``seed_everything(seed)`` seeds Python, NumPy and torch: on the CPU,
with data loaded in the main process (``num_workers=0``), the same seed gives the same losses and
the same metrics, run after run.
"""

from __future__ import annotations

import random

import numpy as np
import torch

DEVICES = ("auto", "cpu", "cuda")


def choose_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> cuda if available else cpu; ``"cuda"`` without a GPU is a clear error."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ValueError(f"--device {name!r}: expected one of {', '.join(DEVICES)} (or cuda:N)")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name}: no CUDA GPU is available here; use --device cpu or auto")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed every generator a run draws from (Python, NumPy, torch on CPU and all GPUs)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def synchronize(device: torch.device | str) -> None:
    """Wait for queued GPU work, so that a clock read after it measures the work (no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
