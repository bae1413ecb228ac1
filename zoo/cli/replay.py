"""`zoo replay`: retrain a published run between two checkpoints and say whether it matched, bit for bit."""

from __future__ import annotations

import argparse

from zoo.replay.errors import ReplayError
from zoo.replay import Explain, replay


def add_parsers(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser(
        "replay", help="replay a published run between checkpoints and compare it byte for byte",
        description="Load the published full state of a run at checkpoint FROM, fetch the batches of the "
                    "following updates from the zoo's published step index and token store, train to step TO, "
                    "and compare weights, optimizer state and every loss record with the published run. "
                    "Exit status: 0 bitwise equal, 1 diverged, 2 error.")
    cmd.add_argument("model", help="a published model, e.g. solu-1l")
    cmd.add_argument("--org", required=True, help="the Hub user or organization it is published under")
    cmd.add_argument("--root", help="a directory root (path or file://URL) instead of the Hub at HF_ENDPOINT")
    cmd.add_argument("--zoo", help="the zoo, when several publish the same model")
    cmd.add_argument("--seed", type=int, help="init and data seed (or --init-seed/--data-seed)")
    cmd.add_argument("--init-seed", type=int)
    cmd.add_argument("--data-seed", type=int)
    cmd.add_argument("--from", dest="from_step", type=int, required=True, metavar="C",
                     help="a published checkpoint step to start from")
    cmd.add_argument("--to", dest="to_step", type=int, required=True, metavar="S", help="the step to replay to")
    cmd.add_argument("--explain", type=int, metavar="STEP",
                     help="print update STEP's batch (decoded, with sample and document ids) and each sample's "
                          "loss before that update; STEP must lie in (C, S]")
    cmd.add_argument("--revision", help="a commit sha or tag of the run repo to pin")
    cmd.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    cmd.add_argument("--quiet", action="store_true", help="no progress bar")
    cmd.set_defaults(func=_replay)


def _replay(args: argparse.Namespace) -> int:
    callbacks = []
    if args.explain is not None:
        if not args.from_step < args.explain <= args.to_step:
            raise ReplayError(f"--explain {args.explain} is not replayed: it must lie in "
                              f"({args.from_step}, {args.to_step}] (--from, --to]")
        callbacks.append(Explain(args.explain))
    result = replay(args.model, from_step=args.from_step, to_step=args.to_step, org=args.org, seed=args.seed,
                    init_seed=args.init_seed, data_seed=args.data_seed, zoo=args.zoo, root=args.root,
                    revision=args.revision, callbacks=callbacks, device=args.device, progress=not args.quiet)
    for callback in callbacks:
        print(callback.text)
    for note in result.environment_differences:
        print(f"note: {note}")
    print(result.verdict())
    return 1 if result.bitwise_equal is False else 0
