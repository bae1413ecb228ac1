"""Byte-level BPE tokenizers: trained deterministically on a corpus, or loaded from tokenizer.json.

Byte-level means every string encodes (no unknown token) and decoding gives the
exact text back, so a document can be recovered from the token store.
"""

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from ._errors import TokenizerFileError, VocabTooSmallError

EOS_TOKEN = "<|endoftext|>"
_BYTE_ALPHABET = 256
MIN_VOCAB_SIZE = _BYTE_ALPHABET + 1  # every byte, plus the end-of-text token


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Train a byte-level BPE of at most `vocab_size` tokens on `texts`; EOS_TOKEN is id 0.

    Deterministic: the same texts and vocab_size give the same tokenizer.json
    bytes in any process (merge ties are broken by the pair, not by hash order).
    The vocabulary can come out smaller than asked when the corpus runs out of
    pairs to merge; read `get_vocab_size()` for the real size.
    """
    check_vocab_size(vocab_size)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def check_vocab_size(vocab_size: int) -> None:
    """Fail unless a byte-level BPE of `vocab_size` tokens can exist."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise VocabTooSmallError(
            f"vocab_size {vocab_size} is too small for a byte-level BPE: it needs {_BYTE_ALPHABET} byte tokens "
            f"plus {EOS_TOKEN!r}; use vocab_size >= {MIN_VOCAB_SIZE}"
        )


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Load a tokenizer.json; it must know EOS_TOKEN, which separates packed documents."""
    path = Path(path)
    if not path.is_file():
        raise TokenizerFileError(f"tokenizer file {path} does not exist; give the path of a tokenizer.json")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise TokenizerFileError(
            f"{path} is not a valid tokenizer.json ({e}); give a file saved by `tokenizers`"
        ) from None
    if tokenizer.token_to_id(EOS_TOKEN) is None:
        raise TokenizerFileError(
            f"tokenizer {path} has no {EOS_TOKEN!r} token, which separates documents in the token store; "
            f"add it as a special token (tokenizer.add_special_tokens([{EOS_TOKEN!r}])) and save again"
        )
    return tokenizer
