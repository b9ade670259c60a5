"""``losses.png``: what a training run draws of itself, each loss term against the step and, when
validation ran during training (``--eval-every``), validation AP against seconds of training.

The loop (``engine``) draws it beside each checkpoint, so that a run can be watched while it
trains; the notebooks draw the same curves into their own axes (``plot_losses``).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from stages import files

def plot_losses(ax, history: list[dict], keys: list[str] | None = None, smooth: int = 20):
    """Training curves from ``losses.json`` records: one line per loss, a running mean over ``smooth`` steps."""
    keys = keys or sorted(k for k in history[0] if k.startswith("loss") and k != "loss") or ["loss"]
    steps = np.array([r["step"] for r in history])
    for key in keys:
        values = np.array([r[key] for r in history], dtype=float)
        if smooth > 1 and len(values) > smooth:
            values = np.convolve(values, np.ones(smooth) / smooth, mode="valid")
            ax.plot(steps[smooth - 1:], values, label=key)
        else:
            ax.plot(steps, values, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return ax


def validation_curve(history: list[dict], key: str = "val_box_AP",
                     final: tuple | None = None) -> tuple[list[float], list[float]]:
    """(training seconds, AP) of the step records that hold ``key`` (``--eval-every``), then the
    closing evaluation ``final`` = (seconds, box AP, mask AP or None) when given."""
    points = [(r["time_s"], r[key]) for r in history if key in r]
    if final is not None:
        value = final[1] if key == "val_box_AP" else final[2]
        if value is not None:
            points.append((final[0], value))
    return [p[0] for p in points], [p[1] for p in points]


def plot_validation_ap(ax, history: list[dict], final: tuple | None = None):
    """Validation box (and mask) AP against seconds of training, from ``losses.json`` records."""
    for key, style in (("val_box_AP", "o-"), ("val_mask_AP", "s--")):
        seconds, values = validation_curve(history, key, final)
        if values:
            ax.plot(seconds, values, style, label=key.removeprefix("val_").replace("_", " "))
    ax.set_xlabel("seconds of training")
    ax.set_ylabel("validation AP")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("validation AP while training", fontsize=10)
    return ax


def save_loss_figure(history: list[dict], path, title: str = "", final: tuple | None = None):
    """``losses.png``: each loss term against the step (a running mean) and, when validation ran
    (``eval_every_s``), validation AP against training seconds; ``final``: (seconds, box AP,
    mask AP or None) of the run's closing evaluation, the last point of that curve."""
    validated = [r for r in history if "val_box_AP" in r] or final is not None
    fig = Figure(figsize=(11 if validated else 6, 3.6))
    axes = fig.subplots(1, 2 if validated else 1, squeeze=False)[0]
    plot_losses(axes[0], history, smooth=max(1, min(20, len(history) // 10)))
    axes[0].set_title("training losses (running mean)", fontsize=10)
    if validated:
        plot_validation_ap(axes[1], history, final=final)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return files.save_figure(fig, path)
