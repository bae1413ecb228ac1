"""Tokenize documents into one EOS-separated stream.

Each document is encoded on its own, so the stream is the same bytes whatever
the number of workers or the batch boundaries; workers only change the speed.
"""

import itertools

import numpy as np
from tokenizers import Tokenizer

_DOCS_PER_CALL = 1000  # one encode_batch_fast call: large enough to amortize, small enough to stay flat


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
    flats, lengths = [], []
    for start in range(0, len(texts), _DOCS_PER_CALL):
        ids = [e.ids for e in encoder.encode_batch_fast(texts[start:start + _DOCS_PER_CALL], add_special_tokens=False)]
        for x in ids:
            x.append(eos_id)
        n = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        flats.append(np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(n.sum())))
        lengths.append(n)
    if not flats:
        return np.empty(0, dtype=dtype), np.empty(0, dtype=np.int64)
    return np.concatenate(flats), np.concatenate(lengths)
