"""Pure functions of the step: which steps get a checkpoint, and the learning rate."""

from __future__ import annotations

import math
from collections.abc import Callable

from training.spec import CheckpointSpec, OptimizerSpec


def checkpoint_steps(spec: CheckpointSpec, total_steps: int) -> list[int]:
    """Dense schedule: 0, 1, 2, 4, … up to `log_until`, then every `every` steps, and the last step.

    Early checkpoints are log-spaced because that is where circuits (induction heads, …)
    form; the final step is always included so every run ends on a checkpoint.
    """
    steps = {0, total_steps}
    power = 1
    while power <= min(spec.log_until, total_steps):
        steps.add(power)
        power *= 2
    steps.update(range(spec.every, total_steps + 1, spec.every))
    steps.update(s for s in spec.extra_steps if 0 <= s <= total_steps)
    return sorted(steps)


def learning_rate(spec: OptimizerSpec, step: int, total_steps: int) -> float:
    """The lr of update `step` (1-based): linear warmup, then cosine to `min_lr` or constant.

    A pure function of the step, so the scheduler position needs no state of its own.
    """
    if spec.warmup_steps and step <= spec.warmup_steps:
        return spec.lr * step / spec.warmup_steps
    if spec.schedule == "constant":
        return spec.lr
    decay_steps = max(1, total_steps - spec.warmup_steps)
    progress = min(1.0, (step - spec.warmup_steps) / decay_steps)
    return spec.min_lr + 0.5 * (spec.lr - spec.min_lr) * (1.0 + math.cos(math.pi * progress))


def describe_steps(steps: list[int]) -> str:
    """Checkpoint steps written compactly: `0, 1, 2, 4 … 64, 68 … 600 (every 4)`.

    A run of doublings (at least five) shows its first three and its last; a run of equal
    gaps (at least four steps) its ends and the gap; any other step stands alone, so a gap
    in a schedule is never hidden.
    """
    parts, i = [], 0
    while i < len(steps):
        doubling = _run_length(steps, i, lambda a, b: a > 0 and b == 2 * a)
        gap = steps[i + 1] - steps[i] if i + 1 < len(steps) else 0
        evenly = _run_length(steps, i, lambda a, b: b - a == gap)
        if doubling >= 5 and doubling >= evenly:
            parts.append(f"{steps[i]}, {steps[i + 1]}, {steps[i + 2]} … {steps[i + doubling - 1]}")
            i += doubling
        elif evenly >= 4:
            parts.append(f"{steps[i]} … {steps[i + evenly - 1]} (every {gap})")
            i += evenly
        else:
            parts.append(str(steps[i]))
            i += 1
    return ", ".join(parts)


def _run_length(steps: list[int], start: int, follows: Callable[[int, int], bool]) -> int:
    """How many steps from `start` on each follow the previous one by `follows(previous, step)`."""
    end = start + 1
    while end < len(steps) and follows(steps[end - 1], steps[end]):
        end += 1
    return end - start
