"""`zoo launch` and `zoo status`: a zoo's runs as Slurm (or local) jobs, and where each stands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training import SPEC_ARGUMENT_HELP, load_spec
from zoo.launch import EXECUTORS, LaunchError, Resources, launch, status


def add_parsers(commands: argparse._SubParsersAction) -> None:
    go = commands.add_parser(
        "launch", help="train a zoo's runs as Slurm jobs (one job array), preemption-safe",
        description="Submit one job per incomplete run. Preempted or timed-out jobs requeue and resume from "
                    "their last checkpoint, ending byte-identical to `zoo train`. --tasks-per-node/--nodes > 1 "
                    "train each run data parallel, still bitwise (the micro-batches per process must be "
                    "1, 2, 4, …).")
    go.add_argument("spec", help=SPEC_ARGUMENT_HELP)
    go.add_argument("--executor", choices=EXECUTORS, default="slurm")
    go.add_argument("--out", type=Path, default=Path("out"), help="output root; runs go to OUT/ZOO/runs/RUN")
    go.add_argument("--runs", metavar="FILTER", help="comma-separated globs on run names")
    go.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    go.add_argument("--partition")
    go.add_argument("--time", type=int, default=60, dest="time_min", metavar="MIN", help="time limit per job")
    go.add_argument("--nodes", type=int, default=1)
    go.add_argument("--tasks-per-node", type=int, default=1)
    go.add_argument("--cpus-per-task", type=int, default=1)
    go.add_argument("--gpus-per-node", type=int, default=0)
    go.add_argument("--array-parallelism", type=int, default=256, metavar="K", help="at most K runs at once")
    go.set_defaults(func=_launch)

    show = commands.add_parser("status", help="each run's state: pending, running, done, cancelled, failed",
                               description="Read the run directories, the jobs `zoo launch` recorded and the "
                                           "scheduler: state, last checkpoint step and latest loss of every run. "
                                           "Exit status: 0, or 1 when a run failed.")
    show.add_argument("spec")
    show.add_argument("--out", type=Path, default=Path("out"))
    show.set_defaults(func=_status)


def _launch(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    resources = Resources(partition=args.partition, time_min=args.time_min, nodes=args.nodes,
                          tasks_per_node=args.tasks_per_node, cpus_per_task=args.cpus_per_task,
                          gpus_per_node=args.gpus_per_node, array_parallelism=args.array_parallelism)
    try:
        launched = launch(spec, args.out, executor=args.executor, resources=resources, runs=args.runs,
                          device=args.device)
    except LaunchError as error:
        print(f"zoo: error: {error}", file=sys.stderr)
        return 2
    if not launched:
        print(f"every selected run of zoo {spec.name!r} is complete in {args.out / spec.name}; nothing submitted")
    for item in launched:
        print(f"{item.run:<24} job {item.job_id}")
    return 0


def _status(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    print(f"{'run':<24} {'state':<13} {'job':<10} {'step':>11} {'loss':>8}")
    rows = status(spec, args.out)
    for row in rows:
        step = f"{row.last_step if row.last_step is not None else '-'}/{row.final_step}"
        loss = f"{row.loss:.4f}" if row.loss is not None else "-"
        print(f"{row.run:<24} {row.state:<13} {row.job_id or '-':<10} {step:>11} {loss:>8}")
        if row.error:
            print(f"  error: {row.error}")
    return 1 if any(row.state == "failed" for row in rows) else 0
