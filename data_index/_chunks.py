"""zarr v3 arrays chunk by chunk: read straight from their chunk files, appended whole chunks at a time.

zarr's own read path costs ~2 ms a call (its async machinery), and a reverse lookup is two
small reads, so the arrays this package writes (chunked along axis 0 only, `bytes` then
optionally `zstd` codecs) are read here directly: one file read and one decode per chunk,
the last decoded chunks kept. A `fetch` callback, when given, is asked for each file before
it is read: a published index or store is then fetched chunk by chunk, only where it is read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numcodecs import Zstd

from ._atomic_dir import read_metadata
from ._errors import DamagedStoreError, StoreNotFoundError

Fetch = Callable[[list[str]], None]  # make these files (relative to the array's folder) present locally


class ChunkedArray:
    """A read-only zarr v3 array chunked along axis 0, read a chunk at a time (missing chunks are the fill value)."""

    def __init__(self, folder: Path, *, fetch: Fetch | None = None, cache_chunks: int = 8) -> None:
        self.folder = folder
        self._fetch = fetch
        if fetch is not None:
            fetch(["zarr.json"])
        meta = read_metadata(folder / "zarr.json", "zarr array")
        try:
            self.shape = tuple(int(n) for n in meta["shape"])
            chunk_shape = [int(n) for n in meta["chunk_grid"]["configuration"]["chunk_shape"]]
            codecs = [c["name"] for c in meta["codecs"]]
            endian = next(c for c in meta["codecs"] if c["name"] == "bytes").get("configuration", {}).get("endian")
            dtype = np.dtype(meta["data_type"])
            encoding = meta["chunk_key_encoding"]
            key_encoding, separator = encoding["name"], encoding.get("configuration", {}).get("separator", "/")
            fill = meta["fill_value"]
        except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as e:
            raise DamagedStoreError(f"{folder}/zarr.json is not the metadata of a zarr array ({type(e).__name__}: "
                                    f"{e}); rebuild the store or index (or republish the zoo's data)") from None
        if (list(chunk_shape[1:]) != list(self.shape[1:]) or chunk_shape[:1] < [1]
                or codecs not in (["bytes"], ["bytes", "zstd"]) or key_encoding != "default"):
            raise StoreNotFoundError(f"{folder} is not an array of a store this package wrote (chunks {chunk_shape}, "
                                     f"codecs {codecs}); rebuild the store or index with this version of zoo")
        self.dtype = dtype.newbyteorder("<" if endian != "big" else ">")
        self.chunk_rows = chunk_shape[0]
        self._fill, self._separator = fill, separator
        self._zstd = Zstd() if "zstd" in codecs else None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_chunks = cache_chunks

    def __len__(self) -> int:
        return self.shape[0]

    def chunk_key(self, index: int) -> str:
        """The file of chunk `index`, relative to the array's folder."""
        return self._separator.join(["c", str(index), *("0" * (len(self.shape) - 1))])

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) (clipped to the array), in native byte order."""
        start, stop = max(0, start), min(stop, self.shape[0])
        if stop <= start:
            return np.empty((0, *self.shape[1:]), dtype=self.dtype.newbyteorder("="))
        first, last = start // self.chunk_rows, (stop - 1) // self.chunk_rows
        self._ensure(range(first, last + 1))
        if first == last:
            return self._chunk(first)[start - first * self.chunk_rows: stop - first * self.chunk_rows]
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype.newbyteorder("="))
        for c in range(first, last + 1):  # each chunk copied into place: a long read holds its rows once
            lo, hi = max(start, c * self.chunk_rows), min(stop, (c + 1) * self.chunk_rows)
            out[lo - start: hi - start] = self._chunk(c)[lo - c * self.chunk_rows: hi - c * self.chunk_rows]
        return out

    def take(self, indices: np.ndarray) -> np.ndarray:
        """Rows `indices` (any order, repeats allowed)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype.newbyteorder("="))
        chunks = indices // self.chunk_rows
        self._ensure(np.unique(chunks).tolist())
        for c in np.unique(chunks).tolist():
            sel = chunks == c
            out[sel] = self._chunk(c)[indices[sel] - c * self.chunk_rows]
        return out

    def _ensure(self, chunks) -> None:
        """Ask `fetch` for the chunk files not decoded yet, all at once (so they can be fetched in parallel)."""
        if self._fetch is not None:
            missing = [self.chunk_key(c) for c in chunks if c not in self._cache]
            if missing:
                self._fetch(missing)

    def _chunk(self, index: int) -> np.ndarray:
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        rows = min(self.chunk_rows, self.shape[0] - index * self.chunk_rows)
        path = self.folder / self.chunk_key(index)
        if path.is_file():
            raw = path.read_bytes()
            data = self._zstd.decode(raw) if self._zstd is not None else raw
            full = np.frombuffer(data, dtype=self.dtype).reshape(self.chunk_rows, *self.shape[1:])
            chunk = full[:rows].astype(self.dtype.newbyteorder("="), copy=False)
        else:  # zarr writes no chunk that holds only the fill value
            chunk = np.full((rows, *self.shape[1:]), self._fill, dtype=self.dtype.newbyteorder("="))
        self._cache[index] = chunk
        if len(self._cache) > self._cache_chunks:
            self._cache.popitem(last=False)
        return chunk


class ChunkedGroup:
    """The arrays of a zarr group folder by name, each opened when first read (through `fetch`, if given)."""

    def __init__(self, folder: Path, fetch: Fetch | None = None) -> None:
        self.folder = folder
        self._fetch = fetch
        self._arrays: dict[str, ChunkedArray] = {}

    def __getitem__(self, name: str) -> ChunkedArray:
        if name not in self._arrays:
            fetch = self._fetch
            inside = (lambda names: fetch([f"{name}/{n}" for n in names])) if fetch is not None else None
            self._arrays[name] = ChunkedArray(self.folder / name, fetch=inside, cache_chunks=64)
        return self._arrays[name]


def holds(ascending: np.ndarray, value: int) -> bool:
    """Whether the ascending array `ascending` holds `value`."""
    i = int(np.searchsorted(ascending, value))
    return i < len(ascending) and int(ascending[i]) == value


def searchsorted(array: ChunkedArray, value: int, side: str = "left") -> int:
    """np.searchsorted over a sorted 1-D ChunkedArray, reading O(log chunks) chunks."""
    first_below = (lambda v: v <= value) if side == "right" else (lambda v: v < value)
    lo, hi = 0, -(-len(array) // array.chunk_rows)  # the last chunk whose first element is below value: in [lo, hi)
    if hi == 0 or not first_below(array.rows(0, 1)[0]):
        return 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if first_below(array.rows(mid * array.chunk_rows, mid * array.chunk_rows + 1)[0]):
            lo = mid
        else:
            hi = mid
    start = lo * array.chunk_rows
    return start + int(np.searchsorted(array.rows(start, start + array.chunk_rows), value, side=side))


class Appender:
    """Appends to a zarr array along axis 0 in whole chunks, so every chunk file is written once, hashing
    the bytes in order; `close` writes what is left. Memory stays at one block however long the array."""

    _BLOCK_BYTES = 1 << 24

    def __init__(self, array: Any, digest: Any | None = None) -> None:
        self.array = array
        self.digest = digest
        self.rows = 0
        row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
        chunk_rows = array.chunks[0]
        self._block_rows = max(1, self._BLOCK_BYTES // (row_bytes * chunk_rows)) * chunk_rows
        self._pending: list[np.ndarray] = []
        self._pending_rows = 0

    def add(self, rows: np.ndarray) -> None:
        """Queue `rows` ([n, *row_shape]); whole blocks are written as they fill."""
        if len(rows):
            self._pending.append(rows)
            self._pending_rows += len(rows)
        if self._pending_rows >= self._block_rows:
            block = np.concatenate(self._pending)
            cut = len(block) // self._block_rows * self._block_rows
            self._write(block[:cut])
            self._pending, self._pending_rows = [block[cut:]], len(block) - cut

    def close(self) -> int:
        """Write the rest; the number of rows in the array."""
        if self._pending_rows:
            self._write(np.concatenate(self._pending))
        self._pending, self._pending_rows = [], 0
        return self.rows

    def _write(self, block: np.ndarray) -> None:
        self.array.append(block, axis=0)
        if self.digest is not None:
            self.digest.update(np.ascontiguousarray(block).tobytes())
        self.rows += len(block)
