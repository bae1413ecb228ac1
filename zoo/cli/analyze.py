"""`zoo analyze induction|grokking|compare|document`: the model-system analyses, as figures plus JSON."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_index import StepIndex, TokenStore
import zoo.hub as hub
from training.loop import index_path
from zoo.analysis import AnalysisError, RunCheckpoints, compare, document, grokking, induction, open_runs
from zoo.replay.data import published_data

_RUNS_HELP = ("run directories (out/ZOO/runs/RUN), zoo directories (all their runs), or published model "
              "patterns like 'attn-only-2l' or '*-2l' (with --org, and --root or HF_ENDPOINT)")
_DATA_HELP = "the zoo's token store (default: ZOO/data of a local run, or the published dataset repo)"


def add_parsers(commands: argparse._SubParsersAction) -> None:
    analyze = commands.add_parser("analyze", help="induction bump, grokking, seed statistics, document curves: "
                                                  "PNG + JSON")
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

    cmp = kinds.add_parser("compare", help="final loss (held-out when every run has a split, else training) "
                                           "mean ± std across seeds per size, for two families")
    cmp.add_argument("family_a", help="an architecture, e.g. gelu")
    cmp.add_argument("family_b", help="an architecture, e.g. solu")
    cmp.add_argument("--runs", nargs="+", required=True, help=_RUNS_HELP)
    _common(cmp)
    cmp.set_defaults(func=_compare)

    doc = kinds.add_parser("document", help="the loss on one document at every checkpoint, the steps that "
                                            "trained on it marked",
                           description="A document's learning curve (memorization and forgetting): its loss at "
                                       "every checkpoint of each run, every step whose batch held it (from the "
                                       "step index), and the run's held-out loss beside it. A published zoo's "
                                       "index and store are fetched only where the document lies.")
    doc.add_argument("doc", type=int, help="document id in the zoo's corpus (zoo where-seen --text finds one)")
    doc.add_argument("runs", nargs="+", help=_RUNS_HELP)
    _common(doc)
    doc.set_defaults(func=_document)


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


def _document(args: argparse.Namespace) -> int:
    runs = _runs(args)
    if not runs:
        raise AnalysisError(f"no run among {args.runs}")
    seeds = sorted({r.config["run"]["data_seed"] for r in runs})
    if args.org is not None:
        zoo = runs[0].config["run"]["zoo"]
        published = {d: published_data(zoo, org=args.org, data_seed=d, root=args.root) for d in seeds}
        store, indexes = published[seeds[0]].store, {d: p.index for d, p in published.items()}
    else:
        first = Path(args.runs[0]).resolve()
        zoo_dir = first if (first / "runs").is_dir() else first.parent.parent
        store, indexes = TokenStore.open(zoo_dir / "data"), {d: StepIndex.open(index_path(zoo_dir, d)) for d in seeds}
    for r in document.analyze(runs, args.doc, store, indexes, args.out):
        first, last = r.points[0], r.points[-1]
        held = f"; held-out loss {r.held_out[-1].loss:.3f}" if r.held_out else ""
        print(f"{r.run}: document {args.doc} loss {first.loss:.3f} at step {first.step} -> {last.loss:.3f} at step "
              f"{last.step}{held}; trained on it at {len(r.trained_at)} step(s)"
              + (f" ({', '.join(map(str, r.trained_at[:8]))}{', …' if len(r.trained_at) > 8 else ''})"
                 if r.trained_at else ""))
    print(f"wrote {args.out / f'document{args.doc}.png'} and {args.out / f'document{args.doc}.json'}")
    return 0
