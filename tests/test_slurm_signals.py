"""A SIGTERM from Slurm (scancel, scontrol requeue, preemption) stops training at the next step boundary:
nothing is saved at the signal, so training on until the kill wait (30 s) would be wasted. A cancelled job
shows as cancelled, not failed; `zoo status` exits non-zero only when a run failed."""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from slurm import needs_slurm, slurm_cluster  # noqa: F401 (the fixture needs_slurm uses)

from checkpoints_manifest import ManifestNotFoundError, read_manifest
from training import load_spec
from zoo.cli import launch as launch_commands
from zoo.launch import launch, status

RUN = "gelu-1l-seed0"
TINY = Path(__file__).resolve().parent.parent / "training" / "specs" / "tiny.toml"
TIMEOUT_S = 240
STOPPED_WITHIN_S = 15  # a step takes milliseconds; Slurm's kill wait is 30 s


def _zoo_status(spec_path: Path, out: Path) -> int:
    parser = argparse.ArgumentParser(prog="zoo")
    launch_commands.add_parsers(parser.add_subparsers(required=True))
    args = parser.parse_args(["status", str(spec_path), "--out", str(out)])
    return args.func(args)


@needs_slurm
def test_a_cancelled_job_stops_at_the_next_step_and_shows_as_cancelled(tmp_path: Path) -> None:
    spec_path = tmp_path / "long.toml"  # tiny, but it would train for minutes
    spec_path.write_text(TINY.read_text().replace("steps = 24", "steps = 20000").replace("every = 4", "every = 1000"))
    spec = load_spec(spec_path)
    (item,) = launch(spec, tmp_path, runs=RUN)
    run_dir = tmp_path / "tiny" / "runs" / RUN
    deadline = time.monotonic() + TIMEOUT_S
    while True:  # training, past its first checkpoints
        try:
            if read_manifest(run_dir).checkpoints[-1:] == [4]:
                break
        except ManifestNotFoundError:
            pass
        assert time.monotonic() < deadline, status(spec, tmp_path)
        time.sleep(0.1)

    cancelled = time.monotonic()
    subprocess.run(["scancel", item.job_id], check=True)
    while subprocess.run(["squeue", "-h", "-j", item.job_id], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() - cancelled < STOPPED_WITHIN_S, "the job trained on after SIGTERM"
        time.sleep(0.2)

    (row,) = [r for r in status(spec, tmp_path) if r.run == RUN]
    assert row.state == "cancelled" and row.error is None, row
    assert 4 <= row.last_step < spec.training.steps
    assert _zoo_status(spec_path, tmp_path) == 0  # cancelled is not failed
