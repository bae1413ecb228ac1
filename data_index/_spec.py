"""DataSpec: everything that determines a token store, validated when it is made."""

import dataclasses
from dataclasses import dataclass
from typing import Any

from ._errors import BadContextLengthError, BadDataSpecError, EmptyCorpusError
from .corpora import check_version, current_version
from .tokenizer import check_vocab_size

_DEFAULT_CORPUS = "stories"
# Keys added after stores and runs were first recorded: left out of to_dict() while they hold
# their default, so the spec of a store or run made before them reads back byte-identical.
_LATER_KEYS = {"hub_config": None, "revision": None, "held_out_docs": 0, "bpe_sample_docs": None}


@dataclass(frozen=True)
class DataSpec:
    """The source corpus, tokenizer and sample length of a token store.

    Exactly one source: a built-in `corpus`, local `files` (paths or globs of .txt, .jsonl,
    .json, .parquet), or a `hub_dataset` (with `hub_config`, `split`, `text_column` and a
    `revision`: a branch, tag or commit, resolved to a commit when the store is built).
    When files or hub_dataset is given, `corpus` must be None or left at its
    default (TOML has no null), and is stored as None. `corpus_version=None`
    is resolved to the corpus's current version at once, so the version is
    recorded wherever the spec is. `held_out_docs` documents, evenly spaced
    through the corpus, are never trained on and are evaluated at every checkpoint.
    `bpe_sample_docs` trains the BPE on that many documents drawn by a seeded
    reservoir sample (None: on every document). Bad values fail here, before
    anything is written.
    """

    corpus: str | None = _DEFAULT_CORPUS
    corpus_seed: int = 0
    n_docs: int = 2000
    corpus_version: int | None = None
    files: tuple[str, ...] = ()
    hub_dataset: str | None = None
    hub_config: str | None = None
    revision: str | None = None
    split: str = "train"
    text_column: str = "text"
    vocab_size: int = 512
    tokenizer_file: str | None = None
    n_ctx: int = 64
    held_out_docs: int = 0
    bpe_sample_docs: int | None = None

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
        if self.hub_dataset is None and (self.hub_config is not None or self.revision is not None):
            raise BadDataSpecError("hub_config and revision name a part of a Hub dataset; give hub_dataset too, "
                                   "or drop them")
        if self.held_out_docs < 0:
            raise BadDataSpecError(f"held_out_docs must be >= 0 (documents kept out of training), "
                                   f"got {self.held_out_docs}")
        if self.corpus is not None and self.held_out_docs >= self.n_docs:
            raise BadDataSpecError(f"held_out_docs = {self.held_out_docs} leaves no document of the {self.n_docs} "
                                   f"to train on; hold out fewer, or raise n_docs")
        if self.bpe_sample_docs is not None and self.bpe_sample_docs < 1:
            raise BadDataSpecError(f"bpe_sample_docs must be >= 1 (or left out: train the BPE on every "
                                   f"document), got {self.bpe_sample_docs}")
        if self.n_ctx < 1:
            raise BadContextLengthError(f"n_ctx must be >= 1 (tokens per sample, before the target), got {self.n_ctx}")
        if self.tokenizer_file is None:
            check_vocab_size(self.vocab_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready dict (files as a list); keys added later are left out at their default."""
        d = dataclasses.asdict(self)
        d["files"] = list(self.files)
        return {k: v for k, v in d.items() if k not in _LATER_KEYS or v != _LATER_KEYS[k]}

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
