"""Built-in corpora are byte-identical forever; file corpora read what users have; bad input is named."""

import hashlib
import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data_index import (
    BUILTIN_CORPORA,
    BadCorpusError,
    CorpusFileNotFoundError,
    DataSpec,
    EmptyCorpusError,
    UnknownCorpusError,
    builtin_corpus,
    file_corpus,
    prepare_store,
)

# Golden records: sha256 of the 20 documents of seed 7, joined by NUL. A change here
# breaks every store built from the corpus: give the generator a new version instead.
GOLDEN = {
    "stories": "9f0426d23dffd28376cfa7e92c79c397d8c312721d23b977dd3851dfa1a6730b",
    "induction": "1117175ec8f1912a21e94909322ea897dc6f3ca88375ab5b17d894bdd07f87dd",
    "modular": "f45ce073f5aa84368426ad4a54ce11aad6de27a778c1b31eff9c810f49250745",
    "shakespeare": "9fa126fbdc686f5295c80c5da93f1e48fe85e97cbb962e419df6ce489b2e8293",
    "repeats": "7ca12317b8c5b43af25e79a2593cb27056578a660cf586934e72e17f8e21fa08",
    "grokking": "7d32b50e3857396bbbe04e6494cbeca28129d0d8eeb278edc46894aa26ad6981",
}


# Superseded versions stay reproducible: a store built from one can always be rebuilt.
OLD_GOLDEN = {
    ("repeats", 1): "18124049b9c14342028d39dc6c671561650eb274fe9bb78f1a63634df6d48d25",
}


def _digest(texts: list[str]) -> str:
    return hashlib.sha256("\x00".join(texts).encode("utf-8")).hexdigest()


@pytest.mark.parametrize("name", BUILTIN_CORPORA)
def test_builtin_corpus_bytes_match_the_golden_record(name):
    ds = builtin_corpus(name, seed=7, n_docs=20)
    assert ds.column_names == ["text"] and len(ds) == 20
    assert _digest(ds["text"]) == GOLDEN[name]


@pytest.mark.parametrize(("name", "version"), sorted(OLD_GOLDEN))
def test_superseded_corpus_versions_keep_their_bytes(name, version):
    assert _digest(builtin_corpus(name, seed=7, n_docs=20, version=version)["text"]) == OLD_GOLDEN[name, version]


def test_repeats_documents_are_one_run_of_words_three_times():
    for text in builtin_corpus("repeats", n_docs=50)["text"]:
        words = text.removesuffix(".").split(" ")
        run = words[: len(words) // 3]
        assert 4 <= len(run) <= 8 and words == run * 3


@pytest.mark.parametrize("name", ["stories", "induction", "modular"])
def test_generated_corpus_depends_on_seed_and_grows_by_appending(name):
    small = builtin_corpus(name, seed=1, n_docs=10)["text"]
    large = builtin_corpus(name, seed=1, n_docs=30)["text"]
    assert large[:10] == small
    assert builtin_corpus(name, seed=2, n_docs=10)["text"] != small
    assert builtin_corpus(name, seed=1, n_docs=10, version=1)["text"] == small


def test_stories_repeat_character_names_within_a_story():
    # Copying a name seen earlier in the context is what makes an induction head pay off.
    texts = builtin_corpus("stories", n_docs=200)["text"]
    repeats = 0
    for t in texts:
        names = re.findall(r"\b[A-Z][a-z]+\b", t)
        repeats += any(names.count(n) >= 3 for n in set(names) - {"One", "Once", "Long", "Last", "The", "Then"})
    assert repeats >= 190
    assert len({w for t in texts for w in re.findall(r"[A-Za-z']+", t)}) < 1000  # a vocabulary a small BPE covers


def test_induction_documents_repeat_spans():
    for t in builtin_corpus("induction", n_docs=20)["text"]:
        words = t.rstrip(".").split()
        grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
        assert len(set(grams)) < len(grams)


def test_modular_equations_are_correct_mod_113():
    for t in builtin_corpus("modular", n_docs=20)["text"]:
        for line in t.splitlines():
            a, b, c = map(int, re.fullmatch(r"(\d+) \+ (\d+) = (\d+)", line).groups())
            assert c == (a + b) % 113


def test_shakespeare_is_the_real_text():
    texts = builtin_corpus("shakespeare", n_docs=10_000)["text"]
    assert len(texts) == 775  # every scene of the 38 plays
    assert any("To be, or not to be" in t for t in texts)
    assert not any("**" in t for t in texts)


def test_unknown_corpus_lists_the_known_ones():
    with pytest.raises(UnknownCorpusError, match="stories, induction, repeats, modular, grokking, shakespeare"):
        builtin_corpus("storeis")
    with pytest.raises(UnknownCorpusError, match="no version 99; known versions: 1"):
        builtin_corpus("stories", version=99)


def test_zero_documents_is_an_empty_corpus():
    with pytest.raises(EmptyCorpusError, match="n_docs must be >= 1"):
        builtin_corpus("stories", n_docs=0)


def test_file_corpus_reads_txt_jsonl_json_and_parquet_in_order(tmp_path):
    (tmp_path / "a.txt").write_text("first document\nwith two lines", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text('{"text": "second"}\n\n{"text": "third", "id": 3}\n', encoding="utf-8")
    (tmp_path / "c.json").write_text(json.dumps([{"body": "x"}]), encoding="utf-8")
    pq.write_table(pa.table({"text": ["fourth", "fifth"]}), tmp_path / "d.parquet")
    ds = file_corpus([tmp_path / "a.txt", tmp_path / "b.jsonl", tmp_path / "d.parquet"])
    assert _texts(ds) == ["first document\nwith two lines", "second", "third", "fourth", "fifth"]
    assert _texts(file_corpus([str(tmp_path / "c.json")], text_column="body")) == ["x"]


def _texts(ds) -> list[str]:
    return [row["text"] for row in ds]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CorpusFileNotFoundError, match="nope.txt does not exist"):
        file_corpus([tmp_path / "nope.txt"])


def test_unreadable_files_say_what_to_do(tmp_path):
    (tmp_path / "x.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(BadCorpusError, match="unsupported file type '.csv'; use .txt, .jsonl"):
        file_corpus([tmp_path / "x.csv"])
    (tmp_path / "y.jsonl").write_text('{"body": "no text"}\n', encoding="utf-8")
    with pytest.raises(BadCorpusError, match="y.jsonl has no column 'text' \\(columns: body\\).*text_column"):
        file_corpus([tmp_path / "y.jsonl"])
    (tmp_path / "z.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(BadCorpusError, match="cannot read corpus file.*z.jsonl.*JSON parse error"):
        prepare_store(DataSpec(files=[str(tmp_path / "z.jsonl")], vocab_size=300, n_ctx=4), tmp_path / "s")
    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "w.parquet")
    with pytest.raises(BadCorpusError, match="no column 'text'"):
        file_corpus([tmp_path / "w.parquet"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.parquet", "x.csv", "y.jsonl", "z.jsonl"]


def test_files_without_documents_are_an_empty_corpus(tmp_path):
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(EmptyCorpusError, match="e.jsonl has no documents"):
        prepare_store(DataSpec(files=[str(tmp_path / "e.jsonl")], vocab_size=300, n_ctx=4), tmp_path / "s")
    assert [p.name for p in tmp_path.iterdir()] == ["e.jsonl"]  # nothing half-written is kept
    with pytest.raises(EmptyCorpusError):
        file_corpus([])
