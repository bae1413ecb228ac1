"""`zoo analyze induction|grokking|compare`: the model-system analyses, as figures plus JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_index import TokenStore
import zoo.hub as hub
from zoo.analysis import RunCheckpoints, compare, grokking, induction, open_runs

_RUNS_HELP = ("run directories (out/ZOO/runs/RUN), zoo directories (all their runs), or published model "
              "patterns like 'attn-only-2l' or '*-2l' (with --org, and --root or HF_ENDPOINT)")
_DATA_HELP = "the zoo's token store (default: ZOO/data of a local run, or the published dataset repo)"


def add_parsers(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser("analyze", help="induction bump, grokking, seed statistics: PNG + JSON")
    kinds = analyze.add_subparsers(dest="analysis", required=True)

    ind = kinds.add_parser("induction", help="ICL score and per-head induction scores at every checkpoint")
    ind.add_argument("runs", nargs="+", help=_RUNS_HELP)
    ind.add_argument("--data", type=Path, help=_DATA_HELP + "; probe tokens are drawn from the tokens it uses")
    _common(ind)
    ind.set_defaults(func=_induction)

    grok = kinds.add_parser("grokking", help="train/test accuracy of modular addition at every checkpoint")
    grok.add_argument("runs", nargs="+", help=_RUNS_HELP)
    grok.add_argument("--data", type=Path, help=_DATA_HELP)
    _common(grok)
    grok.set_defaults(func=_grokking)

    cmp = kinds.add_parser("compare", help="final loss mean ± std across seeds per size, for two families")
    cmp.add_argument("family_a", help="an architecture, e.g. gelu")
    cmp.add_argument("family_b", help="an architecture, e.g. solu")
    cmp.add_argument("--runs", nargs="+", required=True, help=_RUNS_HELP)
    _common(cmp)
    cmp.set_defaults(func=_compare)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("analysis"), help="folder for the PNG and JSON")
    parser.add_argument("--org", help="Hub org of a published zoo")
    parser.add_argument("--root", help="a directory root instead of the Hub (see zoo publish --root)")
    parser.add_argument("--zoo", help="only runs of this zoo")


def _runs(args: argparse.Namespace):
    return open_runs(args.runs, org=args.org, root=args.root, zoo=args.zoo)


def _store(args: argparse.Namespace, runs: list[RunCheckpoints]) -> TokenStore:
    """The token store the runs were trained on: --data, the published dataset repo, or ZOO/data."""
    if args.data is not None:
        store_dir = args.data
    elif args.org is not None:
        store_dir = hub.download_data(runs[0].config["run"]["zoo"], org=args.org, root=args.root) / "data"
    else:
        first = Path(args.runs[0]).resolve()
        store_dir = first / "data" if (first / "runs").is_dir() else first.parent.parent / "data"
    return TokenStore.open(store_dir)


def _induction(args: argparse.Namespace) -> int:
    runs = _runs(args)
    for r in induction.analyze(runs, _store(args, runs), args.out):
        b = r.bump
        gaps = f"  MISSING checkpoints: {r.missing_steps}" if r.missing_steps else ""
        print(f"{r.run}: ICL score jumps {b.jump:+.3f} nats over steps {b.start}-{b.end} ({b.rise:+.3f} in all), "
              f"best head {b.best_head} "
              f"{b.max_head_score:.2f}, bump: {'yes' if b.has_bump else 'no'}{gaps}")
    print(f"wrote {args.out / 'induction.png'} and {args.out / 'induction.json'}")
    return 0


def _grokking(args: argparse.Namespace) -> int:
    runs = _runs(args)
    for r in grokking.analyze(runs, _store(args, runs), args.out):
        gaps = f"  MISSING checkpoints: {r.missing_steps}" if r.missing_steps else ""
        print(f"{r.run}: train 100% at step {r.train_100_step}, test > 95% at step {r.test_95_step}, "
              f"grokked: {'yes' if r.grokked else 'no'}{gaps}")
    print(f"wrote {args.out / 'grokking.png'} and {args.out / 'grokking.json'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    runs = open_runs(args.runs, org=args.org, root=args.root, zoo=args.zoo)
    print(compare.table(compare.analyze(runs, args.family_a, args.family_b, args.out)))
    print(f"wrote {args.out / 'compare.png'} and {args.out / 'compare.json'}")
    return 0
