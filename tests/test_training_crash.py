"""Crashes and bad output directories: nothing invalid is ever listed, nothing is overwritten."""

import dataclasses
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from checkpoints_manifest import read_manifest, verify
from helpers import cut_run_back, tree_digest
from training import CheckpointError, RunDirectoryConflictError, train_zoo
from training import checkpoint as checkpoint_module

KILL_SPEC = """\
name = "killme"
seeds = [0]

[data]
corpus = "stories"
n_docs = 200
vocab_size = 300
n_ctx = 16

[sizes]
1l = { n_layers = 1, d_model = 64, n_heads = 4, d_head = 16, d_mlp = 128 }

[families]
gelu = ["1l"]

[training]
steps = 60
batch_size = 8
micro_batch_size = 4

[checkpoints]
log_until = 4
every = 1
"""


def _train_cmd(spec_path, out, *extra):
    return [sys.executable, "-m", "zoo.cli", "train", str(spec_path), "--out", str(out), "--quiet", *extra]


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_is_byte_identical(tmp_path):
    """Kill `zoo train` with SIGKILL several times, mostly mid-checkpoint (one every step), and resume."""
    spec_path = tmp_path / "killme.toml"
    spec_path.write_text(KILL_SPEC)
    reference_out, out = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(_train_cmd(spec_path, reference_out), check=True)
    run = out / "killme" / "runs" / "gelu-1l-seed0"
    rng = random.Random(1234)
    kills, debris_seen = 0, 0
    while kills < 6:
        proc = subprocess.Popen(_train_cmd(spec_path, out, "--resume"))
        while not (run / "manifest.json").exists() and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            break  # finished before the kill: nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        manifest = read_manifest(run)
        listed = {f"step{s:08d}" for s in manifest.checkpoints}
        on_disk = {p.name for p in (run / "checkpoints").iterdir()}
        debris_seen += bool(on_disk - listed)
        assert verify(run) == [], "a listed file is missing or wrong after SIGKILL"
    assert kills >= 3, "training finished before it could be killed several times"
    subprocess.run(_train_cmd(spec_path, out, "--resume"), check=True)
    assert tree_digest(run) == tree_digest(reference_out / "killme" / "runs" / "gelu-1l-seed0")
    print(f"SIGKILL trials: {kills}, of which {debris_seen} left an unlisted (half-written) checkpoint")


def test_disk_full_during_a_checkpoint_write_keeps_earlier_checkpoints_valid(
        tiny_spec, trained_tiny, tmp_path, monkeypatch):
    real_save = checkpoint_module.save_file
    calls = {"n": 0}

    def save_until_disk_full(tensors, path):
        calls["n"] += 1
        if calls["n"] == 9:  # the fifth checkpoint's optimizer file
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real_save(tensors, path)

    monkeypatch.setattr(checkpoint_module, "save_file", save_until_disk_full)
    with pytest.raises(CheckpointError, match=r"checkpoint step \d+ .*disk is full.*Earlier checkpoints are intact"):
        train_zoo(tiny_spec, tmp_path, runs="solu-1l-seed0", progress=False)
    run = tmp_path / "tiny" / "runs" / "solu-1l-seed0"
    assert verify(run) == []
    assert len(read_manifest(run).checkpoints) == 4
    assert not any(p.name.endswith(".partial") for p in (run / "checkpoints").iterdir())

    monkeypatch.setattr(checkpoint_module, "save_file", real_save)  # space is back
    train_zoo(tiny_spec, tmp_path, runs="solu-1l-seed0", resume=True, progress=False)
    assert tree_digest(run) == tree_digest(trained_tiny / "tiny" / "runs" / "solu-1l-seed0")


def test_output_directory_of_another_run_is_refused_and_left_untouched(tiny_spec, trained_tiny, tmp_path):
    run = tmp_path / "tiny" / "runs" / "gelu-1l-seed0"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    with pytest.raises(RunDirectoryConflictError, match="not a zoo run.*notes.txt"):
        train_zoo(tiny_spec, tmp_path, runs="gelu-1l-seed0", progress=False)
    assert (run / "notes.txt").read_text() == "mine"

    other = tmp_path / "other"
    train_zoo(tiny_spec, other, runs="gelu-1l-seed0", progress=False)
    before = tree_digest(other)
    changed = dataclasses.replace(tiny_spec, optimizer=dataclasses.replace(tiny_spec.optimizer, lr=0.5))
    with pytest.raises(RunDirectoryConflictError, match="describes a different run"):
        train_zoo(changed, other, runs="gelu-1l-seed0", progress=False)
    assert tree_digest(other) == before


def test_an_unfinished_run_is_not_restarted_without_resume(tiny_spec, trained_tiny, tmp_path):
    shutil.copytree(trained_tiny / "tiny", tmp_path / "tiny")
    run = tmp_path / "tiny" / "runs" / "gelu-1l-seed0"
    cut_run_back(run, keep=3)
    before = tree_digest(run)
    with pytest.raises(RunDirectoryConflictError, match="checkpoints up to step 2; pass --resume"):
        train_zoo(tiny_spec, tmp_path, runs="gelu-1l-seed0", progress=False)
    assert tree_digest(run) == before
