"""What a replay callback sees at each update, and the interventions it may make."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from data_index import DocSpan
from training.model import Transformer
from zoo.replay.data import PublishedData
from zoo.replay.errors import ReplayError


class ReplayStep:
    """Update `step` of a replay: its batch (sample ids, tokens), the model, and after the update its loss.

    In `Callback.before_update` the batch may be changed (`drop`, `drop_documents`,
    `replace`); in either hook the weights may be changed inside `edit_weights()`.
    Each intervention is recorded, and any one makes the replay counterfactual.
    Reading activations (`model.run_with_cache`, `model.hooks`) is not an intervention.
    """

    def __init__(self, step: int, sample_ids: np.ndarray, tokens: torch.Tensor, model: Transformer,
                 data: PublishedData, interventions: list[str]) -> None:
        self.step = step
        self.sample_ids = sample_ids  # int64 [rows]; a replaced row keeps its id (its tokens are new)
        self.tokens = tokens  # [rows, n_ctx+1] on the training device
        self.model = model
        self.loss: float | None = None  # the update's loss (set before after_update)
        self.grad_norm: float | None = None
        self._data = data
        self._interventions = interventions
        self._batch_open = True

    def documents(self) -> list[list[DocSpan]]:
        """The documents in each row of the batch, with their token ranges."""
        return [self._data.documents(int(i)) for i in self.sample_ids]

    def texts(self) -> list[str]:
        """Each row of the batch as decoded text."""
        return [self._data.decode(row) for row in self.tokens.cpu().numpy()]

    def drop(self, rows: Iterable[int]) -> None:
        """Train this update without batch rows `rows` (the mean loss is then over the others)."""
        rows = sorted(set(int(r) for r in rows))
        if not rows:
            return
        self._check_batch_open("drop")
        if not all(0 <= r < len(self.sample_ids) for r in rows):
            raise ReplayError(f"step {self.step}: cannot drop rows {rows}; the batch has rows 0..{len(self.sample_ids) - 1}")
        if len(rows) == len(self.sample_ids):
            raise ReplayError(f"step {self.step}: dropping every row leaves nothing to train on; "
                              f"replace rows instead, or stop the replay before this step")
        keep = [r for r in range(len(self.sample_ids)) if r not in rows]
        self._interventions.append(f"step {self.step}: dropped samples {self.sample_ids[rows].tolist()}")
        self.sample_ids = self.sample_ids[keep]
        self.tokens = self.tokens[keep]

    def drop_documents(self, docs: Iterable[int]) -> list[int]:
        """Drop every row holding any token of documents `docs`; the sample ids dropped."""
        docs = set(int(d) for d in docs)
        rows = [r for r, spans in enumerate(self.documents()) if docs & {s.doc for s in spans}]
        dropped = self.sample_ids[rows].tolist()
        self.drop(rows)
        return dropped

    def replace(self, row: int, tokens: torch.Tensor | np.ndarray | list[int]) -> None:
        """Train on `tokens` (n_ctx+1 token ids) in place of batch row `row`."""
        self._check_batch_open("replace")
        new = torch.as_tensor(np.asarray(tokens), dtype=torch.int64)
        n_rows, length = self.tokens.shape
        if not 0 <= row < n_rows:
            raise ReplayError(f"step {self.step}: cannot replace row {row}; the batch has rows 0..{n_rows - 1}")
        vocab = self.model.cfg.d_vocab
        if new.shape != (length,) or (new.numel() and (new.min() < 0 or new.max() >= vocab)):
            raise ReplayError(f"step {self.step}: a replacement row must be {length} token ids in [0, {vocab}); "
                              f"got shape {tuple(new.shape)}")
        self.tokens = self.tokens.clone()
        self.tokens[row] = new.to(self.tokens.device)
        self._interventions.append(f"step {self.step}: replaced sample {int(self.sample_ids[row])} (row {row})")

    @contextmanager
    def edit_weights(self) -> Iterator[Transformer]:
        """Edit the model's parameters in place inside this block (gradients off); recorded as an intervention."""
        self._interventions.append(f"step {self.step}: edited weights "
                                   f"{'before' if self._batch_open else 'after'} the update")
        with torch.no_grad():
            yield self.model

    def _check_batch_open(self, what: str) -> None:
        if not self._batch_open:
            raise ReplayError(f"step {self.step}: {what} is possible in before_update only; "
                              f"the update has already trained on this batch")

    def _close_batch(self, loss: float, grad_norm: float) -> None:
        self._batch_open = False
        self.loss, self.grad_norm = loss, grad_norm


class Callback:
    """Hooks into every replayed update; override either method (the defaults do nothing).

    `before_update(step)` runs with the batch about to be trained on and the state after
    update `step - 1`; `after_update(step)` runs with the state after update `step` and
    `step.loss` set.
    """

    def before_update(self, step: ReplayStep) -> None:
        """Called before update `step.step`; may read activations or intervene."""

    def after_update(self, step: ReplayStep) -> None:
        """Called after update `step.step`; `step.loss` holds its loss."""
