"""Sum micro-batch gradients in one fixed pairwise tree, all in one memory layout.

((g0 + g1) + (g2 + g3)) is the same sum whether one process holds all four
micro-batches or two processes hold two each, so the result is bitwise the same
for any split of the global batch into processes × accumulation steps (when both
are powers of two). The sums are elementwise, but the gradient norm (clipping) is summed
in memory order: autograd returns some gradients transposed (W_Q/W_K/W_V), and a
data-parallel gather makes them contiguous, so every path first puts gradients in one
canonical layout (`canonical_layout`).

`tree_sum` adds a list of items level by level; `PairwiseSum` adds the same tree
as the items arrive, like a binary counter, so n micro-batches need at most
log2(n) + 1 gradient sets alive instead of n.
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


class PairwiseSum:
    """`tree_sum` of the items added so far, bit for bit, holding one partial sum per binary digit of the count.

    Two complete subtrees of equal size merge as soon as the right one is complete (item 1
    into item 0, then 3 into 2 and 2-3 into 0-1, …); `total` folds what is left from the
    right, which is where `tree_sum` carries an unpaired subtree. Sums are taken in place
    (`a.add_(b)` rounds exactly as `a + b`), into tensors this object owns.
    """

    def __init__(self) -> None:
        self._partial: list[tuple[int, list[torch.Tensor]]] = []  # (items summed, their sum), sizes falling

    def add(self, item: list[torch.Tensor]) -> None:
        """Add one item (e.g. a micro-batch's gradients and loss); it is summed into, not copied."""
        size, item = 1, _owned(item)
        while self._partial and self._partial[-1][0] == size:
            _, left = self._partial.pop()
            item, size = _add_into(left, item), size * 2
        self._partial.append((size, item))

    def total(self) -> list[torch.Tensor]:
        """The sum of every item added: `tree_sum` of them, bit for bit."""
        if not self._partial:
            raise ValueError("PairwiseSum.total needs at least one item")
        _, right = self._partial.pop()
        while self._partial:
            _, left = self._partial.pop()
            right = _add_into(left, right)
        return right


def _add_into(left: list[torch.Tensor], right: list[torch.Tensor]) -> list[torch.Tensor]:
    for a, b in zip(left, right, strict=True):
        a.add_(b)
    return left


def _owned(item: list[torch.Tensor]) -> list[torch.Tensor]:
    """`item` with every tensor that shares memory with an earlier one of it copied, so that summing
    into one never changes another (autograd may hand two parameters the same gradient tensor)."""
    seen: set[int] = set()
    owned = []
    for t in item:
        ptr = t.untyped_storage().data_ptr()
        owned.append(t.clone() if ptr in seen else t)
        seen.add(ptr)
    return owned


def canonical_layout(grads: Sequence[torch.Tensor], layout: str) -> list[torch.Tensor]:
    """`grads` in the layout the run's `numerics.grad_layout` names: "contiguous" (row-major, whatever
    autograd returned: the same on every path), or "autograd" (as returned; the LEGACY path)."""
    if layout == "autograd":
        return list(grads)
    return [g.contiguous() for g in grads]
