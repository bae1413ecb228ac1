"""`zoo launch` on the real local Slurm cluster (and the local executor): every way a job can be
cut — preemption, a time limit, data parallel over processes — ends byte-identical to `zoo train`.

Each test trains its reference in the same test as the jobs, so both record the same
code_version in manifest.json (a commit in between would change it) and the whole run
directories are compared, manifest included.

A test that must interrupt a job mid-run freezes the job's process (SIGSTOP) just past a
checkpoint until the interrupt (Slurm sends SIGCONT with each signal it delivers):
however fast the machine, the job cannot finish in between, and Slurm's own time-limit
warning, sent on its 30 s timer, lands mid-run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import submitit
from helpers import tree_digest
from slurm import needs_slurm, slurm_cluster  # noqa: F401 (the fixture needs_slurm uses)

from checkpoints_manifest import ManifestNotFoundError, code_version, read_manifest
from training import train_zoo
from zoo.cli import launch as launch_commands
from zoo.launch import ClusterResourceError, LaunchConflictError, Resources, RunStatus, launch, status

JOB_TIMEOUT_S = 240
DP_RUN = "solu-1l-seed0"
LONG_RUN = "gelu-1l-seed0"


@pytest.fixture(scope="module")
def dp_spec(tiny_spec):
    """tiny with 4 micro-batches per update (1×4, 2×2 and 4×1 are all possible), over 300 steps: long enough
    for gradient clipping, active in most of them, to have shown a difference in the gradients' memory
    layout (tests/test_grad_layout.py)."""
    return dataclasses.replace(tiny_spec, training=dataclasses.replace(tiny_spec.training, micro_batch_size=2,
                                                                       steps=300),
                               checkpoints=dataclasses.replace(tiny_spec.checkpoints, every=100))


def _clipped_updates(spec, out: Path, run: str) -> int:
    """How many updates of the run had their gradient clipped."""
    folder = out / spec.name / "runs" / run / "checkpoints"
    records = [json.loads(line) for step in sorted(folder.iterdir())
               for line in (step / "loss.jsonl").read_text().splitlines()]
    assert len(records) == spec.training.steps
    return sum(r["grad_norm"] > spec.optimizer.grad_clip for r in records)


@pytest.fixture(scope="module")
def long_spec(tiny_spec):
    """A run with room to be interrupted twice: checkpoints at 0, 1, 24, 48, 72, 96."""
    return dataclasses.replace(
        tiny_spec, training=dataclasses.replace(tiny_spec.training, steps=96),
        checkpoints=dataclasses.replace(tiny_spec.checkpoints, log_until=1, every=24))


def _runs(out: Path, spec) -> dict[str, str]:
    return tree_digest(out / spec.name / "runs")


def _assert_same_as_trained_now(spec, launched: Path, reference: Path, since: str, runs: str | None = None,
                                ) -> None:
    """The launched run directories equal the uninterrupted single-process ones, trained now, byte for byte.

    manifest.json records how a run was split over processes (world size, micro-batches per
    rank), which data parallel changes and nothing else may, and the code_version (commit,
    dirty flag) current when each run started. Only if it changed during the test (`since`:
    the one at its start), as when a commit lands while the jobs run, may that field differ too.
    """
    train_zoo(spec, reference, runs=runs, progress=False)
    got, want = _runs(launched, spec), _runs(reference, spec)
    manifests = [name for name in want if name.endswith("/manifest.json")]
    assert {k: v for k, v in got.items() if k not in manifests} == {
        k: v for k, v in want.items() if k not in manifests}
    for name in manifests:
        got_m, want_m = (_comparable(json.loads((root / spec.name / "runs" / name).read_text()),
                                     code_changed=code_version() != since) for root in (launched, reference))
        assert got_m == want_m, name


def _comparable(manifest: dict, *, code_changed: bool) -> dict:
    split = ("world_size", "micro_batches_per_rank")
    environment = {k: v for k, v in manifest["environment"].items() if k not in split}
    return {**manifest, "environment": environment, **({"code_version": None} if code_changed else {})}


def _wait_done(spec, out: Path) -> list[RunStatus]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        rows = [r for r in status(spec, out) if r.state != "not launched"]
        if all(r.state in ("done", "failed") for r in rows):
            return rows
        assert time.monotonic() < deadline, rows
        time.sleep(0.3)


def _wait_step(spec, out: Path, run: str, after: int) -> RunStatus:
    """The run's status once it lists a checkpoint later than step `after`."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        row = next(r for r in status(spec, out) if r.run == run)
        if (row.last_step if row.last_step is not None else -1) > after:
            return row
        assert row.state != "failed", row
        assert time.monotonic() < deadline, row
        time.sleep(0.1)


def _slurm_job(out: Path, spec, job_id: str) -> submitit.SlurmJob:
    return submitit.SlurmJob(folder=out / spec.name / "launch" / "logs", job_id=job_id)


def _task_pid(job_id: str, not_pid: int | None = None) -> int:
    """The pid of the Slurm job's (single) task, the python process submitit runs (not `not_pid`)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        for entry in Path("/proc").iterdir():
            try:
                env = (entry / "environ").read_bytes().split(b"\0")
                cmdline = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if (f"SLURM_JOB_ID={job_id}".encode() in env and b"SLURM_STEP_ID=0" in env
                    and b"submitit" in cmdline and int(entry.name) != not_pid):
                return int(entry.name)
        assert time.monotonic() < deadline, f"no task process of job {job_id}"
        time.sleep(0.1)


def _signalled(pid: int, signum: int) -> bool:
    """`signum` waits for the stopped process `pid`, or it has been handled (Slurm may send SIGCONT too)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return True
    fields = dict(line.split(":", 1) for line in lines)
    return bool(int(fields["ShdPnd"], 16) & (1 << (signum - 1))) or fields["State"].split()[0] not in "Tt"


def _frozen_mid_run(spec, out: Path, run: str, after: int, job_id: str, not_pid: int | None = None,
                    ) -> tuple[int, int]:
    """SIGSTOP the job's task as soon as the run lists a checkpoint later than `after`: (pid, that step).

    The manifest is polled directly (no scheduler round trip), so the job is frozen a
    few steps past that checkpoint, well before the end of the run.
    """
    pid = _task_pid(job_id, not_pid)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        try:
            steps = read_manifest(out / spec.name / "runs" / run).checkpoints
        except ManifestNotFoundError:
            steps = []
        if steps and steps[-1] > after:
            break
        assert time.monotonic() < deadline and Path(f"/proc/{pid}").exists(), status(spec, out)
        time.sleep(0.02)
    os.kill(pid, signal.SIGSTOP)
    row = next(r for r in status(spec, out) if r.run == run)
    assert row.state == "running" and row.last_step < spec.training.steps, row
    return pid, row.last_step


@needs_slurm
def test_launch_tiny_on_slurm_is_byte_identical_to_train_and_nothing_is_launched_twice(
        tiny_spec, tmp_path, capsys):
    out, since = tmp_path / "launched", code_version()
    launched = launch(tiny_spec, out, resources=Resources(array_parallelism=2))

    assert [item.run for item in launched] == [run.name for run in tiny_spec.runs()]
    array = {item.job_id.split("_")[0] for item in launched}
    assert len(array) == 1  # one job array
    assert next(r for r in status(tiny_spec, out) if r.run == launched[-1].run).state == "pending"  # %2
    with pytest.raises(LaunchConflictError, match=re.escape(f"{launched[-1].run} (job {launched[-1].job_id})")):
        launch(tiny_spec, out)  # a second launch while the first one's jobs are queued

    rows = _wait_done(tiny_spec, out)

    assert [r.state for r in rows] == ["done"] * 6 and all(r.last_step == 24 for r in rows)
    reference = tmp_path / "reference"
    _assert_same_as_trained_now(tiny_spec, out, reference, since)
    assert tree_digest(out / "tiny" / "data") == tree_digest(reference / "tiny" / "data")
    jobs = (out / "tiny" / "launch" / "jobs.json").read_bytes()
    assert launch(tiny_spec, out) == []  # complete: nothing resubmitted
    assert (out / "tiny" / "launch" / "jobs.json").read_bytes() == jobs
    assert _zoo(["status", "tiny", "--out", str(out)]) == 0
    shown = capsys.readouterr().out.splitlines()[1:]
    assert len(shown) == 6 and all(" done " in line and "24/24" in line for line in shown)
    assert all(f"{r.loss:.4f}" in line for r, line in zip(rows, shown))


@needs_slurm
def test_preempted_twice_the_run_resumes_and_ends_byte_identical(long_spec, tmp_path):
    out, since = tmp_path / "launched", code_version()
    (item,) = launch(long_spec, out, runs=LONG_RUN)
    job = _slurm_job(out, long_spec, item.job_id)
    seen, pid = 0, None
    for _ in range(2):  # preempt after the first checkpoint past step 0, then again after resuming
        pid, seen = _frozen_mid_run(long_spec, out, LONG_RUN, seen, item.job_id, not_pid=pid)
        job._interrupt()  # what Slurm does on preemption: SIGTERM, then submitit's USR2
        with contextlib.suppress(ProcessLookupError):  # Slurm sends SIGCONT with its signals
            os.kill(pid, signal.SIGCONT)

    (row,) = _wait_done(long_spec, out)

    assert row.state == "done"
    assert job.stdout().count("this job is preempted") == 2 and job.stdout().count("Requeued job") == 2
    _assert_same_as_trained_now(long_spec, out, tmp_path / "reference", since, LONG_RUN)


@needs_slurm
def test_a_time_limit_shorter_than_the_run_requeues_and_ends_byte_identical(long_spec, tmp_path):
    # A 2-minute limit warns (USR2) 60 s before the end, on Slurm's 30 s timer: 30-60 s after the
    # start, so never before submitit has installed its handler (a 1-minute limit can warn within
    # a second of the start, while the job is still importing). Frozen mid-run, the job gets the
    # warning before it could finish, however fast the machine.
    out, since = tmp_path / "launched", code_version()
    (item,) = launch(long_spec, out, runs=LONG_RUN, resources=Resources(time_min=2))
    pid, _ = _frozen_mid_run(long_spec, out, LONG_RUN, 0, item.job_id)
    deadline = time.monotonic() + 150
    while not _signalled(pid, signal.SIGUSR2):
        assert time.monotonic() < deadline, "Slurm sent no time-limit warning"
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)

    (row,) = _wait_done(long_spec, out)

    assert row.state == "done"
    assert "this job is timed-out" in _slurm_job(out, long_spec, item.job_id).stdout()
    _assert_same_as_trained_now(long_spec, out, tmp_path / "reference", since, LONG_RUN)


@needs_slurm
def test_data_parallel_2x2_on_slurm_is_byte_identical_to_1x4(dp_spec, tmp_path):
    out, since = tmp_path / "launched", code_version()
    launch(dp_spec, out, runs=DP_RUN, resources=Resources(tasks_per_node=2))
    assert [r.state for r in _wait_done(dp_spec, out)] == ["done"]
    _assert_same_as_trained_now(dp_spec, out, tmp_path / "reference", since, DP_RUN)


@pytest.mark.parametrize("processes", [2, 4])
def test_data_parallel_with_the_local_executor_is_byte_identical_to_1x4(processes, dp_spec, tmp_path):
    out, since = tmp_path / "launched", code_version()
    launch(dp_spec, out, executor="local", runs=DP_RUN, resources=Resources(tasks_per_node=processes))
    assert [r.state for r in _wait_done(dp_spec, out)] == ["done"]
    _assert_same_as_trained_now(dp_spec, out, tmp_path / "reference", since, DP_RUN)
    environment = read_manifest(out / dp_spec.name / "runs" / DP_RUN).environment
    assert (environment.world_size, environment.micro_batches_per_rank) == (processes, 4 // processes)
    assert _clipped_updates(dp_spec, out, DP_RUN) > 100


@needs_slurm
def test_unknown_partition_is_refused_naming_the_partitions_that_exist(tiny_spec, tmp_path):
    with pytest.raises(ClusterResourceError, match=r"'gpu-large' does not exist.*debug"):
        launch(tiny_spec, tmp_path, resources=Resources(partition="gpu-large"))
    assert not (tmp_path / "tiny").exists()


@needs_slurm
@pytest.mark.parametrize("resources, named", [
    (Resources(cpus_per_task=512), "CPUs per node"),
    (Resources(gpus_per_node=1), "GPUs per node"),
    (Resources(nodes=64), "node"),
])
def test_resources_the_cluster_lacks_are_refused_before_submitting(resources, named, tiny_spec, tmp_path):
    with pytest.raises(ClusterResourceError, match=named):
        launch(tiny_spec, tmp_path, resources=resources)
    assert not (tmp_path / "tiny").exists()


def test_a_job_that_fails_for_a_real_error_is_reported_failed_not_retried(tiny_spec, tmp_path, capsys):
    run_dir = tmp_path / "tiny" / "runs" / DP_RUN
    run_dir.mkdir(parents=True)
    (run_dir / "notes.txt").write_text("not a run")  # the job refuses to write into it
    (item,) = launch(tiny_spec, tmp_path, executor="local", runs=DP_RUN)

    (row,) = _wait_done(tiny_spec, tmp_path)

    assert row.state == "failed" and "not a zoo run" in row.error
    assert "Requeued" not in submitit.LocalJob(tmp_path / "tiny" / "launch" / "logs", item.job_id).stdout()
    assert _zoo(["status", "tiny", "--out", str(tmp_path)]) == 1  # a run failed
    shown = capsys.readouterr().out
    assert f"{DP_RUN} " in shown and " failed " in shown and "error: " in shown and "not launched" in shown


def _zoo(argv: list[str]) -> int:
    """`zoo launch|status ARGS` through the subcommands' own parsers."""
    parser = argparse.ArgumentParser(prog="zoo")
    launch_commands.add_parsers(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.func(args)
