"""Held-out loss at every checkpoint: the model on documents it never trains on.

The held-out documents are packed by the token store apart from the training samples
(`DataSpec.held_out_docs`). Evaluation only reads the model (no gradient, no optimizer
step, no random number), so training's bits are the same with evaluation on or off. The
loss is stored with its checkpoint as `eval.json` (which the manifest lists and publish
uploads); replay compares a checkpoint's training files, of which eval.json is a function.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from data_index import TokenStore
from training.model import Transformer, lm_loss


def held_out_rows(store: TokenStore, device: str) -> torch.Tensor | None:
    """The store's held-out samples [m, n_ctx+1] on `device`; None when it holds no document out."""
    rows = store.held_out_samples()
    return torch.from_numpy(rows).to(device) if len(rows) else None


@torch.no_grad()
def held_out_loss(model: Transformer, rows: torch.Tensor, *, micro_batch_size: int, precision: str) -> float:
    """Mean next-token loss over every held-out token, in micro-batches of the run's size (a fixed order)."""
    autocast = (torch.autocast(rows.device.type, dtype=torch.bfloat16) if precision == "bfloat16"
                else nullcontext())
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    for micro in rows.split(micro_batch_size):
        with autocast:
            logits = model(micro[:, :-1])
        total += lm_loss(logits, micro[:, 1:]).double() * len(micro)
    return (total / len(rows)).item()


def evaluation(model: Transformer, rows: torch.Tensor | None, step: int, *, micro_batch_size: int,
               precision: str) -> dict[str, Any] | None:
    """The record eval.json holds for checkpoint `step`: held-out loss and how many tokens it averages."""
    if rows is None:
        return None
    loss = held_out_loss(model, rows, micro_batch_size=micro_batch_size, precision=precision)
    return {"step": step, "held_out_loss": loss, "held_out_tokens": rows.shape[0] * (rows.shape[1] - 1)}
