"""Test support for the local one-node Slurm cluster that scripts/slurm_up.sh starts.

Decorate each test that submits to Slurm with `@needs_slurm` and import the
`slurm_cluster` fixture into its module (or list `pytest_plugins = ["slurm"]` in a
conftest.py). The fixture starts the cluster once per session and skips where
Slurm cannot run (not root, not Debian) -- except under CI=true, where Slurm tests
must never skip: there it fails, with the script's output.

The cluster keeps no accounting (no slurmdbd), so `sacct` fails and submitit's
`job.state` stays "UNKNOWN": `job.result()` of a job that died without writing its
result would wait forever. `wait_result` has a deadline and asks the scheduler
itself (`squeue`, `scontrol show job`).
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest
import submitit

_T = TypeVar("_T")
SLURM_UP = Path(__file__).resolve().parent.parent / "scripts" / "slurm_up.sh"
_INSTALL_TIMEOUT_S = 900
_RESULT_GRACE_S = 2.0
# Final Slurm job states (a requeued job passes through none of these).
_ENDED = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
     "DEADLINE", "PREEMPTED", "GONE"}
)


@functools.cache
def start_slurm() -> subprocess.CompletedProcess[str]:
    """Run scripts/slurm_up.sh once per process; the result says whether Slurm is up."""
    try:
        return subprocess.run(
            ["bash", str(SLURM_UP)],
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess([str(SLURM_UP)], 1, "", f"{SLURM_UP}: {error}")


def slurm_available() -> bool:
    """True when the local cluster is up (starting it if needed, once per process)."""
    return start_slurm().returncode == 0


def require_slurm(done: subprocess.CompletedProcess[str]) -> None:
    """Skip unless slurm_up.sh succeeded; under CI=true fail instead, with its output."""
    if done.returncode == 0:
        return
    message = f"{SLURM_UP} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true requires Slurm tests to run, but the cluster did not start.\n{message}")
    pytest.skip(f"local Slurm cluster unavailable: {message.strip().splitlines()[-1]}")


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    """Make sure the local Slurm cluster runs (see require_slurm for when it cannot)."""
    require_slurm(start_slurm())


def needs_slurm(test: _T) -> _T:
    """Mark a test `slurm` and give it the `slurm_cluster` fixture."""
    return pytest.mark.slurm(pytest.mark.usefixtures("slurm_cluster")(test))


class SlurmJobLost(RuntimeError):
    """A Slurm job ended (or hung) without leaving submitit a result."""


def _scheduler_state(job_id: str) -> str:
    """The job's state per slurmctld: squeue while queued/running, then scontrol."""
    queued = subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True, check=False
    ).stdout.strip()
    if queued:
        return queued
    shown = subprocess.run(
        ["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, check=False
    ).stdout
    for field in shown.split():
        if field.startswith("JobState="):
            return field.removeprefix("JobState=")
    return "GONE"


def _log_tail(job: submitit.Job[Any]) -> str:
    tails = []
    for path in (job.paths.stdout, job.paths.stderr):
        if path.exists():
            tails.append(f"--- {path}\n" + "\n".join(path.read_text().splitlines()[-20:]))
    return "\n".join(tails)


def wait_result(job: submitit.Job[Any], timeout_s: float) -> Any:
    """job.result(), but fails with the scheduler state and logs instead of hanging.

    A multi-task job gives the list of its tasks' results, like `job.results()`.
    """
    deadline = time.monotonic() + timeout_s
    ended_at = None
    results = [job.task(k).paths.result_pickle for k in range(job.num_tasks)]
    while not all(path.exists() for path in results):
        state = _scheduler_state(job.job_id)
        if state not in _ENDED:
            ended_at = None
        elif ended_at is None:
            ended_at = time.monotonic()  # give the result file a moment to appear
        elif time.monotonic() - ended_at > _RESULT_GRACE_S:
            raise SlurmJobLost(f"job {job.job_id} ended {state} without a result\n{_log_tail(job)}")
        if time.monotonic() > deadline:
            raise SlurmJobLost(
                f"job {job.job_id} still {state} after {timeout_s:.0f}s\n{_log_tail(job)}"
            )
        time.sleep(0.25)
    return job.result() if job.num_tasks == 1 else job.results()
