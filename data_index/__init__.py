"""data_index: corpora, tokenizer, zarr token store, stateless data order, step index, reverse lookup.

The trainer calls `prepare_store(spec, dir)` once and `step_sample_ids(step, ...)`
+ `store.samples(ids)` every step; researchers ask `batch(store, index, step)`
and `index.where_seen(doc)`. Everything saved is zarr or JSON.
"""

from ._errors import (
    BadContextLengthError,
    BadCorpusError,
    BadDataSpecError,
    BadScheduleError,
    CorpusFileNotFoundError,
    CorpusPackageMissingError,
    DataIndexError,
    DocumentOutOfRangeError,
    EmptyCorpusError,
    FingerprintMismatchError,
    HubCorpusError,
    IncompleteStoreError,
    RevisionMovedError,
    SampleOutOfRangeError,
    StepOutOfRangeError,
    StoreExistsError,
    StoreNotFoundError,
    TokenizerFileError,
    UnknownCorpusError,
    VocabTooSmallError,
)
from ._spec import DataSpec
from .corpora import BUILTIN_CORPORA, builtin_corpus, file_corpus, hub_corpus
from .inspect import Batch, batch, format_batch, format_where_seen, where_seen_text
from .order import derive_key, permute, step_sample_ids
from .step_index import StepIndex, build_step_index
from .store import DocSpan, TokenStore, build_token_store, prepare_store
from .tokenizer import EOS_TOKEN, load_tokenizer, train_bpe_tokenizer

__all__ = [
    "BUILTIN_CORPORA",
    "EOS_TOKEN",
    "BadContextLengthError",
    "BadCorpusError",
    "BadDataSpecError",
    "BadScheduleError",
    "Batch",
    "CorpusFileNotFoundError",
    "CorpusPackageMissingError",
    "DataIndexError",
    "DataSpec",
    "DocSpan",
    "DocumentOutOfRangeError",
    "EmptyCorpusError",
    "FingerprintMismatchError",
    "HubCorpusError",
    "IncompleteStoreError",
    "RevisionMovedError",
    "SampleOutOfRangeError",
    "StepIndex",
    "StepOutOfRangeError",
    "StoreExistsError",
    "StoreNotFoundError",
    "TokenStore",
    "TokenizerFileError",
    "UnknownCorpusError",
    "VocabTooSmallError",
    "batch",
    "build_step_index",
    "build_token_store",
    "builtin_corpus",
    "derive_key",
    "file_corpus",
    "format_batch",
    "format_where_seen",
    "hub_corpus",
    "load_tokenizer",
    "permute",
    "prepare_store",
    "step_sample_ids",
    "train_bpe_tokenizer",
    "where_seen_text",
]
