"""Sum micro-batch gradients in one fixed pairwise tree.

((g0 + g1) + (g2 + g3)) is the same sum whether one process holds all four
micro-batches or two processes hold two each, so the result is bitwise the same
for any split of the global batch into processes × accumulation steps (when both
are powers of two).
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
