"""DataSpec: everything that determines a token store, validated when it is made."""

import dataclasses
from dataclasses import dataclass
from typing import Any

from ._errors import BadContextLengthError, BadDataSpecError, EmptyCorpusError
from .corpora import check_version, current_version
from .tokenizer import check_vocab_size

_DEFAULT_CORPUS = "stories"


@dataclass(frozen=True)
class DataSpec:
    """The source corpus, tokenizer and sample length of a token store.

    Exactly one source: a built-in `corpus`, local `files`, or a `hub_dataset`.
    When files or hub_dataset is given, `corpus` must be None or left at its
    default (TOML has no null), and is stored as None. `revision` pins a
    hub_dataset to a commit or tag; None (the main branch) is left out of
    `to_dict`, so configs written before the field existed keep their bytes.
    `corpus_version=None` is resolved to the corpus's current version at once,
    so the version is recorded wherever the spec is. Bad values fail here,
    before anything is written.
    """

    corpus: str | None = _DEFAULT_CORPUS
    corpus_seed: int = 0
    n_docs: int = 2000
    corpus_version: int | None = None
    files: tuple[str, ...] = ()
    hub_dataset: str | None = None
    split: str = "train"
    text_column: str = "text"
    revision: str | None = None
    vocab_size: int = 512
    tokenizer_file: str | None = None
    n_ctx: int = 64

    def __post_init__(self) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen: normalize in place)
        if isinstance(self.files, (str, bytes)):
            raise BadDataSpecError(f"files must be a list of paths, got the string {self.files!r}")
        set_("files", tuple(str(f) for f in self.files))
        if self.files and self.hub_dataset is not None:
            raise BadDataSpecError("give either files or hub_dataset, not both")
        if self.files or self.hub_dataset is not None:
            if self.corpus not in (None, _DEFAULT_CORPUS):
                raise BadDataSpecError(
                    f"corpus={self.corpus!r} and {'files' if self.files else 'hub_dataset'} both name a source; "
                    f"keep one"
                )
            set_("corpus", None)
            set_("corpus_version", None)
        elif self.corpus is None:
            raise BadDataSpecError("no corpus: give a built-in corpus name, files, or hub_dataset")
        else:
            version = current_version(self.corpus) if self.corpus_version is None else self.corpus_version
            set_("corpus_version", version)
            if self.n_docs < 1:
                raise EmptyCorpusError(f"n_docs must be >= 1, got {self.n_docs}")
            check_version(self.corpus, version)
        if self.n_ctx < 1:
            raise BadContextLengthError(f"n_ctx must be >= 1 (tokens per sample, before the target), got {self.n_ctx}")
        if self.tokenizer_file is None:
            check_vocab_size(self.vocab_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready dict (files as a list)."""
        d = dataclasses.asdict(self)
        d["files"] = list(self.files)
        if d["revision"] is None:
            del d["revision"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        """Inverse of to_dict; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise BadDataSpecError(
                f"unknown DataSpec key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(known))}"
            )
        return cls(**d)
