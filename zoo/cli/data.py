"""`zoo batch` and `zoo where-seen`: what the model trained on, and when (a local zoo, or a published one)."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_index import (
    StepIndex,
    StoreNotFoundError,
    TokenStore,
    batch,
    format_batch,
    format_where_seen,
    where_seen_text,
)
from training.loop import check_step_index, index_path
from zoo.replay.data import published_data

_ZOO_HELP = "a trained zoo's directory, e.g. out/toy; with --org, the name of a published zoo, e.g. toy"


def add_parsers(commands: argparse._SubParsersAction) -> None:
    show = commands.add_parser(
        "batch", help="print the exact samples of one training step",
        description="Print the sample ids (and with --decode the text) of update STEP, read from the "
                    "zoo's materialized step index: the same samples training used.")
    show.add_argument("zoo", help=_ZOO_HELP)
    show.add_argument("--step", type=int, required=True, help="update number, 1 … the zoo's last step")
    show.add_argument("--data-seed", type=int, default=0, help="the run's data_seed (default 0; an error lists "
                                                               "the ones the zoo has)")
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
    seen.add_argument("--data-seed", type=int, default=0, help="the run's data_seed (default 0; an error lists "
                                                               "the ones the zoo has)")
    _published(seen)
    seen.set_defaults(func=_where_seen)


def _published(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", help="read the zoo published under this Hub org (at $HF_ENDPOINT, or --root)")
    parser.add_argument("--root", help="a directory root instead of the Hub (see zoo publish --root)")


def _open(args: argparse.Namespace) -> tuple[TokenStore, StepIndex]:
    """The zoo's token store and the step index of the data seed: published (--org) or local."""
    if args.org is not None:
        data = published_data(args.zoo, org=args.org, data_seed=args.data_seed, root=args.root)
        return data.store, data.index
    return _open_local(Path(args.zoo), args.data_seed)


def _open_local(zoo_dir: Path, data_seed: int) -> tuple[TokenStore, StepIndex]:
    """A local zoo's token store and step index of `data_seed`; an error names what the zoo has instead."""
    if not (zoo_dir / "data").is_dir():
        hint = (f"; {zoo_dir} looks like the data folder itself, give its parent {zoo_dir.parent}"
                if (zoo_dir / "store.json").is_file() else "")
        raise StoreNotFoundError(f"{zoo_dir} is not a trained zoo's directory (it has no data/ folder){hint}. "
                                 f"Pass the zoo's directory, e.g. out/toy, or train the zoo first: zoo train SPEC")
    if not index_path(zoo_dir, data_seed).is_dir():
        seeds = sorted(int(p.name[4:]) for p in (zoo_dir / "index").glob("data*") if p.name[4:].isdigit())
        have = (f"it has the data seeds {', '.join(map(str, seeds))} (pass --data-seed {seeds[0]})" if seeds
                else "it has none")
        raise StoreNotFoundError(f"zoo {zoo_dir} has no step index for data seed {data_seed}: {have}. `zoo train "
                                 f"SPEC` indexes the data seed of every run it trains")
    store, index = TokenStore.open(zoo_dir / "data"), StepIndex.open(index_path(zoo_dir, data_seed))
    check_step_index(zoo_dir, index, store.fingerprint)  # the index its runs trained with, or refused
    return store, index


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
