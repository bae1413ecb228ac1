"""`zoo batch` and `zoo where-seen`: what the model trained on, and when (a local zoo, or a published one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_index import StepIndex, TokenStore, batch, format_batch, format_where_seen, where_seen_text
from training.loop import index_path
from zoo.replay.data import published_data

_ZOO_HELP = "a trained zoo's directory, e.g. out/toy; with --org, the name of a published zoo, e.g. toy"


def add_parsers(commands: argparse._SubParsersAction) -> None:
    show = commands.add_parser(
        "batch", help="print the exact samples of one training step",
        description="Print the sample ids (and with --decode the text) of update STEP, read from the "
                    "zoo's materialized step index: the same samples training used.")
    show.add_argument("zoo", help=_ZOO_HELP)
    show.add_argument("--step", type=int, required=True, help="update number, 1 … the zoo's last step")
    show.add_argument("--data-seed", type=int, default=0, help="the run's data_seed (default 0)")
    show.add_argument("--decode", action="store_true", help="also print each sample as text")
    _published(show)
    show.set_defaults(func=_batch)

    seen = commands.add_parser(
        "where-seen", help="every (step, row) in which a document was trained on",
        description="Reverse lookup: the steps whose batch held a sample containing the document. Of a "
                    "published zoo (--org), only the index and store chunks that hold the document are fetched.")
    seen.add_argument("zoo", help=_ZOO_HELP)
    which = seen.add_mutually_exclusive_group(required=True)
    which.add_argument("--doc", type=int, help="document id in the corpus")
    which.add_argument("--text", help="every document containing this snippet (reads every document)")
    seen.add_argument("--data-seed", type=int, default=0, help="the run's data_seed (default 0)")
    _published(seen)
    seen.set_defaults(func=_where_seen)


def _published(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", help="read the zoo published under this Hub org (at $HF_ENDPOINT, or --root)")
    parser.add_argument("--root", help="a directory root instead of the Hub (see zoo publish --root)")


def _open(args: argparse.Namespace) -> tuple[TokenStore, StepIndex]:
    if args.org is not None:
        data = published_data(args.zoo, org=args.org, data_seed=args.data_seed, root=args.root)
        return data.store, data.index
    zoo_dir = Path(args.zoo)
    return TokenStore.open(zoo_dir / "data"), StepIndex.open(index_path(zoo_dir, args.data_seed))


def _batch(args: argparse.Namespace) -> int:
    store, index = _open(args)
    print(format_batch(batch(store, index, args.step), decode=args.decode))
    return 0


def _where_seen(args: argparse.Namespace) -> int:
    store, index = _open(args)
    if args.doc is not None:
        hits = {args.doc: index.where_seen(args.doc)}
        if index.is_held_out(args.doc):
            print(f"doc {args.doc} is held out: never trained on, evaluated at every checkpoint")
            return 0
    else:
        hits = where_seen_text(store, index, args.text)
    print(format_where_seen(hits))
    return 0
