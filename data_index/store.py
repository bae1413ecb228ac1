"""The token store: documents tokenized, EOS-separated and packed into fixed-length samples (zarr v3).

Layout of a store directory (complete once `store.json` exists, and it only
ever appears complete: the build happens in a temp dir that is renamed into place):

    store.json      format, shape, vocab, fingerprint, and what it was built from
    tokenizer.json  the tokenizer that made the tokens
    zarr.json       the zarr group holding
    tokens/         uint16/uint32 [n_samples, n_ctx+1], chunked by whole rows
    doc_offsets/    int64 [n_docs+1]: document d is stream tokens [off[d], off[d+1]) (its EOS last)

Sample i is stream tokens [i*(n_ctx+1), (i+1)*(n_ctx+1)); the tail that fills
no sample is dropped. Both maps (sample -> document spans, document -> samples)
follow from doc_offsets by binary search, so they cost no storage and cannot
disagree with the tokens.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import tokenizers
import zarr
from tqdm.auto import tqdm

from checkpoints_manifest import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file

from ._atomic_dir import TargetExistsError, build_dir, read_meta
from ._errors import (
    BadContextLengthError,
    BadCorpusError,
    CorpusFileNotFoundError,
    DocumentOutOfRangeError,
    EmptyCorpusError,
    FingerprintMismatchError,
    SampleOutOfRangeError,
    StoreExistsError,
    TokenizerFileError,
)
from ._spec import DataSpec
from ._tokenize import encode_batches
from .corpora import builtin_corpus, file_corpus, hub_corpus
from .tokenizer import EOS_TOKEN, load_tokenizer, train_bpe_tokenizer

STORE_JSON = "store.json"
TOKENIZER_JSON = "tokenizer.json"
_FORMAT = "zoo-token-store"
_FORMAT_VERSION = 1
_STORE_ENTRIES = {STORE_JSON, TOKENIZER_JSON, "zarr.json", "tokens", "doc_offsets"}
# tokens chunks: ~64 KiB of whole rows, so a sample read touches one small chunk (zarr reads
# cost ~1 ms + the chunk's size; 1 MiB chunks made a random read ~3x slower)
_CHUNK_BYTES = 1 << 16
_DOCS_PER_BATCH = 1000  # tokenizer batch: large enough to amortize, small enough to stream
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

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        self.path = path
        self.n_ctx = meta["n_ctx"]
        self.n_samples = meta["n_samples"]
        self.n_docs = meta["n_docs"]
        self.fingerprint = meta["fingerprint"]
        self.eos_id = meta["eos_id"]
        self.vocab_size = meta["vocab_size"]
        self.tokenizer = load_tokenizer(path / TOKENIZER_JSON)
        group = zarr.open_group(str(path), mode="r", zarr_format=3)
        self._zarr_tokens = group["tokens"]
        self._doc_offsets = np.asarray(group["doc_offsets"][:], dtype=np.int64)
        nbytes = self.n_samples * (self.n_ctx + 1) * self._zarr_tokens.dtype.itemsize
        self._tokens = np.asarray(self._zarr_tokens[:]) if nbytes <= _IN_MEMORY_MAX_BYTES else None

    @classmethod
    def open(cls, path: str | os.PathLike, *, expected_fingerprint: str | None = None) -> "TokenStore":
        """Open a complete store; with `expected_fingerprint`, refuse a store holding other data."""
        path = Path(path)
        meta = _read_meta(path)
        if expected_fingerprint is not None and meta["fingerprint"] != expected_fingerprint:
            raise FingerprintMismatchError(
                f"token store {path} has fingerprint {meta['fingerprint']}, expected {expected_fingerprint}: "
                f"it holds different tokens or a different tokenizer than expected; prepare the store from the "
                f"run's data spec in a fresh directory, or open the store the run was trained on"
            )
        return cls(path, meta)

    def samples(self, ids: np.ndarray) -> np.ndarray:
        """Tokens of samples `ids` (in that order, repeats allowed): int64 [len(ids), n_ctx+1].

        The trainer's hot path: a small store is in RAM, so this is one gather.
        """
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_samples):
            raise SampleOutOfRangeError(
                f"sample ids must lie in [0, {self.n_samples}) for store {self.path}; got [{ids.min()}, {ids.max()}]"
            )
        if self._tokens is not None:
            return self._tokens[ids].astype(np.int64)
        unique, inverse = np.unique(ids, return_inverse=True)
        rows = self._zarr_tokens.get_orthogonal_selection((unique, slice(None)))
        return np.asarray(rows, dtype=np.int64)[inverse.reshape(ids.shape)]

    def sample_documents(self, sample_id: int) -> list[DocSpan]:
        """The documents whose tokens sample `sample_id` holds, with their token ranges in it."""
        self._check_sample(sample_id)
        length = self.n_ctx + 1
        lo, hi = sample_id * length, (sample_id + 1) * length
        first = int(np.searchsorted(self._doc_offsets, lo, side="right")) - 1
        spans = []
        for d in range(first, self.n_docs):
            start, end = int(self._doc_offsets[d]), int(self._doc_offsets[d + 1])
            if start >= hi:
                break
            spans.append(DocSpan(d, max(start, lo) - lo, min(end, hi) - lo))
        return spans

    def document_samples(self, doc_id: int) -> np.ndarray:
        """Ids of the samples holding any token of document `doc_id` (int64, ascending; empty if it was dropped)."""
        self._check_doc(doc_id)
        length = self.n_ctx + 1
        first = int(self._doc_offsets[doc_id]) // length
        end = min(-(-int(self._doc_offsets[doc_id + 1]) // length), self.n_samples)
        return np.arange(first, max(first, end), dtype=np.int64)

    def document_text(self, doc_id: int) -> str:
        """The stored text of document `doc_id`: byte-level BPE gives the original back (cut if in the dropped tail)."""
        self._check_doc(doc_id)
        start, end = int(self._doc_offsets[doc_id]), int(self._doc_offsets[doc_id + 1]) - 1  # without its EOS
        return self.decode(self._stream(start, min(end, self.n_samples * (self.n_ctx + 1))))

    def decode(self, tokens) -> str:
        """Text of a token sequence; EOS shows as <|endoftext|>."""
        return self.tokenizer.decode([int(t) for t in np.asarray(tokens).reshape(-1)], skip_special_tokens=False)

    def _stream(self, start: int, end: int) -> np.ndarray:
        """Stream tokens [start, end) (end clipped to the kept samples)."""
        length = self.n_ctx + 1
        if end <= start:
            return np.empty(0, dtype=np.int64)
        first, last = start // length, (end - 1) // length
        rows = self._tokens[first : last + 1] if self._tokens is not None else self._zarr_tokens[first : last + 1]
        flat = np.asarray(rows).reshape(-1)
        return flat[start - first * length : end - first * length]

    def _doc_range_of_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(first doc, last doc) of every sample: the documents of sample i are first[i]..last[i]."""
        length = self.n_ctx + 1
        starts = np.arange(self.n_samples, dtype=np.int64) * length
        first = np.searchsorted(self._doc_offsets, starts, side="right") - 1
        last = np.searchsorted(self._doc_offsets, starts + length, side="left") - 1
        return first, last

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


def _read_meta(path: Path) -> dict[str, Any]:
    return read_meta(path, STORE_JSON, fmt=_FORMAT, version=_FORMAT_VERSION, what="token store",
                     how_to_build=f"`zoo train SPEC` (it prepares the zoo's data; in Python: "
                                  f"prepare_store(spec, {str(path)!r}))")

def build_token_store(
    dataset: datasets.Dataset,
    tokenizer: tokenizers.Tokenizer,
    out_dir: str | os.PathLike,
    *,
    n_ctx: int,
    workers: int = 1,
    progress: bool = True,
) -> TokenStore:
    """Tokenize `dataset`'s "text" column into a new store at `out_dir` (which must not exist or be empty).

    Complete or nothing: built in a temp dir and renamed into place. The same
    dataset and tokenizer give the same fingerprint for any `workers`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise StoreExistsError(
            f"{out_dir} already exists and is not empty; build into a new directory "
            f"(prepare_store reuses a store of the same spec)"
        )
    return _build(dataset, tokenizer, out_dir, n_ctx=n_ctx, workers=workers, progress=progress, source=None)


def _build(dataset, tokenizer, out_dir: Path, *, n_ctx: int, workers: int, progress: bool, source) -> TokenStore:
    """Validate, then build into a temp dir renamed onto out_dir; nothing is written if validation fails."""
    if n_ctx < 1:
        raise BadContextLengthError(f"n_ctx must be >= 1 (tokens per sample, before the target), got {n_ctx}")
    if "text" not in dataset.column_names:
        raise BadCorpusError(
            f"the dataset has no 'text' column (columns: {', '.join(dataset.column_names)}); "
            f"rename the column holding the documents to 'text'"
        )
    if len(dataset) == 0:
        raise EmptyCorpusError("the corpus has no documents; give at least one non-empty document")
    eos_id = tokenizer.token_to_id(EOS_TOKEN)
    if eos_id is None:
        raise TokenizerFileError(
            f"the tokenizer has no {EOS_TOKEN!r} token, which separates documents; add it as a special token"
        )
    build_dir(out_dir, lambda tmp: _write_store(tmp, dataset, tokenizer, eos_id, n_ctx, workers, progress, source))
    return TokenStore.open(out_dir)


def _write_store(tmp: Path, dataset, tokenizer, eos_id: int, n_ctx: int, workers: int, progress: bool, source) -> None:
    vocab_size = tokenizer.get_vocab_size()
    dtype = np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<u4")
    length = n_ctx + 1
    rows_per_chunk = max(1, _CHUNK_BYTES // (length * dtype.itemsize))
    group = zarr.open_group(str(tmp), mode="w", zarr_format=3)  # mode "w" empties tmp: write files after it
    tokenizer_bytes = tokenizer.to_str().encode("utf-8")
    atomic_write_bytes(tmp / TOKENIZER_JSON, tokenizer_bytes)
    tokens = group.create_array("tokens", shape=(0, length), chunks=(rows_per_chunk, length), dtype=dtype)
    token_hash = hashlib.sha256()
    lengths: list[np.ndarray] = []
    pending = np.empty(0, dtype=dtype)
    n_samples = 0
    batches = _text_batches(dataset, progress)
    for flat, doc_lengths in encode_batches(tokenizer, batches, eos_id=eos_id, dtype=dtype, workers=workers):
        lengths.append(doc_lengths)
        pending = np.concatenate([pending, flat])
        full_chunks = len(pending) // (rows_per_chunk * length)
        if full_chunks:  # append whole chunks only, so every chunk is written once
            cut = full_chunks * rows_per_chunk * length
            n_samples += _append_rows(tokens, pending[:cut].reshape(-1, length), token_hash)
            pending = pending[cut:]
    n_samples += _append_rows(tokens, pending[: len(pending) // length * length].reshape(-1, length), token_hash)
    n_dropped = len(pending) % length

    doc_offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
    n_tokens = int(doc_offsets[-1])
    if n_samples == 0:
        raise EmptyCorpusError(
            f"the corpus has {n_tokens} tokens, fewer than one sample of n_ctx+1 = {length}; "
            f"use more documents or a smaller n_ctx"
        )
    group.create_array("doc_offsets", data=doc_offsets, chunks=(min(len(doc_offsets), 1 << 20),))
    parts = {
        "tokens": {"dtype": dtype.str, "shape": [n_samples, length], "sha256": token_hash.hexdigest()},
        "doc_offsets": {
            "dtype": "<i8",
            "shape": [len(doc_offsets)],
            "sha256": sha256_bytes(doc_offsets.astype("<i8").tobytes()),
        },
        TOKENIZER_JSON: {"sha256": sha256_bytes(tokenizer_bytes)},
    }
    meta = {
        "format": _FORMAT,
        "format_version": _FORMAT_VERSION,
        "n_ctx": n_ctx,
        "n_samples": n_samples,
        "n_docs": len(doc_offsets) - 1,
        "n_tokens": n_tokens,
        "n_dropped_tokens": n_dropped,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "parts": parts,
        "fingerprint": fingerprint_of(parts),
        "source": source,
    }
    atomic_write_json(tmp / STORE_JSON, meta)  # last: its presence marks the store complete


def fingerprint_of(parts: dict[str, Any]) -> str:
    """The store fingerprint: sha256 of the canonical JSON of its parts' dtypes, shapes and sha256s.

    It covers the token bytes, the document offsets and tokenizer.json, never
    zarr metadata or compression, so equal data means an equal fingerprint.
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def _append_rows(array, rows: np.ndarray, digest) -> int:
    if len(rows):
        array.append(rows, axis=0)
        digest.update(np.ascontiguousarray(rows).tobytes())
    return len(rows)


def _text_batches(dataset: datasets.Dataset, progress: bool) -> Iterator[list[str]]:
    with tqdm(total=len(dataset), unit="doc", desc="tokenize", disable=not progress) as bar:
        for start, batch in enumerate(dataset.iter(batch_size=_DOCS_PER_BATCH)):
            texts = batch["text"]
            for i, t in enumerate(texts):
                if not isinstance(t, str):
                    raise BadCorpusError(
                        f"document {start * _DOCS_PER_BATCH + i} has text {t!r}, not a string; "
                        f"drop or fill missing texts before building"
                    )
            bar.update(len(texts))
            yield texts


def prepare_store(spec: DataSpec, out_dir: str | os.PathLike, *, workers: int = 1, progress: bool = True) -> TokenStore:
    """The store of `spec` at `out_dir`: opened if already built from this spec, else built.

    Idempotent and safe to call from several processes at once. Refuses a
    directory holding another spec's store or foreign files; an interrupted
    build is cleaned up and redone. Input files are identified by sha256, so a
    changed file is a different spec.
    """
    out_dir = Path(out_dir)
    source = _source_record(spec)
    if (out_dir / STORE_JSON).is_file():
        recorded = _read_meta(out_dir).get("source")
        if recorded != source:
            raise StoreExistsError(
                f"{out_dir} holds a token store built from a different data spec "
                f"(differs in: {', '.join(_differences(recorded, source))}); "
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
    dataset = _corpus(spec)
    if spec.tokenizer_file is not None:
        tokenizer = load_tokenizer(spec.tokenizer_file)
    else:
        tokenizer = train_bpe_tokenizer(_iter_texts(dataset), spec.vocab_size)
    try:
        return _build(dataset, tokenizer, out_dir, n_ctx=spec.n_ctx, workers=workers, progress=progress, source=source)
    except TargetExistsError:  # another process built it meanwhile: check its spec like any existing store
        return prepare_store(spec, out_dir, workers=workers, progress=progress)


def _corpus(spec: DataSpec) -> datasets.Dataset:
    if spec.files:
        return file_corpus(spec.files, text_column=spec.text_column)
    if spec.hub_dataset is not None:
        return hub_corpus(spec.hub_dataset, split=spec.split, text_column=spec.text_column, revision=spec.revision)
    return builtin_corpus(spec.corpus, seed=spec.corpus_seed, n_docs=spec.n_docs, version=spec.corpus_version)


def _iter_texts(dataset: datasets.Dataset) -> Iterator[str]:
    for batch in dataset.iter(batch_size=_DOCS_PER_BATCH):
        yield from (t for t in batch["text"] if isinstance(t, str))


def _source_record(spec: DataSpec) -> dict[str, Any]:
    """What the store is built from: the spec, plus the sha256 of every input file it names."""
    inputs = {}
    for f in spec.files:
        if not Path(f).is_file():
            raise CorpusFileNotFoundError(f"corpus file {f} does not exist or is not a file; check the path")
        inputs[f] = sha256_file(f)
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
