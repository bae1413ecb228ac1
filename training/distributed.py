"""Data parallel that stays bitwise: partial gradient sums gathered and added in a fixed tree.

The global batch of an update is cut into fixed micro-batches; rank r of W holds
the r-th block of k consecutive ones. Each rank tree-sums its k gradients, all
ranks all-gather the W partial sums and tree-sum them in rank order. When k is a
power of two, the first log2(k) levels of the single-process tree over W·k
micro-batches are exactly the per-rank trees, so the result is bitwise the same
for any processes × accumulation split (1×4 = 2×2 = 4×1). A plain all_reduce
leaves the order of additions to the backend; see benchmarks/distributed.py for
what the fixed order costs.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

from training.errors import TrainingError
from training.reduce import tree_sum
from training.spec import micro_batches_problem


class DataParallelError(TrainingError):
    """A batch cannot be split over the processes bitwise-reproducibly; the message names the fix."""


class RankFailedError(DataParallelError):
    """Another rank failed, so this one stopped at the same step; the message carries that rank's error."""


@dataclass(frozen=True)
class DataParallel:
    """This process's place among `world_size` data-parallel ranks (the default: a single process)."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"  # where collectives' tensors live: the backend's device (gloo: cpu, nccl: cuda)

    @property
    def is_writer(self) -> bool:
        """Only rank 0 writes checkpoints; the others hold identical state."""
        return self.rank == 0

    def shard(self, tokens: torch.Tensor, micro_batch_size: int) -> torch.Tensor:
        """This rank's block of consecutive micro-batches of the global batch `tokens`."""
        n_micro = -(-tokens.shape[0] // micro_batch_size)
        if problem := micro_batches_problem(n_micro, self.world_size):
            raise DataParallelError(f"{problem}; choose a world size that divides {n_micro} into 1, 2, 4, … "
                                    f"micro-batches per process")
        rows = n_micro // self.world_size * micro_batch_size
        return tokens[self.rank * rows:(self.rank + 1) * rows]

    def sum_over_ranks(self, local: list[torch.Tensor]) -> list[torch.Tensor]:
        """The single-process tree sum over every rank's items, on every rank, from this rank's
        own tree sum `local` (each rank's block is a complete subtree of the single-process tree).

        The gather also carries each rank's status: if a rank failed (see
        `stop_every_rank_on_failure`), every rank raises here instead of going on.
        """
        if self.world_size == 1:
            return local
        gathered = self._gather(torch.cat([t.reshape(-1) for t in local]), None)
        return tree_sum([_unflatten(g, local) for g in gathered])

    @contextmanager
    def stop_every_rank_on_failure(self, params: Sequence[torch.Tensor]) -> Iterator[None]:
        """Run the block; if it raises on this rank, every rank stops at its next collective with the error.

        The others wait in a step's gradient gather (or in `check_in`): this rank joins it with a
        blank of the same size (every gradient of `params` and the loss) marked as failed, so that
        no rank waits for a step that never comes, and all raise: the failed rank its own error,
        the others RankFailedError carrying it.
        """
        try:
            yield
        except RankFailedError:
            raise  # every rank knows already
        except BaseException as error:
            if self.world_size > 1:
                self._gather(self._blank(params), error)
            raise

    def check_in(self, params: Sequence[torch.Tensor]) -> None:
        """A collective every rank reaches once its last step is done: a failure after it on any rank
        (the last checkpoint's write) stops every rank, not just the one it happened on."""
        if self.world_size > 1:
            self._gather(self._blank(params), None)

    def _blank(self, params: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.zeros(sum(p.numel() for p in params) + 1, device=params[0].device)

    def _gather(self, flat: torch.Tensor, error: BaseException | None) -> list[torch.Tensor]:
        """Every rank's `flat`, after a status element each; raise RankFailedError if another rank failed."""
        mine = torch.cat([torch.full((1,), float(error is not None), dtype=flat.dtype, device=flat.device), flat])
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        failed = torch.stack([g[0] for g in gathered]).nonzero().flatten().tolist()  # one host sync per step
        if failed:
            reasons = self._gather_reasons(error, flat.device)
            if error is None:
                listing = "; ".join(f"rank {r} failed with {reasons[r]}" for r in failed)
                raise RankFailedError(f"rank {self.rank} stopped at this step: {listing}")
        return [g[1:] for g in gathered]

    def _gather_reasons(self, error: BaseException | None, device: torch.device) -> list[str]:
        """Each rank's error message (empty where none), exchanged as fixed-size utf-8 buffers."""
        text = (f"{type(error).__name__}: {error}" if error is not None else "").encode()[:_REASON_BYTES]
        mine = torch.zeros(_REASON_BYTES, dtype=torch.uint8, device=device)
        mine[:len(text)] = torch.tensor(list(text), dtype=torch.uint8)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        return [bytes(g.cpu().tolist()).rstrip(b"\0").decode(errors="replace") for g in gathered]

    def on_writer_failure(self, open_: Callable[[], _T]) -> _T:
        """Run rank 0's `open_()`; if it raises, tell the other ranks (waiting in
        `broadcast_step`) to stop rather than wait for a step that never comes."""
        try:
            return open_()
        except BaseException:
            if self.world_size > 1:
                dist.broadcast(torch.tensor([_WRITER_FAILED], dtype=torch.int64, device=self.device), src=0)
            raise

    def broadcast_step(self, step: int | None) -> int | None:
        """Rank 0's latest checkpoint step (None: no checkpoint yet), on every rank."""
        if self.world_size == 1:
            return step
        value = torch.tensor([_NONE if step is None else step], dtype=torch.int64, device=self.device)
        dist.broadcast(value, src=0)
        if value.item() == _WRITER_FAILED:
            raise DataParallelError(f"rank {self.rank}: rank 0 could not open the run directory; "
                                    f"its error (in rank 0's log) says what to fix")
        return None if value.item() == _NONE else int(value.item())


SINGLE = DataParallel()
_T = TypeVar("_T")
_NONE, _WRITER_FAILED = -1, -2
_REASON_BYTES = 1024


def _unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    out, at = [], 0
    for t in like:
        out.append(flat[at:at + t.numel()].view_as(t))
        at += t.numel()
    return out


def init_data_parallel(device: str) -> DataParallel:
    """Join the process group described by the environment (MASTER_ADDR, RANK, WORLD_SIZE …).

    gloo on CPU, nccl on GPU, whose collectives take CUDA tensors only. A world of one needs no
    process group.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world_size > 1 and not dist.is_initialized():
        if device == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device == "cuda" else "gloo", rank=rank, world_size=world_size)
    return DataParallel(rank=rank, world_size=world_size, device=device)


def close_data_parallel(parallel: DataParallel) -> None:
    """Leave the process group (a no-op for a single process)."""
    if parallel.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
