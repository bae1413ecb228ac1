"""`zoo launch`: train a zoo's runs as submitit jobs (Slurm or local), preemption-safe, bitwise.

One job per incomplete run, submitted as one job array. Each job is
checkpointable: on preemption or timeout submitit requeues it and it resumes from
the run's latest *scheduled* checkpoint. Nothing is saved at the signal: an extra
checkpoint would change the scheduled ones' bytes (each holds the loss log since
the previous checkpoint) and the manifest's list, while the dense schedule loses at
most one interval of work. So a preempted run ends byte-identical to an
uninterrupted one. For the same reason a SIGTERM (scancel, scontrol requeue, preemption)
stops training at the next step boundary rather than after the scheduler's kill wait;
`zoo status` then shows the run cancelled (or pending, once requeued). A real error is
not retried: the job fails and `zoo status` shows the error; `zoo launch` again
resubmits exactly the runs that are not done.

Per zoo, OUT/ZOO/launch/ holds jobs.json (job id of each run, written atomically),
state/RUN.json (what each job last reported: running, failed + error), logs/
(submitit's) and .lock (held while submitting).
"""

from __future__ import annotations

import json
import signal
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from checkpoints_manifest import LockHeldError, ManifestNotFoundError, atomic_write_json, held_lock, read_manifest
from data_index import prepare_store
from training import ZooSpec, train_run
from training.checkpoint import checkpoint_dir_name, read_loss_stretch
from training.determinism import restart_with_cpu_level
from training.distributed import close_data_parallel, init_data_parallel
from training.errors import StoppedError
from training.loop import check_run_fits, prepare_step_index, run_path, zoo_dir
from training.resume import checkpoint_problems
from training.spec import micro_batches_problem
from zoo.launch.cluster import ClusterResourceError, LaunchError, check_resources, job_states

__all__ = ["ClusterResourceError", "LaunchConflictError", "LaunchError", "Launched", "Resources", "RunStatus",
           "TrainJob", "launch", "launch_dir", "status"]

EXECUTORS = ("slurm", "local")
_ACTIVE = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
           "RESIZING", "SUSPENDED", "SIGNALING", "STAGE_OUT"}


class LaunchConflictError(LaunchError):
    """Jobs of this zoo are still queued or running (or another launch is submitting)."""


@dataclass(frozen=True)
class Resources:
    """What each job asks the scheduler for. tasks_per_node × nodes > 1 means data parallel."""

    partition: str | None = None
    time_min: int = 60
    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    array_parallelism: int = 256
    signal_delay_s: int = 90  # Slurm warns this long before the time limit (at most half of it); the job requeues

    @property
    def world_size(self) -> int:
        return self.nodes * self.tasks_per_node


@dataclass(frozen=True)
class Launched:
    """One submitted run: its name and job id."""

    run: str
    job_id: str


@dataclass(frozen=True)
class RunStatus:
    """A run's state: not launched, pending, running, done, cancelled or failed (with the error)."""

    run: str
    state: str
    job_id: str | None
    last_step: int | None
    final_step: int
    loss: float | None
    error: str | None = None


def launch_dir(out: Path, spec: ZooSpec) -> Path:
    return zoo_dir(out, spec) / "launch"


class TrainJob(submitit.helpers.Checkpointable):
    """One run as a submitit job: trains with resume=True, so a requeued job goes on from its last checkpoint.

    `checkpoint()` (submitit's, inherited) resubmits this same object on preemption or timeout.
    """

    def __init__(self, spec: ZooSpec, out: Path, run: str, device: str) -> None:
        self.spec, self.out, self.run, self.device = spec, Path(out), run, device

    def __call__(self) -> int:
        """Train the run to its last step; returns that step. Every rank of a data-parallel job runs this."""
        restart_with_cpu_level(self.spec.training.cpu_level)  # before torch computes: the job starts again with it
        env = submitit.JobEnvironment()
        stop = _stop_on_sigterm()
        if env.num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=self.device == "cuda")
        parallel = init_data_parallel(self.device)
        run = next(r for r in self.spec.runs() if r.name == self.run)
        state_path = launch_dir(self.out, self.spec) / "state" / f"{self.run}.json"
        try:
            if parallel.is_writer:
                atomic_write_json(state_path, {"job_id": env.job_id, "state": "running", "error": None})
            store = prepare_store(self.spec.data, zoo_dir(self.out, self.spec) / "data", progress=False)
            result = train_run(self.spec, run, store, self.out, resume=True, device=self.device,
                               progress=False, parallel=parallel, stop=stop.is_set)
        except Exception as error:
            if parallel.is_writer:
                atomic_write_json(state_path, {"job_id": env.job_id,
                                               "state": "stopped" if isinstance(error, StoppedError) else "failed",
                                               "error": "".join(traceback.format_exception_only(error)).strip()})
            raise
        finally:
            close_data_parallel(parallel)
        return result.final_step


def _stop_on_sigterm() -> threading.Event:
    """An event SIGTERM sets, for training to stop at the next step boundary: nothing is saved at the signal,
    so training on until the scheduler's SIGKILL (submitit only logs a SIGTERM) would be wasted work."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    return stop


def launch(spec: ZooSpec, out: Path, *, executor: str = "slurm", resources: Resources = Resources(),
           runs: str | None = None, device: str = "cpu") -> list[Launched]:
    """Submit one job per run of `spec` (matching `runs`) that is not complete; [] when all are.

    Prepares the dataset and step indexes first (once, here), checks the partition and
    resources against the cluster (sinfo), each run's memory and disk needs, and that the
    micro-batches split over the processes; refuses while jobs of this zoo are still queued
    or running. Job ids go to OUT/ZOO/launch/jobs.json.
    """
    if executor not in EXECUTORS:
        raise LaunchError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    if executor == "slurm":
        check_resources(resources.partition, nodes=resources.nodes, tasks_per_node=resources.tasks_per_node,
                        cpus_per_task=resources.cpus_per_task, gpus_per_node=resources.gpus_per_node)
    n_micro = spec.training.batch_size // spec.training.micro_batch_size
    if problem := micro_batches_problem(n_micro, resources.world_size):
        raise LaunchError(f"{problem}: --nodes {resources.nodes} x --tasks-per-node {resources.tasks_per_node} "
                          f"processes for zoo {spec.name!r}; use a power of two up to {n_micro} processes")
    folder = launch_dir(out, spec)
    (folder / "state").mkdir(parents=True, exist_ok=True)
    with _submitting(folder, spec.name):
        record = _read_jobs(folder)
        # A complete run's job may still be in the queue, exiting: it no longer conflicts.
        active = {run: job for run, job in _active(record).items() if not _complete(out, spec, run)}
        if active:
            listing = ", ".join(f"{run} (job {job})" for run, job in sorted(active.items()))
            raise LaunchConflictError(f"zoo {spec.name!r} has jobs queued or running: {listing}; wait for them "
                                      f"(zoo status {spec.name}) or cancel them (scancel) before launching again")
        todo = [run for run in spec.runs(runs) if not _complete(out, spec, run.name)]
        if not todo:
            return []
        store = prepare_store(spec.data, zoo_dir(out, spec) / "data", progress=False)
        for run in todo:
            check_run_fits(spec, run, store.vocab_size, out, device)
        for data_seed in sorted({run.data_seed for run in todo}):
            prepare_step_index(spec, store, zoo_dir(out, spec), data_seed, progress=False)
        jobs = _submit(_executor(folder, executor, resources),
                       [TrainJob(spec, out, run.name, device) for run in todo])
        launched = [Launched(run.name, job.job_id) for run, job in zip(todo, jobs)]
        record["executor"] = executor
        record["jobs"].update({item.run: item.job_id for item in launched})
        atomic_write_json(folder / "jobs.json", record)
        return launched


def status(spec: ZooSpec, out: Path) -> list[RunStatus]:
    """Each run's state, from its run directory, what its job reported, and the scheduler."""
    folder = launch_dir(out, spec)
    record = _read_jobs(folder)
    scheduler = job_states(list(record["jobs"].values())) if record["executor"] == "slurm" else {}
    rows = []
    for run in spec.runs():
        last_step, loss = _progress(run_path(out, spec, run))
        job_id = record["jobs"].get(run.name)
        reported = _read_state(folder, run.name)
        if reported.get("job_id") != job_id:
            reported = {}
        if last_step == spec.training.steps and (problems := _final_problems(run_path(out, spec, run))):
            rows.append(RunStatus(run.name, "failed", job_id, last_step, spec.training.steps, loss,
                                  f"its final checkpoint does not verify ({'; '.join(problems)}); `zoo launch` "
                                  f"trains it again from the latest checkpoint that does"))
            continue
        state, error = _state(spec, last_step, job_id, record["executor"], scheduler, reported)
        rows.append(RunStatus(run.name, state, job_id, last_step, spec.training.steps, loss, error))
    return rows


def _state(spec: ZooSpec, last_step: int | None, job_id: str | None, executor: str, scheduler: dict[str, str],
           reported: dict[str, Any]) -> tuple[str, str | None]:
    if last_step == spec.training.steps:
        return "done", None
    if job_id is None:
        return "not launched", None
    if reported.get("state") == "failed":
        return "failed", reported.get("error")
    if executor == "local":
        if _alive(job_id):
            return "running", None
    else:
        queued = scheduler.get(job_id)
        if queued in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "CONFIGURING"):
            return "pending", None
        if queued is not None:
            return "running", None
    if reported.get("state") == "stopped":  # a SIGTERM, and the job was not requeued
        return "cancelled", None
    if executor == "local":
        return "failed", "job ended before the run finished; see logs"
    return "failed", f"job {job_id} left the queue before the run finished; see its log in launch/logs"


def _progress(path: Path) -> tuple[int | None, float | None]:
    """Last listed checkpoint step and the loss of its last update."""
    try:
        steps = read_manifest(path).checkpoints
    except ManifestNotFoundError:
        return None, None
    if not steps:
        return None, None
    records = read_loss_stretch(path / "checkpoints" / checkpoint_dir_name(steps[-1]) / "loss.jsonl")
    return steps[-1], records[-1]["loss"] if records else None


def _complete(out: Path, spec: ZooSpec, run: str) -> bool:
    """Whether the run lists its final checkpoint and that checkpoint's files verify."""
    path = zoo_dir(out, spec) / "runs" / run
    return _progress(path)[0] == spec.training.steps and not _final_problems(path)


def _final_problems(path: Path) -> list[str]:
    """What is wrong with the files of the run's latest listed checkpoint ([] when they verify)."""
    manifest = read_manifest(path)
    return checkpoint_problems(path, manifest, manifest.checkpoints[-1])


def _executor(folder: Path, kind: str, resources: Resources) -> submitit.Executor:
    executor = submitit.AutoExecutor(folder=folder / "logs", cluster=kind)
    executor.update_parameters(timeout_min=resources.time_min, nodes=resources.nodes,
                               tasks_per_node=resources.tasks_per_node, cpus_per_task=resources.cpus_per_task,
                               gpus_per_node=resources.gpus_per_node)
    if kind == "slurm":
        executor.update_parameters(slurm_array_parallelism=resources.array_parallelism,
                                   # a warning before the job's handler is set up would kill it
                                   slurm_signal_delay_s=min(resources.signal_delay_s, resources.time_min * 30),
                                   **({"slurm_partition": resources.partition} if resources.partition else {}))
    return executor


def _submit(executor: submitit.Executor, jobs: list[TrainJob]) -> list[submitit.Job[int]]:
    try:
        with executor.batch():
            submitted = [executor.submit(job) for job in jobs]
    except Exception as error:  # sbatch's refusal comes back as a submitit error carrying its message
        raise LaunchError(f"the scheduler refused the jobs: {error}") from error
    return submitted


@contextmanager
def _submitting(folder: Path, zoo: str) -> Iterator[None]:
    """Hold OUT/ZOO/launch/.lock while checking and submitting: two launches never interleave."""
    try:
        with held_lock(folder / ".lock"):
            yield
    except LockHeldError:
        raise LaunchConflictError(f"another `zoo launch` of zoo {zoo!r} is submitting right now "
                                  f"({folder / '.lock'}); wait for it, then see `zoo status {zoo}`") from None


def _read_jobs(folder: Path) -> dict[str, Any]:
    path = folder / "jobs.json"
    if not path.exists():
        return {"executor": None, "jobs": {}}
    return json.loads(path.read_text())


def _read_state(folder: Path, run: str) -> dict[str, Any]:
    path = folder / "state" / f"{run}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _active(record: dict[str, Any]) -> dict[str, str]:
    """Runs whose recorded job is still queued or running."""
    jobs = record["jobs"]
    if record["executor"] == "slurm":
        states = job_states(list(jobs.values()))
        return {run: job for run, job in jobs.items() if states.get(job) in _ACTIVE}
    return {run: job for run, job in jobs.items() if _alive(job)}


def _alive(pid: str) -> bool:
    """A local job's id is its controlling process's pid; a zombie has ended."""
    try:
        fields = Path(f"/proc/{int(pid)}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError):
        return False
    return fields[0] != "Z"
