"""What `zoo launch` asks Slurm: partitions and their resources (sinfo), job states (squeue)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


class LaunchError(Exception):
    """A launch cannot be carried out; the message names the cause and the fix."""


class ClusterResourceError(LaunchError):
    """The requested partition or resources do not exist on this cluster."""


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: int
    cpus_per_node: int
    gpus_per_node: int
    default: bool


def _run(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LaunchError(f"cannot run {argv[0]} ({error}); is this a Slurm login node? "
                          f"Use --executor local to train here") from None
    if done.returncode != 0:
        raise LaunchError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return done.stdout


def partitions() -> list[Partition]:
    """The cluster's partitions, by sinfo (one line per partition and node configuration)."""
    found: dict[str, Partition] = {}
    for line in _run(["sinfo", "-h", "-o", "%P|%D|%c|%G"]).splitlines():
        name, nodes, cpus, gres = line.strip().split("|")
        part = Partition(name=name.rstrip("*"), nodes=int(nodes), cpus_per_node=int(cpus.rstrip("+")),
                         gpus_per_node=_gpus(gres), default=name.endswith("*"))
        seen = found.get(part.name)
        if seen is not None:  # several node configurations: keep the largest of each resource
            part = Partition(part.name, seen.nodes + part.nodes, max(seen.cpus_per_node, part.cpus_per_node),
                             max(seen.gpus_per_node, part.gpus_per_node), seen.default or part.default)
        found[part.name] = part
    return list(found.values())


def _gpus(gres: str) -> int:
    total = 0
    for item in gres.split(","):
        fields = item.split("(")[0].split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def check_resources(partition: str | None, *, nodes: int, tasks_per_node: int, cpus_per_task: int,
                    gpus_per_node: int) -> None:
    """Refuse, before submitting, what no node of the partition offers (naming what exists)."""
    parts = partitions()
    listing = "; ".join(f"{p.name}{' (default)' if p.default else ''}: {p.nodes} node(s) x {p.cpus_per_node} CPUs"
                        f", {p.gpus_per_node} GPUs" for p in parts)
    chosen = next((p for p in parts if (p.name == partition if partition else p.default)), None)
    if chosen is None:
        wanted = f"partition {partition!r} does not exist" if partition else "there is no default partition"
        raise ClusterResourceError(f"{wanted}; this cluster has {listing}. Pass --partition NAME")
    problems = []
    if nodes > chosen.nodes:
        problems.append(f"--nodes {nodes} > {chosen.nodes} node(s)")
    if tasks_per_node * cpus_per_task > chosen.cpus_per_node:
        problems.append(f"--tasks-per-node {tasks_per_node} x --cpus-per-task {cpus_per_task} > "
                        f"{chosen.cpus_per_node} CPUs per node")
    if gpus_per_node > chosen.gpus_per_node:
        problems.append(f"--gpus-per-node {gpus_per_node} > {chosen.gpus_per_node} GPUs per node")
    if problems:
        raise ClusterResourceError(f"partition {chosen.name!r} cannot run this: {'; '.join(problems)}. "
                                   f"This cluster has {listing}")


def job_states(job_ids: list[str]) -> dict[str, str]:
    """Scheduler state (PENDING, RUNNING, …) of each job id squeue still knows; array tasks one by one."""
    if not job_ids:
        return {}
    # All jobs, then filter: squeue -j fails on ids it no longer knows.
    done = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, check=False)
    wanted = set(job_ids)
    states = {}
    for line in done.stdout.splitlines():
        job_id, state = line.strip().split("|")
        if job_id in wanted:
            states[job_id] = state
    return states
