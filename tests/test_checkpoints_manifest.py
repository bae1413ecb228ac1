"""checkpoints_manifest: canonical manifests, safe paths, verify, atomic writes, provenance."""

import dataclasses
import hashlib
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import checkpoints_manifest as cm

PACKAGE_DIR = Path(cm.__file__).parent
ZOO_VERSION = importlib.metadata.version("zoo")


def _env() -> cm.EnvironmentRecord:
    return cm.environment_record()


def _run_dir(tmp_path: Path) -> tuple[Path, cm.Manifest]:
    """A small real run dir: config, a safetensors checkpoint, a loss log, and its manifest."""
    run = tmp_path / "run"
    (run / "checkpoints" / "step00000000").mkdir(parents=True)
    cm.atomic_write_json(run / "config.json", {"d_model": 8, "n_layers": 1})
    ckpt = "checkpoints/step00000000/model.safetensors"
    tensors = {"embed.W_E": np.arange(32, dtype=np.float32).reshape(4, 8)}
    cm.atomic_write(run / ckpt, lambda tmp: save_file(tensors, str(tmp)))
    cm.atomic_write_bytes(run / "loss.jsonl", b'{"step": 1, "loss": 2.5}\n')
    paths = ["config.json", ckpt, "loss.jsonl"]
    manifest = cm.Manifest(
        run="toy-solu-1l-seed0",
        files={p: cm.file_entry(run, p) for p in paths},
        checkpoints=[0],
        dataset_fingerprint="a" * 64,
        code_version=cm.code_version(),
        environment=_env(),
    )
    cm.write_manifest(run, manifest)
    return run, manifest


def _manifest_dict(tmp_path: Path) -> dict:
    _, manifest = _run_dir(tmp_path)
    return json.loads(manifest.to_json())


# --- manifest JSON ------------------------------------------------------------


def test_manifest_round_trip_is_byte_stable(tmp_path):
    run, manifest = _run_dir(tmp_path)
    text = manifest.to_json()
    assert cm.Manifest.from_json(text) == manifest
    assert cm.Manifest.from_json(text).to_json() == text
    assert (run / cm.MANIFEST_NAME).read_bytes() == text.encode("utf-8")
    assert cm.read_manifest(run) == manifest
    assert (
        text.endswith("}\n")
        and text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    )


@settings(max_examples=40, deadline=None)
@given(
    files=st.dictionaries(
        st.lists(
            st.text("abc_.-09é", min_size=1, max_size=6).filter(lambda s: s not in (".", "..")),
            min_size=1,
            max_size=3,
        ).map("/".join),
        st.tuples(
            st.integers(0, 2**50),
            st.binary(max_size=8),
            st.none() | st.text("0123456789abcdef", min_size=40, max_size=40),
        ),
        max_size=5,
    ).filter(lambda f: cm.MANIFEST_NAME not in f),
    steps=st.sets(st.integers(0, 10**6), max_size=8),
)
def test_any_valid_manifest_round_trips_byte_for_byte(files, steps):
    manifest = cm.Manifest(
        run="r",
        files={
            p: cm.FileEntry(size, cm.sha256_bytes(b), commit)
            for p, (size, b, commit) in files.items()
        },
        checkpoints=sorted(steps),
        dataset_fingerprint="fp",
        code_version="0.1.0",
        environment=_env(),
    )
    text = manifest.to_json()
    assert cm.Manifest.from_json(text) == manifest
    assert cm.Manifest.from_json(text).to_json() == text


def test_unknown_manifest_version_is_refused_naming_source_and_version(tmp_path):
    d = _manifest_dict(tmp_path)
    d["version"] = 2
    with pytest.raises(cm.ManifestError, match=r"^runs/x/manifest.json: version is 2 .* version 1"):
        cm.Manifest.from_json(json.dumps(d), source="runs/x/manifest.json")


@pytest.mark.parametrize(
    "path", ["../x", "a/../../x", "/abs", "/etc/passwd", "a\\b", "", "./a", "a//b", "a/"]
)
def test_unsafe_file_paths_are_refused_naming_the_path(tmp_path, path):
    d = _manifest_dict(tmp_path)
    d["files"][path] = d["files"].pop("config.json")
    with pytest.raises(cm.ManifestError) as err:
        cm.Manifest.from_json(json.dumps(d))
    assert str(err.value).startswith("manifest.json: ")
    assert repr(path) in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda d: d["files"]["config.json"].update(size="12"),
            r"files\['config.json'\].size must be an integer, got str '12'",
        ),
        (
            lambda d: d["files"]["config.json"].update(size=True),
            r"files\['config.json'\].size must be an integer, got bool",
        ),
        (lambda d: d["files"]["config.json"].update(size=-1), r"files\['config.json'\].size is -1"),
        (
            lambda d: d["files"]["config.json"].update(sha256="ABC"),
            r"files\['config.json'\].sha256 'ABC' is not 64 lowercase hex",
        ),
        (
            lambda d: d["files"]["config.json"].update(commit=7),
            r"files\['config.json'\].commit must be a string or null",
        ),
        (
            lambda d: d["files"]["config.json"].pop("commit"),
            r"files\['config.json'\] is missing key\(s\) commit",
        ),
        (
            lambda d: d.update(checkpoints=[0, 8, 4]),
            r"checkpoints\[2\] is 4 after 8; steps must be strictly ascending",
        ),
        (lambda d: d.update(checkpoints=[0, 0]), r"checkpoints\[1\] is 0 after 0"),
        (lambda d: d.update(checkpoints="0"), r"checkpoints must be a list, got str"),
        (lambda d: d.update(run=3), r"run must be a string, got int 3"),
        (lambda d: d.update(extra=1), r"the manifest has unknown key\(s\) 'extra'"),
        (
            lambda d: d.pop("dataset_fingerprint"),
            r"the manifest is missing key\(s\) dataset_fingerprint",
        ),
        (lambda d: d.update(version="1"), r"version must be an integer, got str '1'"),
        (
            lambda d: d["environment"].update(num_threads="2"),
            r"environment.num_threads must be an integer",
        ),
        (
            lambda d: d["environment"].update(deterministic_algorithms=1),
            r"environment.deterministic_algorithms must be a boolean",
        ),
        (
            lambda d: d["files"].update({"manifest.json": d["files"]["config.json"]}),
            r"files\[.manifest.json.\]: the manifest cannot list itself",
        ),
    ],
)
def test_wrong_types_and_values_are_refused_naming_the_key(tmp_path, edit, message):
    d = _manifest_dict(tmp_path)
    edit(d)
    with pytest.raises(cm.ManifestError, match="^manifest.json: " + message):
        cm.Manifest.from_json(json.dumps(d))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"run": "a", "run": "b"}', "key 'run' appears twice"),
        ('{"x": NaN}', "NaN is not valid JSON"),
        ("{", "not valid JSON"),
        ("[]", "the manifest must be an object, got list"),
    ],
)
def test_malformed_json_is_refused(text, message):
    with pytest.raises(cm.ManifestError, match=f"^m.json: {message}"):
        cm.Manifest.from_json(text, source="m.json")


def test_to_json_refuses_a_manifest_that_could_not_be_read_back(tmp_path):
    run, manifest = _run_dir(tmp_path)
    manifest.files["../escape"] = manifest.files["config.json"]
    with pytest.raises(cm.ManifestError, match=r"'\.\./escape' contains '\.\.'"):
        cm.write_manifest(run, manifest)
    assert cm.read_manifest(run).files.keys() == {
        "config.json",
        "checkpoints/step00000000/model.safetensors",
        "loss.jsonl",
    }


def test_read_manifest_of_a_dir_without_one_says_the_run_is_not_valid_yet(tmp_path):
    with pytest.raises(
        cm.ManifestNotFoundError,
        match=f"no manifest.json in {re.escape(str(tmp_path))}: a run directory is valid only once",
    ):
        cm.read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_bytes(b"\xff\xfe")
    with pytest.raises(cm.ManifestError, match="not utf-8"):
        cm.read_manifest(tmp_path)


def test_file_entry_refuses_an_unsafe_path(tmp_path):
    with pytest.raises(cm.ManifestError, match=r"'\.\./x' contains '\.\.'"):
        cm.file_entry(tmp_path, "../x")


# --- verify ---------------------------------------------------------------------


def test_verify_returns_nothing_for_a_good_run_dir(tmp_path):
    run, manifest = _run_dir(tmp_path)
    assert cm.verify(run) == []
    assert cm.verify(run, manifest) == []


def test_verify_finds_missing_size_and_sha256_mismatches(tmp_path):
    run, manifest = _run_dir(tmp_path)
    (run / "loss.jsonl").unlink()
    with open(run / "config.json", "ab") as f:
        f.write(b" ")
    ckpt = run / "checkpoints/step00000000/model.safetensors"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 1  # same size, one bit flipped
    ckpt.write_bytes(bytes(data))
    found = {m.path: m for m in cm.verify(run)}
    assert {p: m.problem for p, m in found.items()} == {
        "loss.jsonl": "missing",
        "config.json": "size",
        "checkpoints/step00000000/model.safetensors": "sha256",
    }
    size = manifest.files["config.json"].size
    assert (
        str(found["config.json"])
        == f"config.json: size (expected {size} bytes, found {size + 1} bytes)"
    )
    assert (
        found["checkpoints/step00000000/model.safetensors"].actual
        == hashlib.sha256(data).hexdigest()
    )


def test_verify_refuses_symlinks_that_escape_the_run_dir_and_unsafe_paths(tmp_path):
    run, manifest = _run_dir(tmp_path)
    outside = tmp_path / "outside.json"
    shutil.copy(run / "config.json", outside)
    (run / "config.json").unlink()
    (run / "config.json").symlink_to(outside)
    (run / "inner.json").symlink_to(run / "loss.jsonl")  # a link that stays inside is fine
    manifest.files["inner.json"] = manifest.files["loss.jsonl"]
    manifest.files["../outside.json"] = manifest.files["config.json"]  # never valid, even in memory
    problems = {m.path: (m.problem, m.actual) for m in cm.verify(run, manifest)}
    assert problems == {
        "config.json": ("unsafe path", f"a link to {outside.resolve()}"),
        "../outside.json": (
            "unsafe path",
            "a path that contains '..'; paths must stay inside the run dir",
        ),
    }


# --- atomic writes -------------------------------------------------------------


class _WriterFailed(Exception):
    pass


def test_atomic_write_leaves_old_file_intact_and_no_temp_file_when_writer_raises(tmp_path):
    target = tmp_path / "model.safetensors"
    old = {"w": np.ones(3, dtype=np.float32)}
    cm.atomic_write(target, lambda tmp: save_file(old, str(tmp)))
    before = target.read_bytes()

    def half_write(tmp: Path) -> None:
        tmp.write_bytes(before[:10])
        raise _WriterFailed

    with pytest.raises(_WriterFailed):
        cm.atomic_write(target, half_write)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert np.array_equal(load_file(str(target))["w"], old["w"])


def test_atomic_write_replaces_the_file_and_errors_clearly_on_bad_targets(tmp_path):
    target = tmp_path / "a.bin"
    cm.atomic_write_bytes(target, b"one")
    cm.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    with pytest.raises(FileNotFoundError, match="did not create a file"):
        cm.atomic_write(target, lambda tmp: None)
    with pytest.raises(
        FileNotFoundError, match=r"directory .*nope does not exist; create it first"
    ):
        cm.atomic_write_bytes(tmp_path / "nope" / "a.bin", b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_atomic_write_json_is_canonical(tmp_path):
    cm.atomic_write_json(tmp_path / "c.json", {"b": [1, 2], "a": "é"})
    assert (
        tmp_path / "c.json"
    ).read_bytes() == b'{\n  "a": "\\u00e9",\n  "b": [\n    1,\n    2\n  ]\n}\n'


# --- hashing -----------------------------------------------------------------------


def test_sha256_file_equals_hashlib_on_a_multi_mib_file(tmp_path):
    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 12345)  # not a whole number of chunks
    (tmp_path / "big").write_bytes(data)
    assert (
        cm.sha256_file(tmp_path / "big")
        == hashlib.sha256(data).hexdigest()
        == cm.sha256_bytes(data)
    )
    assert cm.file_entry(tmp_path, "big") == cm.FileEntry(
        size=len(data), sha256=hashlib.sha256(data).hexdigest()
    )


# --- environment and code version -----------------------------------------------------


def test_environment_record_is_populated_and_round_trips():
    import torch

    env = cm.environment_record()
    assert env.device == "cpu" and env.device_name and env.machine and env.os
    assert env.torch == torch.__version__ and env.numpy == np.__version__
    assert env.python == ".".join(map(str, sys.version_info[:3]))
    assert env.num_threads == torch.get_num_threads() >= 1
    assert isinstance(env.deterministic_algorithms, bool)
    assert cm.EnvironmentRecord.from_dict(env.to_dict()) == env
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        cm.environment_record("tpu")


def test_bitwise_comparable_names_what_breaks_bitwise_equality():
    here = cm.environment_record()
    assert here.bitwise_comparable(here) == []
    harmless = dataclasses.replace(
        here, python="3.12.0", numpy="1.26.0", os="Linux 5.0", device_name="Other CPU"
    )
    assert here.bitwise_comparable(harmless) == []
    there = dataclasses.replace(
        here, torch="2.12.1", num_threads=here.num_threads + 1, machine="aarch64"
    )
    assert here.bitwise_comparable(there) == [
        f"torch {here.torch} here vs 2.12.1 in the manifest",
        f"num_threads {here.num_threads} here vs {here.num_threads + 1} in the manifest",
        f"machine {here.machine} here vs aarch64 in the manifest",
    ]
    gpu_a = dataclasses.replace(here, device="cuda", device_name="NVIDIA H100")
    gpu_b = dataclasses.replace(gpu_a, device_name="NVIDIA A100")
    assert gpu_a.bitwise_comparable(gpu_b) == [
        "device_name NVIDIA H100 here vs NVIDIA A100 in the manifest"
    ]


def test_code_version_does_not_crash_without_git(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert cm.code_version() == ZOO_VERSION


def test_code_version_names_the_commit_and_dirty_tree_of_a_checkout(tmp_path):
    shutil.copytree(
        PACKAGE_DIR, tmp_path / "checkpoints_manifest", ignore=shutil.ignore_patterns("__pycache__")
    )
    git = [
        "git",
        "-C",
        str(tmp_path),
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "-c",
        "commit.gpgsign=false",
    ]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "--short=12", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()

    def version() -> str:
        code = "import checkpoints_manifest as cm; print(cm.code_version())"
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True
        )
        return out.stdout.strip()

    assert version() == f"{ZOO_VERSION}+g{sha}"
    (tmp_path / "untracked.txt").write_text("x")
    assert version() == f"{ZOO_VERSION}+g{sha}"
    with open(tmp_path / "checkpoints_manifest" / "_errors.py", "a") as f:
        f.write("\n")
    assert version() == f"{ZOO_VERSION}+g{sha}.dirty"


# --- no pickle -----------------------------------------------------------------------


def test_nothing_is_pickled_only_json_and_safetensors_are_written(tmp_path):
    for source in PACKAGE_DIR.glob("*.py"):
        text = source.read_text()
        assert not re.search(
            r"\b(pickle|dill|marshal|shelve|torch\.save|torch\.load|np\.save|np\.load)\b", text
        ), source
    run, _ = _run_dir(tmp_path)
    for path in run.rglob("*"):
        if path.is_file():
            raw = path.read_bytes()
            assert not raw.startswith(b"\x80"), (
                path
            )  # every pickle protocol >= 2 starts with PROTO 0x80
            if path.suffix == ".json":
                json.loads(raw)
            elif path.suffix == ".jsonl":
                [json.loads(line) for line in raw.splitlines()]
            else:
                assert path.suffix == ".safetensors"
                load_file(str(path))
