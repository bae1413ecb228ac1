"""Tokenize a corpus on every core into shards that survive a crash: a rerun keeps the finished ones.

The corpus is cut into shards of consecutive documents (a shard closes at SHARD_DOCS
documents or SHARD_CHARS characters, so its bounds depend on the corpus alone). Each shard
is tokenized whole by one worker process and written atomically as
`shards/{k:06d}.safetensors`: its token stream (every document followed by EOS) and each
document's length. A rerun reads the corpus again to find the same bounds, skips the
shards on disk and tokenizes the rest. Documents are encoded one by one, so the bytes do
not depend on the number of workers.

The shards live in a work directory beside the store (`.NAME.build/`), locked while a build
runs (a second build of the same store waits for the first, then opens its store), and
tagged with what it is building from: a work directory of other input is started afresh.
"""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import shutil
import time
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer

from checkpoints_manifest import atomic_write, atomic_write_json, discard_temp_files

from ._errors import BadCorpusError, DataIndexError
from ._tokenize import encode, text_encoder

SHARD_DOCS = 1 << 14
SHARD_CHARS = 1 << 24  # 16M characters: a worker's memory stays bounded on corpora of long documents
IDENTITY_JSON = "identity.json"
_LOCK = ".lock"


@dataclass(frozen=True)
class Shard:
    """One tokenized shard: its file, documents and tokens."""

    path: Path
    n_docs: int
    n_tokens: int

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """(token stream, document lengths with their EOS)."""
        arrays = load_file(str(self.path))
        return arrays["tokens"], arrays["lengths"]


@contextmanager
def work_dir(out_dir: Path, identity: dict[str, Any] | None) -> Iterator[Path]:
    """The locked work directory of the build of `out_dir`, holding the shards of a build of `identity`.

    Waits while another process builds the same store. A work directory left by a build of
    other input (or any, when `identity` is None: input that cannot be recognized) is
    emptied first. It is removed when the body ends, or fails with a DataIndexError (bad
    input: nothing of a build that cannot succeed is kept); a crash, an interrupt or an
    OSError (a full disk) keeps it, and the rerun goes on from its finished shards.
    """
    work = out_dir.parent / f".{out_dir.name}.build"
    fd = _locked(work)
    try:
        recorded = work / IDENTITY_JSON
        if identity is None or not recorded.is_file() or _read_json(recorded) != _plain(identity):
            for child in work.iterdir():
                if child.name != _LOCK:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            atomic_write_json(recorded, {} if identity is None else identity)
        try:
            yield work
        except DataIndexError:
            shutil.rmtree(work, ignore_errors=True)
            raise
        shutil.rmtree(work, ignore_errors=True)
    finally:
        os.close(fd)


def recorded_identity(out_dir: Path) -> dict[str, Any] | None:
    """What the unfinished build of `out_dir` was building from, if one left its work directory."""
    recorded = out_dir.parent / f".{out_dir.name}.build" / IDENTITY_JSON
    return _read_json(recorded) if recorded.is_file() else None


def shard_files(out_dir: Path) -> list[Path]:
    """The finished shards an unfinished build of `out_dir` keeps."""
    return sorted((out_dir.parent / f".{out_dir.name}.build" / "shards").glob("*.safetensors"))


def _locked(work: Path) -> int:
    """An fd holding the lock of `work` (created if needed), waiting for another holder to finish."""
    while True:
        work.mkdir(parents=True, exist_ok=True)
        fd = os.open(work / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(work / _LOCK)):
                return fd
        except FileNotFoundError:
            pass  # the holder finished and removed the directory: lock a fresh one
        os.close(fd)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _plain(obj: Any) -> Any:
    """`obj` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj))


def tokenize_shards(batches: Iterable[list[str]], tokenizer: Tokenizer, folder: Path, *, eos_id: int,
                    dtype: np.dtype, workers: int, bar: Any) -> list[Shard]:
    """Tokenize the documents of `batches` into shards under `folder`; finished shards on disk are kept.

    `bar` (a tqdm bar counting documents) is advanced as shards finish, with tokens/s.
    """
    folder.mkdir(parents=True, exist_ok=True)
    discard_temp_files(folder)  # a shard write killed mid-way; never a finished shard
    shards: dict[int, Shard] = {}
    began, tokens = time.perf_counter(), 0

    def finished(k: int, shard: Shard) -> None:
        nonlocal tokens
        shards[k] = shard
        tokens += shard.n_tokens
        bar.update(shard.n_docs)
        bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - began, 1e-9):,.0f}", refresh=False)

    with _Pool(tokenizer, eos_id, dtype, workers) as pool:
        for k, texts in enumerate(_cut(batches)):
            path = folder / f"{k:06d}.safetensors"
            kept = _kept(path, len(texts))
            if kept is not None:
                finished(k, kept)
            else:
                pool.submit(k, texts, path, finished)
    return [shards[k] for k in sorted(shards)]


def _kept(path: Path, n_docs: int) -> Shard | None:
    """The shard at `path` if a build before this one finished it (with these documents)."""
    if not path.is_file():
        return None
    with safe_open(str(path), framework="np") as f:
        (n_tokens,) = f.get_slice("tokens").get_shape()
        (kept_docs,) = f.get_slice("lengths").get_shape()
    return Shard(path, n_docs, n_tokens) if kept_docs == n_docs else None


def _cut(batches: Iterable[list[str]]) -> Iterator[list[str]]:
    """The documents of `batches`, regrouped into shards; non-strings are refused naming the document."""
    shard: list[str] = []
    chars = 0
    seen = 0
    for texts in batches:
        for t in texts:
            if not isinstance(t, str):
                raise BadCorpusError(f"document {seen} has text {t!r}, not a string; drop or fill missing texts "
                                     f"before building")
            seen += 1
            shard.append(t)
            chars += len(t)
            if len(shard) >= SHARD_DOCS or chars >= SHARD_CHARS:
                yield shard
                shard, chars = [], 0
    if shard:
        yield shard


def _write_shard(encoder: Tokenizer, texts: list[str], path: Path, eos_id: int, dtype: np.dtype) -> Shard:
    flat, lengths = encode(encoder, texts, eos_id, dtype)
    atomic_write(path, lambda tmp: save_file({"tokens": flat, "lengths": lengths}, str(tmp)))
    return Shard(path, len(lengths), len(flat))


class _Pool:
    """Shards tokenized in this process (workers=1) or in `workers` spawned processes, a few in flight."""

    def __init__(self, tokenizer: Tokenizer, eos_id: int, dtype: np.dtype, workers: int) -> None:
        self._args = (eos_id, np.dtype(dtype))
        self._pending: deque = deque()
        self._pool = None
        self._encoder = None
        if workers <= 1:
            self._encoder = text_encoder(tokenizer)
        else:
            # spawn, not fork: the parent may hold zarr's event-loop thread and tokenizers' thread pool.
            self._pool = multiprocessing.get_context("spawn").Pool(
                workers, initializer=_init_worker, initargs=(tokenizer.to_str(),))
        self._in_flight = workers + 1  # texts held at once: memory stays flat on big corpora

    def submit(self, k: int, texts: list[str], path: Path, done) -> None:
        if self._pool is None:
            done(k, _write_shard(self._encoder, texts, path, *self._args))
            return
        self._pending.append((k, done, self._pool.apply_async(_in_worker, (texts, str(path), *self._args))))
        while len(self._pending) >= self._in_flight:
            self._finish_one()

    def _finish_one(self) -> None:
        k, done, result = self._pending.popleft()
        done(k, result.get())

    def __enter__(self) -> "_Pool":
        return self

    def __exit__(self, kind, *rest) -> None:
        try:
            while kind is None and self._pending:
                self._finish_one()
        finally:
            if self._pool is not None:
                self._pool.terminate() if kind is not None else self._pool.close()
                self._pool.join()


_worker_encoder: Tokenizer | None = None


def _init_worker(tokenizer_json: str) -> None:
    global _worker_encoder
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core per worker: the processes are the parallelism
    _worker_encoder = text_encoder(Tokenizer.from_str(tokenizer_json))


def _in_worker(texts: list[str], path: str, eos_id: int, dtype: np.dtype) -> Shard:
    assert _worker_encoder is not None
    return _write_shard(_worker_encoder, texts, Path(path), eos_id, dtype)
