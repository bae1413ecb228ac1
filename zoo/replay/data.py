"""The published data a replay reads, fetched lazily: only the index rows and token chunks it needs.

A zoo's dataset repo holds the token store (`data/`) and one step index per data seed
(`index/data{d}/`), both zarr v3 directories whose every file the repo's manifest lists.
Replay fetches the metadata, then only the chunk files holding the rows of the steps it
replays, each checked against the manifest before zarr reads it. A chunk that was never
fetched must never be read (zarr would silently return its fill value), so every read
goes through `_rows`, which fetches first.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from checkpoints_manifest import UnsafeJSONError, read_json
from data_index import DocSpan, load_tokenizer, step_sample_ids
from zoo.hub.backends import Backend
from zoo.hub.errors import IntegrityError, UnsafeArtifactError
from zoo.hub.load import Snapshot, fetch_all, verified_path
from zoo.replay.errors import ReplayError

_WHAT = {"data/tokens/": "token store", "data/doc_offsets/": "token store's document offsets",
         "data/": "token store", "index/": "step index (batch ids)"}


def describe(path: str) -> str:
    """What a published data file is, for an error a user can act on."""
    return next(what for prefix, what in _WHAT.items() if path.startswith(prefix))


class PublishedData:
    """The step index of one data seed and the token store of a published zoo, read chunk by chunk."""

    def __init__(self, backend: Backend, snap: Snapshot, *, data_seed: int, batch_size: int,
                 fingerprint: str) -> None:
        self._backend, self._snap = backend, snap
        self._index = f"index/data{data_seed}"
        repo = snap.repo.id
        if snap.manifest.dataset_fingerprint != fingerprint:
            raise ReplayError(f"dataset repo {repo} holds dataset {snap.manifest.dataset_fingerprint}, but the run "
                              f"was trained on {fingerprint}; the run and its data were published from different "
                              f"zoos: republish the zoo directory the run was trained in")
        self.meta = self._json("data/store.json")
        index_meta = self._json(f"{self._index}/index.json")
        if self.meta["fingerprint"] != fingerprint or index_meta["store_fingerprint"] != fingerprint:
            raise ReplayError(f"dataset repo {repo}: token store or step index {self._index} was built on other "
                              f"data than the run (fingerprint {fingerprint}); republish the zoo")
        if (index_meta["batch_size"], index_meta["data_seed"]) != (batch_size, data_seed):
            raise ReplayError(f"dataset repo {repo}: step index {self._index} is for batch size "
                              f"{index_meta['batch_size']} and data seed {index_meta['data_seed']}, the run used "
                              f"{batch_size} and {data_seed}; republish the zoo")
        self.n_steps = int(index_meta["n_steps"])
        self.batch_size, self.data_seed = batch_size, data_seed
        for path in ("data/zarr.json", "data/tokens/zarr.json", f"{self._index}/zarr.json",
                     f"{self._index}/batches/zarr.json"):
            self._fetch(path)
        self._tokens = zarr.open_array(str(snap.folder / "data/tokens"), mode="r", zarr_format=3)
        self._batches = zarr.open_array(str(snap.folder / f"{self._index}/batches"), mode="r", zarr_format=3)
        self._doc_offsets: np.ndarray | None = None
        self._tokenizer: Any = None
        self._fetched: set[str] = set()
        self._lock = threading.Lock()

    @property
    def fetched(self) -> list[str]:
        """The chunk files fetched so far (what "lazily" saved is the rest of the repo)."""
        return sorted(self._fetched)

    def batch_ids(self, steps: list[int]) -> dict[int, np.ndarray]:
        """Sample ids of each of `steps`, read from the published index and checked against the order."""
        bad = [s for s in steps if not 1 <= s <= self.n_steps]
        if bad:
            raise ReplayError(f"steps {bad} are outside the published step index {self._index} (1..{self.n_steps})")
        rows = self._rows(self._batches, f"{self._index}/batches", np.asarray(steps, dtype=np.int64) - 1)
        out = {}
        for step, ids in zip(steps, rows.astype(np.int64)):
            expected = step_sample_ids(step, batch_size=self.batch_size, n_samples=int(self.meta["n_samples"]),
                                       data_seed=self.data_seed)
            if not np.array_equal(ids, expected):
                raise ReplayError(f"the published step index {self._index} (batch ids) is damaged: its batch of "
                                  f"step {step} is not the one the data order gives; republish the zoo's data")
            out[step] = ids
        return out

    def samples(self, ids: np.ndarray) -> np.ndarray:
        """Tokens of samples `ids`: int64 [len(ids), n_ctx+1], the store's chunks fetched as needed."""
        unique, inverse = np.unique(ids, return_inverse=True)
        return self._rows(self._tokens, "data/tokens", unique).astype(np.int64)[inverse]

    def documents(self, sample_id: int) -> list[DocSpan]:
        """The documents in sample `sample_id` with their token ranges (as `TokenStore.sample_documents`)."""
        offsets = self._offsets()
        length = int(self.meta["n_ctx"]) + 1
        lo, hi = sample_id * length, (sample_id + 1) * length
        first = int(np.searchsorted(offsets, lo, side="right")) - 1
        last = int(np.searchsorted(offsets, hi, side="left")) - 1
        return [DocSpan(d, max(int(offsets[d]), lo) - lo, min(int(offsets[d + 1]), hi) - lo)
                for d in range(first, last + 1)]

    def decode(self, tokens: np.ndarray) -> str:
        """Text of a token row; EOS shows as <|endoftext|>."""
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self._fetch("data/tokenizer.json"))
        return self._tokenizer.decode([int(t) for t in tokens], skip_special_tokens=False)

    def _offsets(self) -> np.ndarray:
        if self._doc_offsets is None:
            prefix = "data/doc_offsets/"
            self._fetch_all(sorted(p for p in self._snap.manifest.files if p.startswith(prefix)))
            group = zarr.open_array(str(self._snap.folder / prefix), mode="r", zarr_format=3)
            self._doc_offsets = np.asarray(group[:], dtype=np.int64)
        return self._doc_offsets

    def _rows(self, array: Any, name: str, rows: np.ndarray) -> np.ndarray:
        """Rows `rows` of a 2-d zarr array chunked by whole rows, after fetching their chunk files."""
        chunk_rows, chunk_cols = array.metadata.chunk_grid.chunk_shape
        if chunk_cols < array.shape[1]:
            raise ReplayError(f"{self._snap.repo.id}: {name} is not chunked by whole rows; "
                              f"republish the zoo's data with this version of zoo")
        keys = [f"{name}/{array.metadata.encode_chunk_key((int(c), 0))}" for c in np.unique(rows // chunk_rows)]
        self._fetch_all([k for k in keys if k not in self._fetched])
        return np.asarray(array.get_orthogonal_selection((rows, slice(None))))

    def _json(self, path: str) -> Any:
        try:
            return read_json(self._fetch(path), source=f"{self._snap.repo.id}/{path}")
        except UnsafeJSONError as e:
            raise UnsafeArtifactError(f"the published {describe(path)} is malformed: {e}; republish the zoo's "
                                      f"data") from None

    def _fetch(self, path: str) -> Path:
        try:
            return verified_path(self._backend, self._snap, path)
        except IntegrityError as e:
            raise _named(e) from None

    def _fetch_all(self, paths: list[str]) -> None:
        with self._lock:
            try:
                fetch_all(self._backend, self._snap, paths)
            except IntegrityError as e:
                raise _named(e) from None
            self._fetched.update(paths)


def _named(e: IntegrityError) -> IntegrityError:
    """The same error, saying first which published part is damaged."""
    return IntegrityError(f"the published {describe(e.path)} is damaged: {e}", repo_id=e.repo_id, path=e.path)
