"""One canonical gradient layout on every path. autograd returns the W_Q/W_K/W_V gradients transposed, a
data-parallel gather makes them contiguous, and clipping sums the norm in memory order; so every gradient is
made contiguous before any reduction (numerics.grad_layout "contiguous", the CURRENT path). The splits
1×4 = 2×2 = 4×1 are then bitwise equal over 300 steps with clipping active: test_launch.py's
`test_data_parallel_*` (local executor, 2 and 4 processes; Slurm, 2×2) train `dp_spec` for that long."""

from __future__ import annotations

import torch

from training import build_model, load_spec
from training.model import lm_loss
from training.numerics import CURRENT, LEGACY
from training.reduce import canonical_layout


def test_canonical_layout_makes_autograd_gradients_contiguous_and_legacy_keeps_them() -> None:
    spec = load_spec("tiny")
    model = build_model(spec, spec.runs()[0], 300, "cpu")
    tokens = torch.randint(0, 300, (2, 17), generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(lm_loss(model(tokens[:, :-1]), tokens[:, 1:]), list(model.parameters()))
    assert not all(g.is_contiguous() for g in grads)  # W_Q, W_K, W_V come back transposed
    assert all(g.is_contiguous() for g in canonical_layout(grads, CURRENT.grad_layout))
    assert all(a is b for a, b in zip(canonical_layout(grads, LEGACY.grad_layout), grads))
