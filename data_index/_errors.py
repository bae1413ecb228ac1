"""Errors of the data index: one class per failure a user can act on.

Every class subclasses `DataIndexError(ValueError)`, so a caller can catch the
whole family; every message names the offending thing and the fix.
"""


class DataIndexError(ValueError):
    """Base of every data-index error."""


class UnknownCorpusError(DataIndexError):
    """A built-in corpus name (or version) that does not exist; the message lists the known ones."""


class CorpusPackageMissingError(DataIndexError):
    """A built-in corpus whose text ships in a Python package that is not installed."""


class EmptyCorpusError(DataIndexError):
    """A corpus with no documents, or too few tokens to fill one sample."""


class CorpusFileNotFoundError(DataIndexError):
    """A corpus file (or directory) given by path does not exist."""


class BadCorpusError(DataIndexError):
    """A corpus that cannot be read as documents: unknown file type, bad JSON, no text column."""


class HubCorpusError(DataIndexError):
    """A Hub dataset, or a revision of one, that does not exist or cannot be reached."""


class RevisionMovedError(DataIndexError):
    """A Hub dataset's revision (a branch or tag) now points at another commit than the store was built from."""


class TokenizerFileError(DataIndexError):
    """A tokenizer.json that is missing, unreadable, or lacks the end-of-text token."""


class VocabTooSmallError(DataIndexError):
    """A BPE vocabulary smaller than the byte alphabet plus the end-of-text token."""


class BadContextLengthError(DataIndexError):
    """n_ctx <= 0."""


class BadDataSpecError(DataIndexError):
    """A DataSpec that names no source, several sources, or has unknown keys."""


class BadScheduleError(DataIndexError):
    """A batch size, step count or permutation size < 1."""


class StepOutOfRangeError(DataIndexError):
    """A step outside [1, n_steps]; the message says the last valid step."""


class SampleOutOfRangeError(DataIndexError):
    """A sample id outside [0, n_samples)."""


class DocumentOutOfRangeError(DataIndexError):
    """A document id outside [0, n_docs)."""


class FingerprintMismatchError(DataIndexError):
    """A store (or an index built on one) whose fingerprint is not the expected one."""


class StoreNotFoundError(DataIndexError):
    """No token store or step index at the path given."""


class DamagedStoreError(DataIndexError):
    """A store's or index's metadata that is malformed (bad JSON, a value of the wrong kind)."""


class IncompleteStoreError(DataIndexError):
    """A store or step index whose build did not finish; rerun the build."""


class StoreExistsError(DataIndexError):
    """The output directory already holds something else: another spec's store, or foreign files."""
