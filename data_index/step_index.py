"""The materialized step index (zarr v3): which samples each step trained on, and its reverse map.

    index.json    schedule (n_steps, batch_size, data_seed), the store fingerprint; written last
    zarr.json     the zarr group holding
    batches/      [n_steps, B] sample ids; row s-1 is step s (equal to order.step_sample_ids)
    seen_ptr/     int64 [n_docs+1]   CSR: document d was seen at seen_pos[seen_ptr[d]:seen_ptr[d+1]]
    seen_pos/     [nnz] flat positions (step-1)*B + row, ascending within each document

The order is a pure function, so the index is redundant by design: it makes
"what did step s see" a read and "when was document d seen" one lookup.
"""

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm.auto import tqdm

from checkpoints_manifest import atomic_write_json

from ._atomic_dir import TargetExistsError, build_dir, read_meta
from ._errors import (
    BadScheduleError,
    DocumentOutOfRangeError,
    StepOutOfRangeError,
    StoreExistsError,
)
from .order import positions_to_ids
from .store import _IN_MEMORY_MAX_BYTES, TokenStore

INDEX_JSON = "index.json"
_FORMAT = "zoo-step-index"
_FORMAT_VERSION = 1
_INDEX_ENTRIES = {INDEX_JSON, "zarr.json", "batches", "seen_ptr", "seen_pos"}
_CHUNK_BYTES = 1 << 16  # small chunks: a read from disk of one step or one document touches ~one
_PTR_CHUNK = 1 << 20  # seen_ptr is always read whole
_POSITIONS_PER_PASS = 1 << 20  # order evaluated this many positions at a time while building


class StepIndex:
    """A read-only view of a complete step index; open with `StepIndex.open`."""

    path: Path
    n_steps: int
    batch_size: int
    data_seed: int
    store_fingerprint: str

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.n_steps = meta["n_steps"]
        self.batch_size = meta["batch_size"]
        self.data_seed = meta["data_seed"]
        self.store_fingerprint = meta["store_fingerprint"]
        self.n_docs = meta["n_docs"]
        group = zarr.open_group(str(path), mode="r", zarr_format=3)
        self._zarr_batches, self._zarr_seen_pos = group["batches"], group["seen_pos"]
        self._seen_ptr = np.asarray(group["seen_ptr"][:], dtype=np.int64)
        self._batches = _in_memory(self._zarr_batches)
        self._seen_pos = _in_memory(self._zarr_seen_pos)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "StepIndex":
        """Open a complete step index (IncompleteStoreError for one whose build did not finish)."""
        path = Path(path)
        return cls(path, _read_meta(path))

    def batch_ids(self, step: int) -> np.ndarray:
        """Sample ids of step `step` (1..n_steps), int64 [batch_size], read from the materialized batches."""
        self._check_step(step)
        row = self._batches[step - 1] if self._batches is not None else self._zarr_batches[step - 1]
        return np.asarray(row, dtype=np.int64)

    def where_seen(self, doc_id: int) -> list[tuple[int, int]]:
        """Every (step, row) whose sample holds part of document `doc_id`, ascending: one CSR lookup."""
        if not 0 <= doc_id < self.n_docs:
            raise DocumentOutOfRangeError(
                f"document {doc_id} is outside the index's store: valid ids are 0..{self.n_docs - 1}"
            )
        lo, hi = int(self._seen_ptr[doc_id]), int(self._seen_ptr[doc_id + 1])
        pos = self._seen_pos[lo:hi] if self._seen_pos is not None else self._zarr_seen_pos[lo:hi]
        steps, rows = np.divmod(np.asarray(pos, dtype=np.int64), self.batch_size)
        return list(zip((steps + 1).tolist(), rows.tolist()))

    def _check_step(self, step: int) -> None:
        if not 1 <= step <= self.n_steps:
            raise StepOutOfRangeError(
                f"step {step} is outside the schedule of step index {self.path}: "
                f"valid steps are 1..{self.n_steps} (the last valid step is {self.n_steps})"
            )


def _in_memory(array) -> np.ndarray | None:
    nbytes = int(np.prod(array.shape)) * array.dtype.itemsize
    return np.asarray(array[...]) if nbytes <= _IN_MEMORY_MAX_BYTES else None


def _read_meta(path: Path) -> dict[str, Any]:
    return read_meta(path, INDEX_JSON, fmt=_FORMAT, version=_FORMAT_VERSION, what="step index",
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
    n_steps, batch_size = schedule["n_steps"], schedule["batch_size"]
    n_positions = n_steps * batch_size
    id_dtype = np.dtype("<u4") if store.n_samples <= 1 << 32 else np.dtype("<i8")
    batches = np.empty(n_positions, dtype=id_dtype)
    with tqdm(total=n_positions, unit="sample", desc="step index", disable=not progress) as bar:
        for start in range(0, n_positions, _POSITIONS_PER_PASS):
            stop = min(start + _POSITIONS_PER_PASS, n_positions)
            batches[start:stop] = positions_to_ids(
                np.arange(start, stop, dtype=np.int64), n_samples=store.n_samples, data_seed=schedule["data_seed"]
            )
            bar.update(stop - start)
    first_doc, last_doc = store._doc_range_of_samples()
    seen_ptr, seen_pos = reverse_map(batches, first_doc, last_doc, store.n_docs)

    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
    rows_per_chunk = max(1, _CHUNK_BYTES // (batch_size * id_dtype.itemsize))
    group.create_array(
        "batches", data=batches.reshape(n_steps, batch_size), chunks=(min(rows_per_chunk, n_steps), batch_size)
    )
    group.create_array("seen_ptr", data=seen_ptr, chunks=(min(len(seen_ptr), _PTR_CHUNK),))
    group.create_array(
        "seen_pos", data=seen_pos, chunks=(max(1, min(len(seen_pos), _CHUNK_BYTES // seen_pos.itemsize)),)
    )
    meta = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        **schedule,
        "n_docs": store.n_docs,
        "n_samples": store.n_samples,
    }
    atomic_write_json(tmp / INDEX_JSON, meta)  # last: its presence marks the index complete


def reverse_map(
    batches_flat: np.ndarray, first_doc: np.ndarray, last_doc: np.ndarray, n_docs: int
) -> tuple[np.ndarray, np.ndarray]:
    """CSR of document -> flat positions: (ptr int64 [n_docs+1], positions ascending within each document).

    Sample s holds documents first_doc[s]..last_doc[s]; position p trained on
    sample batches_flat[p]. One vectorized pass and a stable sort.
    """
    first = first_doc[batches_flat]
    counts = last_doc[batches_flat] - first + 1
    n = int(counts.sum())
    positions = np.repeat(np.arange(len(batches_flat), dtype=np.int64), counts)
    docs = np.repeat(first - np.cumsum(counts) + counts, counts) + np.arange(n, dtype=np.int64)
    order = np.argsort(docs, kind="stable")  # stable: positions stay ascending within a document
    ptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(docs, minlength=n_docs), out=ptr[1:])
    pos_dtype = np.dtype("<u4") if len(batches_flat) <= 1 << 32 else np.dtype("<i8")
    return ptr, positions[order].astype(pos_dtype)
