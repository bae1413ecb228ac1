"""The token store: documents tokenized, EOS-separated and packed into fixed-length samples (zarr v3).

Layout of a store directory (complete once `store.json` exists, and it only
ever appears complete: the build happens in a temp dir that is renamed into place):

    store.json      format, shape, vocab, fingerprint, and what it was built from
    tokenizer.json  the tokenizer that made the tokens
    zarr.json       the zarr group holding
    tokens/         uint16/uint32 [n_samples, n_ctx+1], chunked by whole rows
    doc_offsets/    int64 [n_docs+1]: document d is stream tokens [off[d], off[d+1]) (its EOS last)

and, in format 2, when documents are held out (never trained on, evaluated at every checkpoint):

    held_out_docs/         int64 [k]: their document ids, ascending (their span in doc_offsets is empty)
    held_out_tokens/       [m, n_ctx+1]: the held-out documents packed like the training ones
    held_out_doc_offsets/  int64 [k+1]: held-out document j is held-out stream tokens [off[j], off[j+1])

Sample i is stream tokens [i*(n_ctx+1), (i+1)*(n_ctx+1)); the tail that fills
no sample is dropped. Both maps (sample -> document spans, document -> samples)
follow from doc_offsets by binary search, so they cost no storage and cannot
disagree with the tokens.

A build tokenizes into shards on every core (`_shards.py`: resumable after a crash), then
packs the shards, in order, into the store: the bytes depend on the corpus and tokenizer
only, never on the number of workers or on where a build was interrupted.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tokenizers
from tqdm.auto import tqdm

from checkpoints_manifest import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file

from ._atomic_dir import TargetExistsError, build_dir, read_meta
from ._chunks import Appender, ChunkedGroup, Fetch, holds, searchsorted
from ._errors import (
    BadContextLengthError,
    BadCorpusError,
    DataIndexError,
    DocumentOutOfRangeError,
    EmptyCorpusError,
    FingerprintMismatchError,
    RevisionMovedError,
    SampleOutOfRangeError,
    StoreExistsError,
    TokenizerFileError,
)
from ._shards import SHARD_CHARS, SHARD_DOCS, Shard, recorded_identity, shard_files, tokenize_shards, work_dir
from ._spec import DataSpec
from .corpora import builtin_corpus, expand_files, file_corpus, hub_corpus, resolve_revision
from .tokenizer import EOS_TOKEN, load_tokenizer, train_bpe_tokenizer

if TYPE_CHECKING:
    import datasets

STORE_JSON = "store.json"
TOKENIZER_JSON = "tokenizer.json"
_FORMAT = "zoo-token-store"
_FORMAT_VERSION = 1  # written when no document is held out: the same files as before held-out splits existed
_HELD_OUT_FORMAT_VERSION = 2  # adds the held_out_* arrays, which a reader of version 1 would ignore
_HELD_OUT = ("held_out_docs", "held_out_tokens", "held_out_doc_offsets")
_STORE_ENTRIES = {STORE_JSON, TOKENIZER_JSON, "zarr.json", "tokens", "doc_offsets", *_HELD_OUT}
# tokens chunks: ~64 KiB of whole rows, so a sample read touches one small chunk (zarr reads
# cost ~1 ms + the chunk's size; 1 MiB chunks made a random read ~3x slower)
_CHUNK_BYTES = 1 << 16
_OFFSETS_CHUNK = 1 << 13  # 64 KiB of offsets: a document lookup reads one small chunk, even at 100M documents
_DOCS_PER_BATCH = 1000  # documents read from the corpus at a time
_IN_MEMORY_MAX_BYTES = 1 << 30  # stores up to this size are read into RAM on open (the trainer's hot path)


@dataclass(frozen=True)
class DocSpan:
    """Tokens [start, end) of a sample belong to document `doc` (end includes the document's EOS, if inside)."""

    doc: int
    start: int
    end: int


class TokenStore:
    """A read-only view of a complete token store; open with `TokenStore.open`."""

    path: Path
    n_ctx: int
    n_samples: int
    n_docs: int
    fingerprint: str
    tokenizer: tokenizers.Tokenizer
    eos_id: int
    vocab_size: int
    held_out_docs: np.ndarray  # ids of the documents never trained on (int64, ascending; empty if none)

    def __init__(self, path: Path, meta: dict[str, Any], *, fetch: Fetch | None = None) -> None:
        self.path = path
        self.n_ctx = meta["n_ctx"]
        self.n_samples = meta["n_samples"]
        self.n_docs = meta["n_docs"]
        self.fingerprint = meta["fingerprint"]
        self.eos_id = meta["eos_id"]
        self.vocab_size = meta["vocab_size"]
        self._arrays = ChunkedGroup(path, fetch)
        if fetch is not None:
            fetch([TOKENIZER_JSON])
        self.tokenizer = load_tokenizer(path / TOKENIZER_JSON)
        self._zarr_tokens = self._arrays["tokens"]
        self._doc_offsets = self._arrays["doc_offsets"]
        nbytes = self.n_samples * (self.n_ctx + 1) * self._zarr_tokens.dtype.itemsize
        self._in_memory = fetch is None and nbytes <= _IN_MEMORY_MAX_BYTES
        self._loaded: np.ndarray | None = None
        held = meta.get("n_held_out_docs", 0)
        self.held_out_docs = (self._arrays["held_out_docs"].rows(0, held).astype(np.int64) if held
                              else np.empty(0, dtype=np.int64))

    @classmethod
    def open(cls, path: str | os.PathLike, *, expected_fingerprint: str | None = None,
             fetch: Fetch | None = None) -> "TokenStore":
        """Open a complete store; with `expected_fingerprint`, refuse a store holding other data.

        `fetch`, when given, is asked for each file (relative to `path`) before it is read: a
        published store is then fetched a chunk at a time, as reads need them.
        """
        path = Path(path)
        if fetch is not None:
            fetch([STORE_JSON])
        meta = _read_meta(path)
        if expected_fingerprint is not None and meta["fingerprint"] != expected_fingerprint:
            raise FingerprintMismatchError(
                f"token store {path} has fingerprint {meta['fingerprint']}, expected {expected_fingerprint}: "
                f"it holds different tokens or a different tokenizer than expected; prepare the store from the "
                f"run's data spec in a fresh directory, or open the store the run was trained on"
            )
        return cls(path, meta, fetch=fetch)

    def samples(self, ids: np.ndarray) -> np.ndarray:
        """Tokens of samples `ids` (in that order, repeats allowed): int64 [len(ids), n_ctx+1].

        The trainer's hot path: a store up to 1 GiB is read into RAM at the first call, then this is one
        gather; a larger or a published one is read chunk by chunk.
        """
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_samples):
            raise SampleOutOfRangeError(
                f"sample ids must lie in [0, {self.n_samples}) for store {self.path}; got [{ids.min()}, {ids.max()}]"
            )
        if self._in_memory:
            return self._tokens()[ids].astype(np.int64)
        return self._zarr_tokens.take(ids.reshape(-1)).astype(np.int64).reshape(*ids.shape, self.n_ctx + 1)

    def _tokens(self) -> np.ndarray:
        """Every sample, read into RAM on first use (a store opened only to look documents up never is)."""
        if self._loaded is None:
            self._loaded = self._zarr_tokens.rows(0, self.n_samples)
        return self._loaded

    def held_out_samples(self) -> np.ndarray:
        """The held-out documents packed into samples: int64 [m, n_ctx+1] (m = 0 when none is held out)."""
        if not len(self.held_out_docs):
            return np.empty((0, self.n_ctx + 1), dtype=np.int64)
        held = self._arrays["held_out_tokens"]
        return held.rows(0, len(held)).astype(np.int64)

    def is_held_out(self, doc_id: int) -> bool:
        """Whether document `doc_id` was held out of training."""
        return holds(self.held_out_docs, doc_id)

    def sample_documents(self, sample_id: int) -> list[DocSpan]:
        """The documents whose tokens sample `sample_id` holds, with their token ranges in it."""
        self._check_sample(sample_id)
        length = self.n_ctx + 1
        lo, hi = sample_id * length, (sample_id + 1) * length
        first = searchsorted(self._doc_offsets, lo, side="right") - 1
        last = searchsorted(self._doc_offsets, hi, side="left") - 1
        offsets = self._doc_offsets.rows(first, last + 2).astype(np.int64)
        return [DocSpan(first + i, max(int(start), lo) - lo, min(int(end), hi) - lo)
                for i, (start, end) in enumerate(zip(offsets[:-1], offsets[1:])) if end > start]

    def document_samples(self, doc_id: int) -> np.ndarray:
        """Ids of the samples holding any token of document `doc_id` (int64, ascending; empty if it was dropped
        or held out)."""
        self._check_doc(doc_id)
        start, end = (int(x) for x in self._doc_offsets.rows(doc_id, doc_id + 2))
        length = self.n_ctx + 1
        first = start // length
        stop = min(-(-end // length), self.n_samples) if end > start else first
        return np.arange(first, max(first, stop), dtype=np.int64)

    def document_tokens(self, doc_id: int) -> np.ndarray:
        """The stored tokens of document `doc_id`, its EOS last (int64; cut short if it ran into the dropped
        tail). A held-out document's come from the held-out stream."""
        self._check_doc(doc_id)
        if self.is_held_out(doc_id):
            j = int(np.searchsorted(self.held_out_docs, doc_id))
            start, end = (int(x) for x in self._arrays["held_out_doc_offsets"].rows(j, j + 2))
            return _stream(self._arrays["held_out_tokens"], self.n_ctx + 1, start, end)
        start, end = (int(x) for x in self._doc_offsets.rows(doc_id, doc_id + 2))
        rows = _InMemory(self._tokens()) if self._in_memory else self._zarr_tokens
        return _stream(rows, self.n_ctx + 1, start, end)

    def document_text(self, doc_id: int) -> str:
        """The stored text of document `doc_id`: byte-level BPE gives the original back (cut if in the dropped tail)."""
        tokens = self.document_tokens(doc_id)
        start, end = (int(x) for x in self._doc_offsets.rows(doc_id, doc_id + 2))
        whole = self.is_held_out(doc_id) or len(tokens) == end - start
        return self.decode(tokens[:-1] if whole and len(tokens) else tokens)

    def decode(self, tokens) -> str:
        """Text of a token sequence; EOS shows as <|endoftext|>."""
        return self.tokenizer.decode([int(t) for t in np.asarray(tokens).reshape(-1)], skip_special_tokens=False)

    def _check_sample(self, sample_id: int) -> None:
        if not 0 <= sample_id < self.n_samples:
            raise SampleOutOfRangeError(
                f"sample {sample_id} is outside store {self.path}: valid ids are 0..{self.n_samples - 1}"
            )

    def _check_doc(self, doc_id: int) -> None:
        if not 0 <= doc_id < self.n_docs:
            raise DocumentOutOfRangeError(
                f"document {doc_id} is outside store {self.path}: valid ids are 0..{self.n_docs - 1}"
            )


class _InMemory:
    """Rows of an in-memory array, read like a ChunkedArray's."""

    def __init__(self, array: np.ndarray) -> None:
        self._array = array

    def __len__(self) -> int:
        return len(self._array)

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self._array[start:stop]


def _stream(rows: Any, length: int, start: int, end: int) -> np.ndarray:
    """Tokens [start, end) of the stream packed into `rows` of `length` (end clipped to the kept rows), int64."""
    end = min(end, len(rows) * length)
    if end <= start:
        return np.empty(0, dtype=np.int64)
    first, last = start // length, (end - 1) // length
    flat = np.asarray(rows.rows(first, last + 1)).reshape(-1).astype(np.int64)
    return flat[start - first * length: end - first * length]


def _read_meta(path: Path) -> dict[str, Any]:
    return read_meta(path, STORE_JSON, fmt=_FORMAT, versions=(_FORMAT_VERSION, _HELD_OUT_FORMAT_VERSION),
                     what="token store", how_to_build=f"`zoo train SPEC` (it prepares the zoo's data; in "
                                                      f"Python: prepare_store(spec, {str(path)!r}))")


def build_token_store(
    dataset: datasets.Dataset | datasets.IterableDataset,
    tokenizer: tokenizers.Tokenizer,
    out_dir: str | os.PathLike,
    *,
    n_ctx: int,
    workers: int = 1,
    progress: bool = True,
    held_out_docs: int = 0,
) -> TokenStore:
    """Tokenize `dataset`'s "text" column into a new store at `out_dir` (which must not exist or be empty).

    Complete or nothing: built in a temp dir and renamed into place. The same
    dataset and tokenizer give the same bytes for any `workers`. `held_out_docs`
    documents, evenly spaced, go to the held-out split instead of the samples.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise StoreExistsError(
            f"{out_dir} already exists and is not empty; build into a new directory "
            f"(prepare_store reuses a store of the same spec)"
        )
    eos_id = _check_input(dataset, tokenizer, n_ctx)
    with work_dir(out_dir, None) as work:  # a dataset object cannot be recognized again: no resuming
        _build(dataset, tokenizer, eos_id, out_dir, work, n_ctx=n_ctx, workers=workers, progress=progress,
               held_out=held_out_docs, source=None, what="the dataset")
    return TokenStore.open(out_dir)


def _check_input(dataset, tokenizer: tokenizers.Tokenizer, n_ctx: int) -> int:
    """Refuse what cannot build, before anything is written; the EOS id."""
    if n_ctx < 1:
        raise BadContextLengthError(f"n_ctx must be >= 1 (tokens per sample, before the target), got {n_ctx}")
    if dataset.column_names and "text" not in dataset.column_names:
        raise BadCorpusError(
            f"the dataset has no 'text' column (columns: {', '.join(dataset.column_names)}); "
            f"rename the column holding the documents to 'text'"
        )
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    if eos_id is None:
        raise TokenizerFileError(
            f"the tokenizer has no {EOS_TOKEN!r} token, which separates documents; add it as a special token"
        )
    return eos_id


def _build(dataset, tokenizer, eos_id: int, out_dir: Path, work: Path, *, n_ctx: int, workers: int,
           progress: bool, held_out: int, source: dict[str, Any] | None, what: str,
           n_docs_hint: int | None = None) -> None:
    """Tokenize into shards under `work` (kept ones reused), then pack them into `out_dir` (complete or nothing)."""
    dtype = np.dtype("<u2") if tokenizer.get_vocab_size() <= 1 << 16 else np.dtype("<u4")
    with tqdm(total=n_docs_hint, unit="doc", desc="tokenize", disable=not progress) as bar:
        shards = tokenize_shards(_text_batches(dataset, what), tokenizer, work / "shards", eos_id=eos_id,
                                 dtype=dtype, workers=workers, bar=bar)
    n_docs = sum(s.n_docs for s in shards)
    if n_docs == 0:
        raise EmptyCorpusError(f"{what} has no documents; give at least one non-empty document")
    if held_out >= n_docs:
        raise EmptyCorpusError(f"held_out_docs = {held_out} leaves none of the {n_docs} documents of {what} to "
                               f"train on; hold out fewer")
    build_dir(out_dir, lambda tmp: _pack(tmp, shards, tokenizer, eos_id, dtype, n_ctx, held_out, source))


def held_out_ids(n_docs: int, k: int) -> np.ndarray:
    """The k held-out documents of a corpus of n_docs: evenly spaced, the middle of each of k equal stretches."""
    return (2 * np.arange(k, dtype=np.int64) + 1) * n_docs // (2 * k)


def _pack(tmp: Path, shards: list[Shard], tokenizer, eos_id: int, dtype: np.dtype, n_ctx: int, held_out: int,
          source: dict[str, Any] | None) -> None:
    """Write the store into `tmp`: the shards' documents packed in order, the held-out ones apart."""
    import zarr  # seconds to import: not on the path of readers and tokenizer workers

    length = n_ctx + 1
    rows_per_chunk = max(1, _CHUNK_BYTES // (length * dtype.itemsize))
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)  # mode "w" empties tmp: write files after it
    tokenizer_bytes = tokenizer.to_str().encode("utf-8")
    atomic_write_bytes(tmp / TOKENIZER_JSON, tokenizer_bytes)

    def rows(name: str) -> _Packer:
        array = group.create_array(name, shape=(0, length), chunks=(rows_per_chunk, length), dtype=dtype)
        offsets = group.create_array(f"{name.removesuffix('tokens')}doc_offsets", shape=(0,),
                                     chunks=(_OFFSETS_CHUNK,), dtype="<i8")
        return _Packer(array, offsets, length)

    train = rows("tokens")
    n_docs = sum(s.n_docs for s in shards)
    held = held_out_ids(n_docs, held_out) if held_out else np.empty(0, dtype=np.int64)
    aside = rows("held_out_tokens") if held_out else None
    first = 0
    for shard in shards:
        flat, lengths = shard.load()
        ids = held[(held >= first) & (held < first + len(lengths))] - first
        if len(ids):
            kept = np.ones(len(lengths), dtype=bool)
            kept[ids] = False
            by_token = np.repeat(kept, lengths)
            aside.add(flat[~by_token], lengths[ids])
            train.add(flat[by_token], np.where(kept, lengths, 0))  # a held-out document is empty in training
        else:
            train.add(flat, lengths)
        first += len(lengths)
    n_samples, n_tokens = train.close()
    if n_samples == 0:
        raise EmptyCorpusError(
            f"the corpus has {n_tokens} tokens, fewer than one sample of n_ctx+1 = {length}; "
            f"use more documents or a smaller n_ctx"
        )
    parts = {**train.parts("tokens", "doc_offsets"), TOKENIZER_JSON: {"sha256": sha256_bytes(tokenizer_bytes)}}
    meta: dict[str, Any] = {"format": _FORMAT, "format_version": _FORMAT_VERSION}
    if held_out:
        n_held_samples, held_tokens = aside.close()
        if n_held_samples == 0:
            raise EmptyCorpusError(f"the {held_out} held-out documents hold {held_tokens} tokens, fewer than one "
                                   f"sample of n_ctx+1 = {length}; hold out more documents")
        group.create_array("held_out_docs", data=held.astype("<i8"), chunks=(_OFFSETS_CHUNK,))
        parts.update(aside.parts("held_out_tokens", "held_out_doc_offsets"))
        parts["held_out_docs"] = {"dtype": "<i8", "shape": [held_out],
                                  "sha256": sha256_bytes(held.astype("<i8").tobytes())}
        meta.update(format_version=_HELD_OUT_FORMAT_VERSION, n_held_out_docs=held_out,
                    n_held_out_samples=n_held_samples)
    if source is not None and "hub_commit" in source:  # the commit is part of what the data is
        spec = source["spec"]
        parts["hub_source"] = {"dataset": spec["hub_dataset"], "config": spec.get("hub_config"),
                               "split": spec["split"], "text_column": spec["text_column"],
                               "commit": source["hub_commit"]}
    meta.update({
        "n_ctx": n_ctx,
        "n_samples": n_samples,
        "n_docs": n_docs,
        "n_tokens": n_tokens,
        "n_dropped_tokens": n_tokens - n_samples * length,
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_id": eos_id,
        "parts": parts,
        "fingerprint": fingerprint_of(parts),
        "source": source,
    })
    atomic_write_json(tmp / STORE_JSON, meta)  # last: its presence marks the store complete


class _Packer:
    """A token stream packed into rows of `length`, with its document offsets, both hashed as written."""

    def __init__(self, array: Any, offsets: Any, length: int) -> None:
        self._rows = Appender(array, hashlib.sha256())
        self._offsets = Appender(offsets, hashlib.sha256())
        self._length = length
        self._tail = np.empty(0, dtype=array.dtype)
        self._end = 0  # tokens so far
        self._offsets.add(np.zeros(1, dtype="<i8"))

    def add(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Append documents: their tokens `flat` and each one's length (0 for one held apart)."""
        self._offsets.add((self._end + np.cumsum(lengths)).astype("<i8"))
        self._end += int(lengths.sum())
        stream = np.concatenate([self._tail, flat])
        whole = len(stream) // self._length * self._length
        self._rows.add(stream[:whole].reshape(-1, self._length))
        self._tail = stream[whole:]

    def close(self) -> tuple[int, int]:
        """(rows written, tokens in all); the tail that fills no row is dropped."""
        self._offsets.close()
        return self._rows.close(), self._end

    def parts(self, tokens: str, offsets: str) -> dict[str, Any]:
        """The fingerprint parts of the rows and the offsets."""
        return {
            tokens: {"dtype": self._rows.array.dtype.str, "shape": list(self._rows.array.shape),
                     "sha256": self._rows.digest.hexdigest()},
            offsets: {"dtype": "<i8", "shape": list(self._offsets.array.shape),
                      "sha256": self._offsets.digest.hexdigest()},
        }


def fingerprint_of(parts: dict[str, Any]) -> str:
    """The store fingerprint: sha256 of the canonical JSON of its parts' dtypes, shapes and sha256s.

    It covers the token bytes, the document offsets and tokenizer.json (and, when there are
    any, the held-out arrays and the Hub commit the corpus came from), never zarr metadata or
    compression, so equal data means an equal fingerprint.
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _text_batches(dataset, what: str) -> Iterator[list[str]]:
    """The documents of `dataset`'s "text" column, a batch at a time (arrow-backed: no per-row Python objects)."""
    try:
        for table in dataset.with_format("arrow").iter(batch_size=_DOCS_PER_BATCH):
            if "text" not in table.column_names:
                raise BadCorpusError(f"{what} has no 'text' column (columns: {', '.join(table.column_names)}); "
                                     f"name the column holding the documents (text_column)")
            yield table.column("text").to_pylist()
    except DataIndexError:
        raise
    except (ValueError, TypeError) as e:  # pyarrow's parse errors are ValueErrors. An OSError (a network
        # failure while streaming) is not bad input: it propagates, and the finished shards stay for the rerun.
        raise BadCorpusError(f"cannot read {what}: {type(e).__name__}: {str(e)[:500]}; fix or drop the file "
                             f"or rows named") from None


def prepare_store(spec: DataSpec, out_dir: str | os.PathLike, *, workers: int = 1, progress: bool = True) -> TokenStore:
    """The store of `spec` at `out_dir`: opened if already built from this spec, else built.

    Idempotent and safe to call from several processes at once (they wait for one build).
    Refuses a directory holding another spec's store or foreign files; an interrupted
    build goes on from the shards it finished. Input files are identified by sha256, so a
    changed file is a different spec; a Hub dataset's revision is resolved to the commit
    the store is built from, which the store records (and its fingerprint covers).
    """
    out_dir = Path(out_dir)
    source = _source_record(spec)
    if (out_dir / STORE_JSON).is_file():
        recorded = _read_meta(out_dir).get("source")
        differing = _differences(recorded, source)
        if differing:
            raise StoreExistsError(
                f"{out_dir} holds a token store built from a different data spec "
                f"(differs in: {', '.join(differing)}); "
                f"use another directory for this spec, or delete that one"
            )
        return TokenStore.open(out_dir)
    if out_dir.exists():
        entries = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else {"?"}
        if not entries <= _STORE_ENTRIES:
            raise StoreExistsError(
                f"{out_dir} exists and holds files that are not a token store "
                f"({', '.join(sorted(entries - _STORE_ENTRIES))}); choose a new or empty directory"
            )
        shutil.rmtree(out_dir)  # the remains of a store whose build or copy did not finish
    if spec.hub_dataset is not None:
        source["hub_commit"] = resolve_revision(spec.hub_dataset, spec.revision)
    # The shards depend on the commit, not on the name the revision was asked by: a build of "main"
    # killed at commit c is finished by a rerun with revision = c.
    identity = {"source": {**source, "spec": {k: v for k, v in source["spec"].items() if k != "revision"}},
                "shards": [SHARD_DOCS, SHARD_CHARS]}
    if spec.hub_dataset is not None:
        _check_unfinished_build(spec, out_dir, identity)
    built = False
    try:
        with work_dir(out_dir, identity) as work:
            if not (out_dir / STORE_JSON).is_file():  # else another process built it while we waited
                _build_from_spec(spec, out_dir, work, source, workers=workers, progress=progress)
                built = True
    except TargetExistsError:  # another process built it meanwhile
        pass
    # Built by another process: check its spec like any existing store.
    return TokenStore.open(out_dir) if built else prepare_store(spec, out_dir, workers=workers, progress=progress)


def _build_from_spec(spec: DataSpec, out_dir: Path, work: Path, source: dict[str, Any], *, workers: int,
                     progress: bool) -> None:
    dataset = _corpus(spec, source.get("hub_commit"))
    what = _describe(spec, source)
    n_docs = spec.n_docs if spec.corpus is not None else None
    if spec.tokenizer_file is not None:
        tokenizer = load_tokenizer(spec.tokenizer_file)
    elif (work / TOKENIZER_JSON).is_file():  # trained by the build this one resumes
        tokenizer = load_tokenizer(work / TOKENIZER_JSON)
    else:
        texts, counted = _bpe_texts(dataset, what, spec.bpe_sample_docs, progress)
        tokenizer = train_bpe_tokenizer(texts, spec.vocab_size)
        n_docs = counted()
        atomic_write_bytes(work / TOKENIZER_JSON, tokenizer.to_str().encode("utf-8"))
    eos_id = _check_input(dataset, tokenizer, spec.n_ctx)
    _build(dataset, tokenizer, eos_id, out_dir, work, n_ctx=spec.n_ctx, workers=workers, progress=progress,
           held_out=spec.held_out_docs, source=source, what=what, n_docs_hint=n_docs or None)


def _check_unfinished_build(spec: DataSpec, out_dir: Path, identity: dict[str, Any]) -> None:
    """Refuse to go on from shards of another commit of the same Hub revision: the corpus changed under it."""
    kept = recorded_identity(out_dir)
    before, now = (kept or {}).get("source") or {}, identity["source"]
    if (before.get("spec") == now["spec"] and before.get("hub_commit") not in (None, now["hub_commit"])
            and shard_files(out_dir)):
        raise RevisionMovedError(
            f"Hub dataset {spec.hub_dataset!r} revision {spec.revision or 'main'!r} now points at commit "
            f"{now['hub_commit']}, but the unfinished build of {out_dir} tokenized {len(shard_files(out_dir))} "
            f"shard(s) of commit {before['hub_commit']}: the corpus changed under the same revision name. Pin "
            f"revision = {before['hub_commit']!r} in [data] to finish that build, or delete "
            f"{out_dir.parent / ('.' + out_dir.name + '.build')} to build from the new commit (other data: "
            f"another fingerprint)"
        )


def _bpe_texts(dataset, what: str, sample: int | None, progress: bool):
    """The texts to train the BPE on (every document, or a seeded reservoir sample of `sample`), and a
    function giving the number of documents read once they are consumed."""
    count = [0]

    def every() -> Iterator[str]:
        with tqdm(unit="doc", desc="read for BPE", disable=not progress) as bar:
            for texts in _text_batches(dataset, what):
                count[0] += len(texts)
                bar.update(len(texts))
                yield from (t for t in texts if isinstance(t, str))

    if sample is None:
        return every(), lambda: count[0]
    # Algorithm R with a fixed seed: the same corpus gives the same sample; a corpus of at most
    # `sample` documents is all of it, in order (so a small corpus gets the tokenizer it always had).
    rng = random.Random(f"bpe-sample:{sample}")
    reservoir: list[str] = []
    for i, text in enumerate(every()):
        if i < sample:
            reservoir.append(text)
        else:
            j = rng.randrange(i + 1)
            if j < sample:
                reservoir[j] = text
    return reservoir, lambda: count[0]


def _corpus(spec: DataSpec, commit: str | None):
    if spec.files:
        return file_corpus(spec.files, text_column=spec.text_column)
    if spec.hub_dataset is not None:
        return hub_corpus(spec.hub_dataset, config=spec.hub_config, split=spec.split, text_column=spec.text_column,
                          revision=commit)
    return builtin_corpus(spec.corpus, seed=spec.corpus_seed, n_docs=spec.n_docs, version=spec.corpus_version)


def _describe(spec: DataSpec, source: dict[str, Any]) -> str:
    """The corpus of `spec`, named for an error message."""
    if spec.files:
        return f"corpus file(s) {', '.join(spec.files)}"
    if spec.hub_dataset is not None:
        config = f", config {spec.hub_config!r}" if spec.hub_config else ""
        return f"Hub dataset {spec.hub_dataset!r}{config}, split {spec.split!r} (commit {source['hub_commit']})"
    return f"corpus {spec.corpus!r}"


def _source_record(spec: DataSpec) -> dict[str, Any]:
    """What the store is built from: the spec, plus the sha256 of every input file it names."""
    inputs = {f: sha256_file(f) for f in expand_files(spec.files)}
    if spec.tokenizer_file is not None:
        if not Path(spec.tokenizer_file).is_file():
            raise TokenizerFileError(
                f"tokenizer file {spec.tokenizer_file} does not exist; give the path of a tokenizer.json"
            )
        inputs[spec.tokenizer_file] = sha256_file(spec.tokenizer_file)
    return {"spec": spec.to_dict(), "input_sha256": inputs}


def _differences(recorded: Any, source: dict[str, Any]) -> list[str]:
    if not isinstance(recorded, dict):
        return ["it records no spec (made by build_token_store)"]
    old, new = recorded.get("spec") or {}, source["spec"]
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if recorded.get("input_sha256") != source["input_sha256"]:
        keys.append("the contents of its input files")
    return keys
