"""Resume verifies what it reads: it starts from the latest checkpoint whose files match the manifest,
names what it skipped and why, and ends byte-identical to an uninterrupted run. No checkpoint computed
from unverified bytes is ever listed in a manifest.
"""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from checkpoints_manifest import Manifest, read_manifest
from helpers import cut_run_back, tree_digest
from training import load_spec
from training import run_dir as run_dir_module
from zoo.cli import main
from zoo.launch import launch, status

RUN = "gelu-1l-seed0"


@pytest.fixture
def zoo_copy(trained_tiny: Path, tmp_path: Path) -> Path:
    """A copy of the trained tiny zoo (data, indexes, runs) under tmp_path/out, made with `cp -a`."""
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cp", "-a", str(trained_tiny / "tiny"), str(out / "tiny")], check=True)
    return out


@pytest.fixture
def manifests_written(monkeypatch: pytest.MonkeyPatch) -> list[Manifest]:
    """Every manifest the trainer writes from now on."""
    written: list[Manifest] = []
    real = run_dir_module.write_manifest

    def recording(path: Path, manifest: Manifest) -> None:
        real(path, manifest)
        written.append(manifest)

    monkeypatch.setattr(run_dir_module, "write_manifest", recording)
    return written


def _run(out: Path) -> Path:
    return out / "tiny" / "runs" / RUN


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if at is None else at
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _checkpoint(out: Path, step: int, name: str = "model.safetensors") -> Path:
    return _run(out) / "checkpoints" / f"step{step:08d}" / name


def _resume(out: Path, *extra: str) -> int:
    return main(["train", "tiny", "--runs", RUN, "--out", str(out), "--quiet", *extra])


def _resumed_byte_identical(out: Path, reference: Path, written: list[Manifest], caplog) -> str:
    """`zoo train --resume`, which must end byte-identical to the uninterrupted `reference` run, every manifest
    it wrote listing each file with the reference's hash (none came from bad bytes); what it logged."""
    with caplog.at_level(logging.WARNING):
        assert _resume(out, "--resume") == 0
    assert tree_digest(_run(out)) == tree_digest(reference)
    good = read_manifest(reference).files
    assert written
    for manifest in written:
        for path, entry in manifest.files.items():
            assert entry.sha256 == good[path].sha256, f"{path} was listed with bytes of a wrong state"
    return caplog.text


def test_a_bit_flipped_in_the_checkpoint_resume_starts_from_is_skipped_and_the_run_ends_byte_identical(
        zoo_copy: Path, trained_tiny: Path, manifests_written: list[Manifest], caplog) -> None:
    cut_run_back(_run(zoo_copy), keep=7)  # 0, 1, 2, 4, 8, 12, 16: unfinished
    _flip(_checkpoint(zoo_copy, 16))
    logged = _resumed_byte_identical(zoo_copy, _run(trained_tiny), manifests_written, caplog)
    assert "resuming from step 12" in logged
    assert "step 16 (checkpoints/step00000016/model.safetensors: sha256" in logged


def test_a_finished_run_whose_final_checkpoint_does_not_verify_is_not_done(
        zoo_copy: Path, trained_tiny: Path, manifests_written: list[Manifest], caplog, capsys) -> None:
    _flip(_checkpoint(zoo_copy, 24, "optimizer.safetensors"))
    before = tree_digest(_run(zoo_copy))
    assert _resume(zoo_copy) == 2  # without --resume: refused, not reported "(done)", nothing changed
    error = capsys.readouterr().err
    assert "is not done: its final checkpoint step 24 does not verify" in error and "--resume" in error
    assert tree_digest(_run(zoo_copy)) == before
    logged = _resumed_byte_identical(zoo_copy, _run(trained_tiny), manifests_written, caplog)
    assert "(done)" not in capsys.readouterr().out
    assert "step 24 (checkpoints/step00000024/optimizer.safetensors: sha256" in logged


def test_two_corrupt_checkpoints_in_a_row_are_both_skipped_and_named(
        zoo_copy: Path, trained_tiny: Path, manifests_written: list[Manifest], caplog) -> None:
    cut_run_back(_run(zoo_copy), keep=8)  # ... 12, 16, 20
    _flip(_checkpoint(zoo_copy, 20, "state.json"), at=2)
    _flip(_checkpoint(zoo_copy, 16, "loss.jsonl"))
    logged = _resumed_byte_identical(zoo_copy, _run(trained_tiny), manifests_written, caplog)
    assert "resuming from step 12" in logged
    assert "step 20 (checkpoints/step00000020/state.json: sha256" in logged
    assert "step 16 (checkpoints/step00000016/loss.jsonl: sha256" in logged


def test_a_deleted_last_checkpoint_falls_back_to_the_latest_present_and_ends_byte_identical(
        zoo_copy: Path, trained_tiny: Path, manifests_written: list[Manifest], caplog) -> None:
    cut_run_back(_run(zoo_copy), keep=7)
    shutil.rmtree(_checkpoint(zoo_copy, 16).parent)  # copied with cp -a, then its last checkpoint deleted
    logged = _resumed_byte_identical(zoo_copy, _run(trained_tiny), manifests_written, caplog)
    assert "step 16 (checkpoints/step00000016/loss.jsonl: missing" in logged


def test_a_damaged_header_falls_back_to_the_checkpoint_before_and_ends_byte_identical(
        zoo_copy: Path, trained_tiny: Path, manifests_written: list[Manifest], caplog) -> None:
    cut_run_back(_run(zoo_copy), keep=7)
    weights = _checkpoint(zoo_copy, 16)
    weights.write_bytes(struct.pack("<Q", 1 << 40) + weights.read_bytes()[8:])  # a header length of 1 TiB
    logged = _resumed_byte_identical(zoo_copy, _run(trained_tiny), manifests_written, caplog)
    assert "step 16 (checkpoints/step00000016/model.safetensors: sha256" in logged


def test_zoo_status_and_launch_do_not_count_a_finished_run_whose_final_files_do_not_verify_as_done(
        zoo_copy: Path, trained_tiny: Path) -> None:
    spec = load_spec("tiny")
    _flip(_checkpoint(zoo_copy, 24))
    (row,) = [r for r in status(spec, zoo_copy) if r.run == RUN]
    assert row.state == "failed" and "its final checkpoint does not verify" in row.error
    (item,) = launch(spec, zoo_copy, executor="local", runs=RUN)  # resubmitted, not skipped as complete
    deadline = time.monotonic() + 300
    while (row := next(r for r in status(spec, zoo_copy) if r.run == RUN)).state != "done":
        assert row.state in ("pending", "running", "failed") and time.monotonic() < deadline, row
        time.sleep(0.5)
    assert tree_digest(_run(zoo_copy)) == tree_digest(_run(trained_tiny))
