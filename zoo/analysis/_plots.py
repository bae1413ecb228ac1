"""Matplotlib helpers shared by the analyses: lines broken where checkpoints are missing, atomic PNGs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on clusters or in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from checkpoints_manifest import atomic_write  # noqa: E402


def segments(steps: Sequence[int], missing: Sequence[int]) -> list[slice]:
    """Index ranges of `steps` with no missing step between neighbours: a line is drawn only inside one."""
    cuts = [i for i in range(1, len(steps)) if any(steps[i - 1] < m < steps[i] for m in missing)]
    bounds = [0, *cuts, len(steps)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def plot_series(ax: Axes, steps: Sequence[int], values: Sequence[float], missing: Sequence[int], **style) -> None:
    """One series vs step, broken at gaps in the checkpoints (a gap is never bridged by a line)."""
    label = style.pop("label", None)
    for k, part in enumerate(segments(steps, missing)):
        ax.plot(steps[part], values[part], label=label if k == 0 else None, **style)


def step_axis(ax: Axes, *, log: bool = True) -> None:
    """Step axis from 0: symlog, so the dense early checkpoints and the late ones are both readable;
    or linear, where the phenomenon is one late transition that symlog would squeeze."""
    if log:
        ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)  # steps are never negative: no empty half-decade left of 0
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)


def subplots(rows: int, cols: int, width: float = 4.2, height: float = 3.2) -> tuple[Figure, list[list[Axes]]]:
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    return fig, axes.tolist()


def save_png(fig: Figure, path: Path) -> None:
    """Write the figure to `path` atomically, then free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
