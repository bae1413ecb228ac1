"""Pure functions of the step: which steps get a checkpoint, and the learning rate."""

from __future__ import annotations

import math

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
