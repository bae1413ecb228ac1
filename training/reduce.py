"""Sum micro-batch gradients in one fixed pairwise tree, all in one memory layout.

((g0 + g1) + (g2 + g3)) is the same sum whether one process holds all four
micro-batches or two processes hold two each, so the result is bitwise the same
for any split of the global batch into processes × accumulation steps (when both
are powers of two). The sums are elementwise, but the gradient norm (clipping) is summed
in memory order: autograd returns some gradients transposed (W_Q/W_K/W_V), and a
data-parallel gather makes them contiguous, so every path first puts gradients in one
canonical layout (`canonical_layout`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def tree_sum(items: Sequence[list[torch.Tensor]]) -> list[torch.Tensor]:
    """Pairwise-sum lists of tensors: level by level, neighbours (0+1, 2+3, …)."""
    level = list(items)
    if not level:
        raise ValueError("tree_sum needs at least one item")
    while len(level) > 1:
        pairs = [
            [a + b for a, b in zip(level[i], level[i + 1])] if i + 1 < len(level) else level[i]
            for i in range(0, len(level), 2)
        ]
        level = pairs
    return level[0]


def canonical_layout(grads: Sequence[torch.Tensor], layout: str) -> list[torch.Tensor]:
    """`grads` in the layout the run's `numerics.grad_layout` names: "contiguous" (row-major, whatever
    autograd returned: the same on every path), or "autograd" (as returned; the LEGACY path)."""
    if layout == "autograd":
        return list(grads)
    return [g.contiguous() for g in grads]
