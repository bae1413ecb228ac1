"""`zoo publish`, `zoo list` and `zoo download`: runs to and from the Hub or a directory root."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.schedule import describe_steps
from training.spec import seeds_label
from zoo.hub import download, download_data, list_models, publish

_ROOT_HELP = "a directory root (path or file://URL) instead of the Hub at HF_ENDPOINT"


def add_parsers(commands: argparse._SubParsersAction) -> None:
    pub = commands.add_parser(
        "publish", help="publish trained runs and their data to the Hub (or a directory root)",
        description="Publish a run directory, or every finished run of a zoo directory, with the zoo's data: "
                    "one repo per run, one dataset repo per zoo, at most two commits each. Run it again to "
                    "complete an interrupted publish; nothing is committed when nothing is missing. Each run "
                    "repo also gets transformers' config.json in every checkpoint folder and the tokenizer "
                    "(AutoModelForCausalLM / AutoTokenizer), the dataset repo the zoo card: every run's loss "
                    "curve, the runs with links, and how to load and replay.")
    pub.add_argument("path", type=Path, help="a zoo directory (out/tiny) or a run directory (out/tiny/runs/RUN)")
    pub.add_argument("--org", required=True, help="the Hub user or organization to publish under")
    pub.add_argument("--root", help=_ROOT_HELP)
    pub.add_argument("--quiet", action="store_true", help="no progress bar")
    pub.set_defaults(func=_publish)

    show = commands.add_parser("list", help="list published families, sizes, seeds and checkpoint steps",
                               description="Every run published under ORG, read from its manifest: zoo, model, "
                                           "seeds, how many checkpoints and which steps, written compactly "
                                           "(0, 1, 2, 4 … 64, 68 … 600 (every 4)). A run that cannot be read "
                                           "(damaged, or not cached under HF_HUB_OFFLINE) is named with why, "
                                           "after the others; the exit status is then 1.")
    show.add_argument("--org", required=True)
    show.add_argument("--root", help=_ROOT_HELP)
    show.set_defaults(func=_list)

    get = commands.add_parser(
        "download", help="fetch a run's checkpoints (or a zoo's data) into the HF cache, verified",
        description="Fetch config and checkpoints of one run into the standard HF cache (HF_HOME; "
                    "HF_HUB_OFFLINE and HF_ENDPOINT apply), checking every file's sha256 against the manifest.")
    get.add_argument("model", help="a model, e.g. solu-1l; or a zoo name with --data")
    get.add_argument("--org", required=True)
    get.add_argument("--zoo", help="the zoo, when several publish the same model")
    get.add_argument("--seed", type=int, help="init and data seed (or --init-seed/--data-seed)")
    get.add_argument("--init-seed", type=int)
    get.add_argument("--data-seed", type=int)
    get.add_argument("--step", type=int, action="append", dest="steps", help="a checkpoint step (repeatable; "
                                                                            "default: all)")
    get.add_argument("--revision", help="a commit sha or tag (e.g. step24) to pin")
    get.add_argument("--data", action="store_true", help="download the zoo MODEL's dataset repo instead")
    get.add_argument("--root", help=_ROOT_HELP)
    get.set_defaults(func=_download)


def _publish(args: argparse.Namespace) -> int:
    for result in publish(args.path, org=args.org, root=args.root, progress=not args.quiet):
        done = f"{len(result.uploaded)} file(s), {len(result.commits)} commit(s)" if result.uploaded else "up to date"
        print(f"{result.repo_type:<8} {result.repo_id:<40} {done}")
    return 0


def _list(args: argparse.Namespace) -> int:
    listing = list_models(org=args.org, root=args.root)
    print(f"{'zoo':<10} {'model':<16} {'arch':<10} {'layers':>6} {'d_model':>7} {'seeds':>9} {'ckpts':>5}  steps")
    for r in listing:
        print(f"{r.zoo:<10} {r.model:<16} {r.architecture:<10} {r.n_layers:>6} {r.d_model:>7} "
              f"{seeds_label(r.init_seed, r.data_seed):>9} "
              f"{len(r.steps):>5}  {describe_steps(r.steps)}")
    for repo_id, why in listing.unreadable.items():
        print(f"zoo: could not read {repo_id}: {why}", file=sys.stderr)
    return 1 if listing.unreadable else 0


def _download(args: argparse.Namespace) -> int:
    if args.data:
        folder = download_data(args.model, org=args.org, root=args.root, revision=args.revision)
    else:
        folder = download(args.model, org=args.org, seed=args.seed, init_seed=args.init_seed,
                          data_seed=args.data_seed, steps=args.steps, zoo=args.zoo, root=args.root,
                          revision=args.revision)
    print(folder)
    return 0
