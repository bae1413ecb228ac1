"""Tokenize documents into one EOS-separated stream, in-process or across worker processes.

Each document is encoded on its own, so the stream is the same bytes whatever
the number of workers or the batch boundaries; workers only change the speed.
"""

import itertools
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
from tokenizers import Tokenizer

_worker_tokenizer: Tokenizer | None = None


def text_encoder(tokenizer: Tokenizer) -> Tokenizer:
    """A copy of `tokenizer` that encodes special-token strings inside a text as plain text.

    A document that happens to contain "<|endoftext|>" must not fake a
    document boundary; only the packer inserts EOS.
    """
    enc = Tokenizer.from_str(tokenizer.to_str())
    enc.encode_special_tokens = True
    return enc


def encode(encoder: Tokenizer, texts: list[str], eos_id: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(the texts' tokens, each followed by EOS, concatenated; each document's length with its EOS)."""
    ids = [e.ids for e in encoder.encode_batch_fast(texts, add_special_tokens=False)]
    for x in ids:
        x.append(eos_id)
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


def encode_batches(
    tokenizer: Tokenizer, batches: Iterable[list[str]], *, eos_id: int, dtype: np.dtype, workers: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """encode() of each batch, in order; with workers > 1, batches run in a process pool."""
    if workers <= 1:
        encoder = text_encoder(tokenizer)
        for texts in batches:
            yield encode(encoder, texts, eos_id, dtype)
        return
    # spawn, not fork: the parent may hold zarr's event-loop thread and tokenizers' thread pool.
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(tokenizer.to_str(),)) as pool:
        pending: deque = deque()
        for texts in batches:
            pending.append(pool.apply_async(_encode_in_worker, (texts, eos_id, np.dtype(dtype).str)))
            if len(pending) >= 2 * workers:  # bounded read-ahead: memory stays flat on big corpora
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _init_worker(tokenizer_json: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = text_encoder(Tokenizer.from_str(tokenizer_json))


def _encode_in_worker(texts: list[str], eos_id: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    assert _worker_tokenizer is not None
    return encode(_worker_tokenizer, texts, eos_id, np.dtype(dtype))
