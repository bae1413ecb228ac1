"""Faults while training: SIGKILL at every phase of a checkpoint commit, a full disk, a read-only disk.

After every fault the run directory verifies (nothing listed is missing or wrong),
nothing unlisted is trusted, and resuming ends byte-identical to a run that never failed.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checkpoints_manifest import read_manifest, verify
from helpers import leave_room, one_run_spec, tmpfs, tree_digest
from zoo.cli import main

REPO = Path(__file__).resolve().parent.parent

KILL_SPEC = one_run_spec("crash", steps=44)


@pytest.mark.slow
def test_sigkill_at_every_phase_of_a_checkpoint_commit_then_resume_is_byte_identical(tmp_path):
    spec = tmp_path / "crash.toml"
    spec.write_text(KILL_SPEC)
    result = tmp_path / "crash-result.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    subprocess.run([sys.executable, "-m", "faults.crash_server", str(spec), str(tmp_path / "ref"),
                    str(tmp_path / "killed"), str(result), "gelu-1l-seed0", "crash"],
                   cwd=REPO, env=env, check=True, timeout=300)
    report = json.loads(result.read_text())
    kills = report["kills"]
    for kill in kills:
        assert kill["how"] == "killed" and kill["detail"] == kill["point"], kill
        assert kill["verify"] == [], kill
        assert kill["missing_listed_dirs"] == [], kill
    # every probed call of a commit was a kill point: the checkpoint's files, its rename, the manifest's
    window = report["commit_window"]
    assert {"save_file:.model.safetensors.*.tmp", "replace:.stepN.partial->stepN",
            "replace:.manifest.json.*.tmp->manifest.json", "write_manifest:returned"} <= set(window)
    assert report["final"] == ["exited", "0"]
    run = Path("runs") / "gelu-1l-seed0"
    assert tree_digest(tmp_path / "killed" / "crash" / run) == tree_digest(tmp_path / "ref" / "crash" / run)
    with_debris = sum(bool(k["debris"] or k["stray_temp_files"]) for k in kills)
    print(f"SIGKILL points tried: {len(kills)}, survived: {len(kills)} "
          f"({len(window)} phases of one commit; {with_debris} kills left debris that resume discarded)")


RUN = "solu-1l-seed0"


def _remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def _checkpoint_kib(reference_run: Path) -> int:
    """The tmpfs space (whole 4 KiB pages) one checkpoint of the reference run takes."""
    files = (reference_run / "checkpoints" / "step00000004").iterdir()
    return sum(-(-f.stat().st_size // 4096) * 4 for f in files)


def _free_kib(disk: Path) -> int:
    st = os.statvfs(disk)
    return st.f_bavail * st.f_frsize // 1024


def _train(out: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["train", "tiny", "--runs", RUN, "--out", str(out), "--quiet", *extra])
    return code, capsys.readouterr().err


@pytest.mark.slow
def test_full_then_read_only_disk_give_clear_errors_and_resume_ends_byte_identical(trained_tiny, tmp_path, capsys):
    reference = tree_digest(trained_tiny / "tiny" / "runs" / RUN)
    with tmpfs(tmp_path / "disk", 4096) as disk:
        # A read-only disk before anything exists: a clear error, nothing written.
        _remount(disk, "ro")
        code, err = _train(disk, capsys)
        assert code == 2 and "read-only" in err and "tiny" in err, err
        _remount(disk, "rw")
        assert list(disk.iterdir()) == []

        # The disk fills during training. Each time space is added the run resumes, goes further
        # and fills it again, failing at another phase of a commit (a checkpoint file, the manifest).
        size, faults, listed = 256, [], []
        leave_room(disk, size)
        for part in ("data", "index/data0"):  # the dataset (~100 KiB) is there already
            shutil.copytree(trained_tiny / "tiny" / part, disk / "tiny" / part)
        run = disk / "tiny" / "runs" / RUN
        while True:
            leave_room(disk, size)
            code, err = _train(disk, capsys, "--resume")
            if code == 0:
                break
            assert code == 2 and "the disk is full" in err and "--resume" in err, err
            assert "Traceback" not in err
            assert verify(run) == []
            assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".partial")]
            steps = read_manifest(run).checkpoints
            assert steps[: len(listed)] == listed, "a full disk lost a listed checkpoint"
            faults.append(err)
            listed = steps
            if len(faults) % 2:  # room for exactly the next checkpoint: the manifest update finds the disk full
                size += _checkpoint_kib(trained_tiny / "tiny" / "runs" / RUN) - _free_kib(disk)
            else:  # room for most of a checkpoint (~160 KiB): the next fault lands in one of its files
                size += 150

            if len(faults) == 2:  # the disk turns read-only mid-run: refused, nothing changes
                before = tree_digest(run)
                _remount(disk, "ro")
                code, err = _train(disk, capsys, "--resume")
                assert code == 2 and "read-only" in err and "--resume" in err, err
                _remount(disk, "rw")
                assert tree_digest(run) == before and verify(run) == []
        assert tree_digest(run) == reference
        assert any("could not write checkpoint" in f for f in faults)
        assert any("could not list checkpoint" in f for f in faults)  # the manifest update failed
        phases = {"checkpoint file" if "could not write checkpoint" in f else "manifest" for f in faults}
        print(f"disk-full faults injected: {len(faults)} ({', '.join(sorted(phases))}), survived: {len(faults)}; "
              f"read-only faults injected: 2, survived: 2")
