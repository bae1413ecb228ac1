"""Bad input, fuzzed: mutated zoo specs and random `zoo` command lines.

Each gives one of our error classes with a message (exit code 2 from the CLI), never a
traceback from deep inside a library, and never a partial write: the output stays empty.
"""

import math
import re
from importlib import resources

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_index import DataIndexError
from training import SpecError, checkpoint_steps, learning_rate, parse_spec
from training.spec import MAX_CHECKPOINTS
from zoo.cli import main

TINY = resources.files("training").joinpath("specs", "tiny.toml").read_text(encoding="utf-8")
LINES = TINY.splitlines()
VALUE_LINE = re.compile(r"^\s*[\w-]+\s*=")
TABLE_LINES = [i for i, line in enumerate(LINES) if line.startswith("[")]

BAD_VALUES = ['"text"', "true", "1.5", "-1", "0", "[]", "[1, -2]", '["1l", 3]', "{ a = 1 }", "nan", "-inf",
              "99999999999999999999", "9223372036854775807", "-9223372036854775808", "1e308", '"', "", "[[",
              '"\\u0000"', "2026-01-01"]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def mutated_specs(draw) -> str:
    """The tiny spec with one or two mutations: wrong types, unknown keys, missing tables, bad syntax, …"""
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["value", "drop_line", "drop_table", "unknown_key", "garbage", "truncate"]))
        value_lines = [i for i, line in enumerate(lines) if VALUE_LINE.match(line)]
        if kind == "value" and value_lines:
            i = draw(st.sampled_from(value_lines))
            key = lines[i].split("=", 1)[0]
            lines[i] = f"{key}= {draw(st.one_of(st.sampled_from(BAD_VALUES), st.integers().map(str)))}"
        elif kind == "drop_line" and lines:
            del lines[draw(st.integers(0, len(lines) - 1))]
        elif kind == "drop_table":
            start = draw(st.sampled_from(TABLE_LINES))
            end = next((j for j in TABLE_LINES if j > start), len(LINES))
            lines[start:end] = [""] * (end - start)
        elif kind == "unknown_key":
            lines.insert(draw(st.integers(0, len(lines))), f"{draw(st.from_regex(r'[a-z_]{1,12}', fullmatch=True))} = 1")
        elif kind == "garbage":
            lines.insert(draw(st.integers(0, len(lines))), draw(st.text(max_size=20)))
        elif kind == "truncate":
            lines = lines[: draw(st.integers(0, len(lines)))]
    return "\n".join(lines) + "\n"


examples = {"specs": 0, "specs_refused": 0, "argv": 0, "absurd": 0}


@SETTINGS
@given(text=mutated_specs())
def test_a_mutated_spec_is_refused_with_our_error_before_anything_is_written(text, tmp_path, capsys):
    examples["specs"] += 1
    try:
        spec = parse_spec(text, source="fuzz.toml")
    except SpecError as e:
        assert "fuzz.toml" in str(e), e  # names the file (and the key and line, where there is one)
    except DataIndexError as e:  # the [data] table's own checks (corpus, n_docs, vocab_size, …)
        assert str(e), e
    else:  # a harmless mutation (a comment, a default restored): a spec that trains without surprises
        _assert_trainable(spec)
        return
    examples["specs_refused"] += 1
    spec = tmp_path / f"fuzz-{examples['specs']}.toml"
    spec.write_text(text, encoding="utf-8", errors="surrogatepass")
    out = tmp_path / f"out-{examples['specs']}"
    code = main(["train", str(spec), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("zoo: error: ") and "Traceback" not in err, err
    assert not out.exists(), "a refused spec wrote into the output directory"


def _assert_trainable(spec) -> None:
    """What an accepted spec must not hide: a schedule too big to build, a non-finite lr."""
    total = spec.training.steps
    assert len(checkpoint_steps(spec.checkpoints, total)) <= MAX_CHECKPOINTS + 64
    assert all(math.isfinite(learning_rate(spec.optimizer, s, total)) and learning_rate(spec.optimizer, s, total) >= 0
               for s in (1, total // 2 + 1, total))


NUMERIC_KEYS = [("training", "steps"), ("training", "batch_size"), ("training", "micro_batch_size"),
                ("optimizer", "lr"), ("optimizer", "min_lr"), ("optimizer", "warmup_steps"), ("optimizer", "eps"),
                ("optimizer", "beta1"), ("optimizer", "beta2"), ("optimizer", "weight_decay"),
                ("optimizer", "grad_clip"), ("checkpoints", "every"), ("checkpoints", "log_until")]
ABSURD = ["99999999999999999999", "9223372036854775807", "-9223372036854775808", "-1", "nan", "inf", "-inf",
          "1e308", "-1e-300"]


@SETTINGS
@given(key=st.sampled_from(NUMERIC_KEYS + [("sizes", f) for f in ("n_layers", "d_model", "n_heads", "d_head",
                                                                 "d_mlp")] + [("", "seeds")]),
       value=st.sampled_from(ABSURD))
def test_a_huge_negative_or_non_finite_number_is_refused_or_harmless(key, value):
    table, name = key
    if table == "sizes":
        text = re.sub(rf"\b{name} = \d+", f"{name} = {value}", TINY)
    elif table == "":
        text = TINY.replace("seeds = [0, 1]", f"seeds = [{value}]")
    else:
        text = TINY.replace(f"[{table}]\n", f"[{table}]\n{name} = {value}\n")
        text = re.sub(rf"(\[{table}\]\n{name} = [^\n]+\n(?:.*\n)*?){name} = [^\n]+\n", r"\1", text)
    examples["absurd"] += 1
    try:
        spec = parse_spec(text, source="fuzz.toml")
    except SpecError as e:
        assert "fuzz.toml" in str(e) and (name in str(e) or "sizes.1l" in str(e)), e  # names the key or size
        return
    _assert_trainable(spec)  # e.g. every = 10**20: only the final checkpoint, which is fine


def _argv(zoo_dir: str, tmp: str):
    """Command lines of the local commands, with bad paths, numbers and words in every slot."""
    paths = st.sampled_from([zoo_dir, f"{zoo_dir}/runs/gelu-1l-seed0", f"{tmp}/missing", f"{tmp}/file.txt",
                             f"{tmp}/broken.toml", "tiny.toml", "", "/"])
    numbers = st.one_of(st.integers(), st.sampled_from(["x", "1.5", "-0", "1e3", ""])).map(str)
    words = st.one_of(paths, numbers, st.text(max_size=8), st.sampled_from(
        ["--step", "--doc", "--text", "--data-seed", "--decode", "--runs", "--out", "--device", "--resume",
         "--quiet", "--help", "-h", "cuda", "solu-*", "nope-*", ","]))
    command = st.sampled_from(["train", "verify", "batch", "where-seen", "bogus", "--version", ""])
    return st.tuples(command, paths, st.lists(words, max_size=5)).map(lambda t: [t[0], t[1], *t[2]])


@SETTINGS
@given(data=st.data())
def test_a_random_command_line_exits_cleanly_and_writes_nothing(data, trained_tiny, tmp_path, capsys):
    tmp = tmp_path / "cwd"
    tmp.mkdir(exist_ok=True)
    (tmp / "file.txt").write_text("not a run")
    (tmp / "broken.toml").write_text("name = [")
    zoo = trained_tiny / "tiny"
    argv = data.draw(_argv(str(zoo), str(tmp)))
    if argv[0] == "train" and not any(a in argv for a in ("--out",)):
        argv += ["--out", str(tmp / "out")]
    if argv[0] == "train" and any(a in ("tiny", "toy", str(zoo)) for a in argv[1:2]):
        argv[1] = "tiny.toml"  # a missing file: training a real zoo is not this test's business
    examples["argv"] += 1
    before = {p.name for p in tmp.iterdir()}
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: a usage error (2) or --help (0)
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2 and err and not err.startswith("usage:"):
        assert err.startswith("zoo: error: "), (argv, err)
    assert {p.name for p in tmp.iterdir()} == before, f"{argv} wrote into the directory"


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    print(f"\nfuzz examples: {examples['specs']} mutated specs ({examples['specs_refused']} refused, each also "
          f"through `zoo train`), {examples['absurd']} absurd numbers, {examples['argv']} command lines")
