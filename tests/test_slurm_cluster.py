"""The local Slurm cluster (scripts/slurm_up.sh) runs what `zoo launch` needs from it:
submitit jobs, job arrays, multi-task jobs, and preempted jobs requeued with their state."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from slurm import (  # noqa: F401 (slurm_cluster: the fixture needs_slurm uses)
    SLURM_UP,
    SlurmJobLost,
    needs_slurm,
    require_slurm,
    slurm_cluster,
    wait_result,
)

# Jobs unpickle this module's functions in a fresh interpreter that cannot import
# the tests folder: ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

JOB_TIMEOUT_S = 60


def _executor(folder: Path) -> submitit.AutoExecutor:
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    # Above 10 min: submitit counts any USR2 before min(0.8 T, T - 10 min) as a
    # preemption; with T <= 10 min every signal would count as a timeout.
    executor.update_parameters(timeout_min=60, cpus_per_task=1)
    return executor


def _add(a: int, b: int) -> tuple[int, str]:
    return a + b, sys.executable


def _rank() -> tuple[int, int]:
    env = submitit.JobEnvironment()
    return env.global_rank, env.num_tasks


class _Counter(submitit.helpers.Checkpointable):
    """Counts to `total` slowly, writing progress so a test can interrupt it mid-way.

    `starts` records the count each run began from: a requeue that restored the
    checkpointed state shows up as a second start above zero.
    """

    def __init__(self, progress: Path, total: int) -> None:
        self.progress = progress
        self.total = total
        self.count = 0
        self.starts: list[int] = []

    def __call__(self) -> tuple[list[int], int]:
        self.starts.append(self.count)
        while self.count < self.total:
            time.sleep(0.1)
            self.count += 1
            self.progress.write_text(str(self.count))
        return self.starts, self.count


def test_failed_cluster_start_skips_locally_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = subprocess.CompletedProcess(["slurm_up.sh"], 1, "slurm_up: starting slurmd\n", "boom\n")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_slurm(failed)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="(?s)starting slurmd.*boom"):
        require_slurm(failed)


@needs_slurm
def test_slurm_up_is_idempotent_and_quick_when_up() -> None:
    started = time.monotonic()
    done = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True, check=True)
    assert time.monotonic() - started < 5
    assert not any(word in done.stdout for word in ("installing", "starting", "writing", "resumed"))


@needs_slurm
def test_submitted_function_returns_its_result_from_the_venv_python(tmp_path: Path) -> None:
    job = _executor(tmp_path).submit(_add, 2, 3)
    assert wait_result(job, JOB_TIMEOUT_S) == (5, sys.executable)


@needs_slurm
def test_job_array_returns_every_result_in_order(tmp_path: Path) -> None:
    executor = _executor(tmp_path)
    executor.update_parameters(slurm_array_parallelism=2)
    jobs = executor.map_array(pow, [1, 2, 3, 4], [2, 2, 2, 2])
    assert len({job.job_id.split("_")[0] for job in jobs}) == 1  # one array, not four jobs
    assert [wait_result(job, JOB_TIMEOUT_S) for job in jobs] == [1, 4, 9, 16]


@needs_slurm
def test_two_task_job_runs_one_process_per_rank(tmp_path: Path) -> None:
    executor = _executor(tmp_path)
    executor.update_parameters(tasks_per_node=2)
    assert wait_result(executor.submit(_rank), JOB_TIMEOUT_S) == [(0, 2), (1, 2)]


@needs_slurm
def test_preempted_checkpointable_job_requeues_and_resumes_from_its_state(tmp_path: Path) -> None:
    progress = tmp_path / "progress"
    job = _executor(tmp_path / "log").submit(_Counter(progress, total=20))
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not (progress.exists() and int(progress.read_text() or 0) >= 5):
        assert time.monotonic() < deadline, "job never started counting"
        time.sleep(0.1)
    job._interrupt()  # what Slurm does on preemption: SIGTERM, then submitit's USR2

    starts, count = wait_result(job, JOB_TIMEOUT_S)

    assert count == 20
    assert len(starts) == 2 and starts[0] == 0 and 5 <= starts[1] < 20, starts
    assert "Requeued job" in job.stdout()


@needs_slurm
def test_cancelled_job_is_reported_instead_of_waited_on_forever(tmp_path: Path) -> None:
    job = _executor(tmp_path).submit(time.sleep, 600)
    job.cancel()
    with pytest.raises(SlurmJobLost, match="CANCELLED"):
        wait_result(job, JOB_TIMEOUT_S)
