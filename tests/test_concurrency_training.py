"""Two trainers on one run, and readers during training: a file lock, and atomic manifests.

The trainer is a real `zoo train` process; this test process is the second trainer and the reader.
"""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checkpoints_manifest import environment_record, read_manifest, verify
from data_index import TokenStore
from training import RunLockedError, load_spec
from training.loop import model_config, run_config, run_path
from training.run_dir import open_run
from helpers import one_run_spec
from zoo.cli import main

REPO = Path(__file__).resolve().parent.parent

BUSY_SPEC = one_run_spec("busy", steps=5000)


def _wait_for(predicate, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, f"the trainer exited early: {proc.communicate()}"
        assert time.monotonic() < deadline, "the trainer did not get going in time"
        time.sleep(0.05)


def _open(spec, run, out: Path):
    """Open the run for training, as a second trainer would."""
    store = TokenStore.open(out / spec.name / "data")
    cfg = run_config(spec, run, model_config(spec, run, store.vocab_size))
    return open_run(run_path(out, spec, run), run=run.full_name, config=cfg, dataset_fingerprint=store.fingerprint,
                    environment=environment_record("cpu"), resume=True, final_step=spec.training.steps)


@pytest.mark.slow
def test_a_second_trainer_is_refused_and_readers_never_see_a_torn_manifest(tmp_path, capsys):
    spec_path = tmp_path / "busy.toml"
    spec_path.write_text(BUSY_SPEC)
    out = tmp_path / "out"
    trainer = subprocess.Popen([sys.executable, "-m", "zoo.cli", "train", str(spec_path), "--out", str(out),
                                "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        spec = load_spec(spec_path)
        (run,) = spec.runs()
        path = run_path(out, spec, run)
        _wait_for(lambda: (path / "manifest.json").exists(), trainer, timeout_s=120)

        # A second trainer (this process) on the same run: refused by name, through the CLI and the API.
        code = main(["train", str(spec_path), "--out", str(out), "--quiet", "--resume"])
        err = capsys.readouterr().err
        assert code == 2 and "busy-gelu-1l-seed0" in err and "another process" in err, err
        with pytest.raises(RunLockedError, match="busy-gelu-1l-seed0"):
            _open(spec, run, out)

        # Readers while checkpoints are committed (one per update): every read is a whole manifest,
        # old or new, and every file it lists is already complete.
        reads, versions, first = 0, set(), read_manifest(path).checkpoints[-1]
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline or len(versions) < 5:
            manifest = read_manifest(path)
            assert verify(path, manifest) == []
            versions.add(manifest.checkpoints[-1])
            reads += 1
            assert trainer.poll() is None
        assert max(versions) > first
        print(f"manifest reads during training: {reads}, distinct manifests seen: {len(versions)}, none torn")
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
    # The lock dies with its holder: the run opens again, and what was listed is intact.
    with _open(spec, run, out) as rd:
        assert rd.latest_step == read_manifest(path).checkpoints[-1]
    assert verify(path) == []
