"""The materialized step index (zarr v3): which samples each step trained on, and its reverse map.

    index.json    schedule (n_steps, batch_size, data_seed), the store fingerprint; written last
    zarr.json     the zarr group holding
    batches/      [n_steps, B] sample ids; row s-1 is step s (equal to order.step_sample_ids)
    seen_ptr/     int64 [n_docs+1]   CSR: document d was seen at seen_pos[seen_ptr[d]:seen_ptr[d+1]]
    seen_pos/     [nnz] flat positions (step-1)*B + row, ascending within each document
    held_out_docs/  int64 [k], when the store holds documents out: they are never seen

The order is a pure function, so the index is redundant by design: it makes
"what did step s see" a read and "when was document d seen" one lookup.

Both parts are built streaming, in bounded memory: the batches a block of steps at a
time, the reverse map a block of documents at a time, each document's positions found by
inverting the order (`order.sample_positions`). Lookups read only the small chunks that
hold their rows (`_chunks.py`), so a published index is fetched chunk by chunk.
"""

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from checkpoints_manifest import atomic_write_json

from ._atomic_dir import TargetExistsError, build_dir, read_meta
from ._chunks import Appender, ChunkedArray, ChunkedGroup, Fetch, holds
from ._errors import (
    BadScheduleError,
    DocumentOutOfRangeError,
    StepOutOfRangeError,
    StoreExistsError,
)
from .order import positions_to_ids, sample_positions
from .store import TokenStore

INDEX_JSON = "index.json"
_FORMAT = "zoo-step-index"
_FORMAT_VERSION = 1
_INDEX_ENTRIES = {INDEX_JSON, "zarr.json", "batches", "seen_ptr", "seen_pos", "held_out_docs"}
_CHUNK_BYTES = 1 << 16  # small chunks: a read from disk of one step or one document touches ~one
_POSITIONS_PER_PASS = 1 << 20  # order evaluated (and held) this many positions at a time while building
_DOCS_PER_PASS = 1 << 16  # the reverse map is built this many documents at a time, or fewer when
# their (document, position) pairs would pass _POSITIONS_PER_PASS


class StepIndex:
    """A read-only view of a complete step index; open with `StepIndex.open`."""

    path: Path
    n_steps: int
    batch_size: int
    data_seed: int
    store_fingerprint: str
    held_out_docs: np.ndarray  # the store's documents held out of training (never seen), ascending

    def __init__(self, path: Path, meta: dict[str, Any], *, fetch: Fetch | None = None) -> None:
        self.path = path
        self.n_steps = meta["n_steps"]
        self.batch_size = meta["batch_size"]
        self.data_seed = meta["data_seed"]
        self.store_fingerprint = meta["store_fingerprint"]
        self.n_docs = meta["n_docs"]
        self._arrays = ChunkedGroup(path, fetch)  # opened when first read: a published index fetches only those
        held = meta.get("n_held_out_docs", 0)
        self.held_out_docs = (self._arrays["held_out_docs"].rows(0, held).astype(np.int64) if held
                              else np.empty(0, dtype=np.int64))

    @classmethod
    def open(cls, path: str | os.PathLike, *, fetch: Fetch | None = None) -> "StepIndex":
        """Open a complete step index (IncompleteStoreError for one whose build did not finish).

        `fetch`, when given, is asked for each file (relative to `path`) before it is read:
        a published index is then fetched a chunk at a time, as lookups need them.
        """
        path = Path(path)
        if fetch is not None:
            fetch([INDEX_JSON])
        return cls(path, _read_meta(path), fetch=fetch)

    def batch_ids(self, step: int) -> np.ndarray:
        """Sample ids of step `step` (1..n_steps), int64 [batch_size], read from the materialized batches."""
        self._check_step(step)
        return self._arrays["batches"].rows(step - 1, step)[0].astype(np.int64)

    def where_seen(self, doc_id: int) -> list[tuple[int, int]]:
        """Every (step, row) whose sample holds part of document `doc_id`, ascending: one CSR lookup."""
        if not 0 <= doc_id < self.n_docs:
            raise DocumentOutOfRangeError(
                f"document {doc_id} is outside the index's store: valid ids are 0..{self.n_docs - 1}"
            )
        lo, hi = (int(x) for x in self._arrays["seen_ptr"].rows(doc_id, doc_id + 2))
        steps, rows = np.divmod(self._arrays["seen_pos"].rows(lo, hi).astype(np.int64), self.batch_size)
        return list(zip((steps + 1).tolist(), rows.tolist()))

    def is_held_out(self, doc_id: int) -> bool:
        """Whether document `doc_id` was held out of training (so never seen)."""
        return holds(self.held_out_docs, doc_id)

    def _check_step(self, step: int) -> None:
        if not 1 <= step <= self.n_steps:
            raise StepOutOfRangeError(
                f"step {step} is outside the schedule of step index {self.path}: "
                f"valid steps are 1..{self.n_steps} (the last valid step is {self.n_steps})"
            )


def _read_meta(path: Path) -> dict[str, Any]:
    return read_meta(path, INDEX_JSON, fmt=_FORMAT, versions=(_FORMAT_VERSION,), what="step index",
                     how_to_build=f"`zoo train SPEC` (it indexes the data seed of every run it trains; in "
                                  f"Python: build_step_index(store, {str(path)!r}, ...))")


def build_step_index(
    store: TokenStore,
    out_dir: str | os.PathLike,
    *,
    data_seed: int,
    batch_size: int,
    n_steps: int,
    progress: bool = True,
) -> StepIndex:
    """Materialize the order of steps 1..n_steps and the document -> (step, row) map at `out_dir`.

    Complete or nothing, like the store; idempotent: an index of the same
    store and schedule already at out_dir is opened, a different one refused.
    """
    if batch_size < 1 or n_steps < 1:
        raise BadScheduleError(f"batch_size and n_steps must be >= 1, got batch_size={batch_size}, n_steps={n_steps}")
    out_dir = Path(out_dir)
    schedule = {
        "n_steps": n_steps,
        "batch_size": batch_size,
        "data_seed": data_seed,
        "store_fingerprint": store.fingerprint,
    }
    if (out_dir / INDEX_JSON).is_file():
        meta = _read_meta(out_dir)
        found = {k: meta.get(k) for k in schedule}
        differing = [k for k in schedule if found[k] != schedule[k]]
        if differing:
            raise StoreExistsError(
                f"{out_dir} holds a step index of another schedule or store "
                f"({', '.join(f'{k}: {found[k]!r} there, {schedule[k]!r} asked' for k in differing)}); "
                f"use another directory, or delete that one"
            )
        return StepIndex(out_dir, meta)
    if out_dir.exists():
        entries = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else {"?"}
        if not entries <= _INDEX_ENTRIES:
            raise StoreExistsError(f"{out_dir} exists and is not a step index; choose a new or empty directory")
        shutil.rmtree(out_dir)  # the remains of an interrupted build
    try:
        build_dir(out_dir, lambda tmp: _write_index(tmp, store, schedule, progress))
    except TargetExistsError:  # a concurrent build finished first: check it like any existing index
        return build_step_index(
            store, out_dir, data_seed=data_seed, batch_size=batch_size, n_steps=n_steps, progress=progress
        )
    return StepIndex.open(out_dir)


def _write_index(tmp: Path, store: TokenStore, schedule: dict[str, Any], progress: bool) -> None:
    import zarr  # seconds to import: not on the path of readers

    n_steps, batch_size, data_seed = schedule["n_steps"], schedule["batch_size"], schedule["data_seed"]
    n_positions = n_steps * batch_size
    id_dtype = np.dtype("<u4") if store.n_samples <= 1 << 32 else np.dtype("<i8")
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    rows_per_chunk = max(1, _CHUNK_BYTES // (batch_size * id_dtype.itemsize))
    batches = Appender(group.create_array("batches", shape=(0, batch_size), dtype=id_dtype,
                                          chunks=(min(rows_per_chunk, n_steps), batch_size)))
    steps_per_pass = max(1, _POSITIONS_PER_PASS // batch_size)
    with tqdm(total=n_positions, unit="sample", desc="step index", disable=not progress) as bar:
        for first in range(0, n_steps, steps_per_pass):
            last = min(first + steps_per_pass, n_steps)
            positions = np.arange(first * batch_size, last * batch_size, dtype=np.int64)
            ids = positions_to_ids(positions, n_samples=store.n_samples, data_seed=data_seed)
            batches.add(ids.astype(id_dtype).reshape(-1, batch_size))
            bar.update(len(positions))
    batches.close()

    pos_dtype = np.dtype("<u4") if n_positions <= 1 << 32 else np.dtype("<i8")
    ptr = Appender(group.create_array("seen_ptr", shape=(0,), dtype="<i8", chunks=(_CHUNK_BYTES // 8,)))
    pos = Appender(group.create_array("seen_pos", shape=(0,), dtype=pos_dtype,
                                      chunks=(_CHUNK_BYTES // pos_dtype.itemsize,)))
    ptr.add(np.zeros(1, dtype="<i8"))
    seen = 0
    offsets = ChunkedArray(store.path / "doc_offsets")
    with tqdm(total=store.n_docs, unit="doc", desc="reverse index", disable=not progress) as bar:
        for first, last in _document_passes(offsets, store.n_ctx + 1, store.n_samples, n_positions):
            counts, positions = _seen_in(offsets.rows(first, last + 1).astype(np.int64), store.n_ctx + 1,
                                         store.n_samples, data_seed, n_positions)
            ptr.add(seen + np.cumsum(counts))
            seen += int(counts.sum())
            pos.add(positions.astype(pos_dtype))
            bar.update(last - first)
    ptr.close()
    pos.close()
    meta = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        **schedule,
        "n_docs": store.n_docs,
        "n_samples": store.n_samples,
    }
    if len(store.held_out_docs):  # recorded with the order they are never part of
        group.create_array("held_out_docs", data=store.held_out_docs.astype("<i8"), chunks=(_CHUNK_BYTES // 8,))
        meta["n_held_out_docs"] = len(store.held_out_docs)
    atomic_write_json(tmp / INDEX_JSON, meta)  # last: its presence marks the index complete


def _document_samples(offsets: np.ndarray, length: int, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """(first sample, samples) of each document whose stream span is offsets[i]..offsets[i+1]; a document
    held out (empty span) or in the dropped tail has none."""
    starts, ends = offsets[:-1], offsets[1:]
    first = starts // length
    stop = np.where(ends > starts, np.minimum(-(-ends // length), n_samples), first)
    return first, np.maximum(stop - first, 0)


def _document_passes(offsets: ChunkedArray, length: int, n_samples: int, n_positions: int):
    """(first, last) document ranges whose (document, position) pairs number about _POSITIONS_PER_PASS each."""
    n_docs = len(offsets) - 1
    epochs = -(-n_positions // n_samples)
    for block in range(0, n_docs, _DOCS_PER_PASS):
        end = min(block + _DOCS_PER_PASS, n_docs)
        _, counts = _document_samples(offsets.rows(block, end + 1).astype(np.int64), length, n_samples)
        pairs = np.cumsum(counts * epochs)
        start = block
        while start < end:
            done = int(pairs[start - block - 1]) if start > block else 0
            # every document up to the one that passes the budget (at least one document per pass)
            stop = block + int(np.searchsorted(pairs, done + _POSITIONS_PER_PASS, side="right"))
            stop = min(max(stop, start + 1), end)
            yield start, stop
            start = stop


def _seen_in(offsets: np.ndarray, length: int, n_samples: int, data_seed: int,
             n_positions: int) -> tuple[np.ndarray, np.ndarray]:
    """For the documents spanning `offsets`: how many positions saw each, and those positions (ascending
    within each document, documents in order)."""
    first, counts = _document_samples(offsets, length, n_samples)
    total = int(counts.sum())
    doc = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    sample = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(total, dtype=np.int64)
    which, positions = sample_positions(sample, n_samples=n_samples, data_seed=data_seed, n_positions=n_positions)
    doc = doc[which]
    order = np.lexsort((positions, doc))
    return np.bincount(doc, minlength=len(counts)), positions[order]
