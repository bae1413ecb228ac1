"""`zoo`: train, inspect and verify seeded model families. `zoo --help` is the map."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from checkpoints_manifest import ManifestError, ManifestNotFoundError, verify
from data_index import DataIndexError
from training import BUILTIN_SPECS, SPEC_ARGUMENT_HELP, TrainingError, load_spec, train_zoo
from training.determinism import restart_with_cpu_level
from training.errors import CpuLevelNotSetError
from zoo.analysis import AnalysisError
from zoo.cli import analyze, data, hub, launch, replay
from zoo.cli.demo import DEMO_ORG, run_demo
from zoo.hub.errors import HubError

DESCRIPTION = f"""\
zoo: an exactly reproducible model-system zoo for mechanistic interpretability.

A zoo spec (TOML, or a built-in name: {", ".join(BUILTIN_SPECS)})
names architectures (attn-only, gelu, solu), sizes, seeds, dataset and
schedule. Every run trains deterministically: same spec + seeds + data +
platform => identical bytes of weights, optimizer state and loss log, across
crashes and resumes. Each run directory holds config.json, a dense set of
full-state checkpoints (checkpoints/stepNNNNNNNN/: weights, optimizer state,
state.json and loss.jsonl, the updates since the previous checkpoint) and
manifest.json (written last: sizes + sha256). Resume starts from the latest
checkpoint whose files verify against it, and says which it skipped.

Typical session:
  zoo demo                                 train a quick subset of the toy zoo
  zoo train toy --runs 'solu-*-seed0'      train runs of a zoo (glob on run names)
  zoo train toy --resume                   continue every run from its latest checkpoint that verifies
  zoo train research --device cuda         research sizes (d_model 512, n_ctx 1024, bf16) on a GPU
  zoo launch toy --executor slurm          one Slurm job per run (array), requeued on preemption
  zoo status toy                           pending/running/done/cancelled/failed, last step, loss
  zoo batch out/toy --step 5 --decode      the exact samples update 5 trained on
  zoo where-seen out/toy --doc 17          every (step, row) that trained on document 17
  zoo where-seen toy --org me --doc 17     the same of a published zoo (fetches only its chunks)
  zoo analyze document 17 out/toy          document 17's loss at every checkpoint, its steps marked
  zoo verify out/toy/runs/solu-1l-seed0    check every file against the manifest
  zoo publish out/toy --org me             one Hub repo per run + the zoo's data (or --root DIR)
  zoo replay solu-1l --seed 0 --from 64 --to 128 --org me
                                           re-run published training steps and compare bit for bit
"""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CpuLevelNotSetError as e:
        if argv is None:  # this process is the zoo command: start it again with the level the run pins
            restart_with_cpu_level(e.level)
        print(f"zoo: error: {e}", file=sys.stderr)
        return 2
    except (TrainingError, DataIndexError, HubError, ManifestError, ManifestNotFoundError, AnalysisError) as e:
        print(f"zoo: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zoo: interrupted; completed checkpoints are valid, continue with --resume", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train the runs of a zoo spec",
                                description="Train every run (architecture x size x seed) of a zoo spec, "
                                            "with dense full-state checkpoints.")
    train.add_argument("spec", help=SPEC_ARGUMENT_HELP)
    _add_run_options(train)
    train.add_argument("--resume", action="store_true",
                       help="continue each run from its latest checkpoint whose files verify against the manifest "
                            "(bitwise equal to never stopping); those skipped are named, with why")
    train.add_argument("--allow-platform-change", action="store_true",
                       help="resume runs trained on another platform (CPU level, device, torch, precision settings, "
                            "code version) here anyway; each run's manifest records the step where it changed, and "
                            "replay compares each stretch with its own platform")
    train.add_argument("--data-workers", type=int, default=os.cpu_count() or 1, metavar="N",
                       help="processes that tokenize the corpus when its store is first built (default: every "
                            "core); the store's bytes are the same for any N")
    train.set_defaults(func=_train)

    demo = commands.add_parser("demo", help="the main job: train a quick toy subset, publish, load back bitwise",
                               description="Train the 1-layer seed-0 runs of the toy zoo (one per architecture), "
                                           "publish them to OUT/hub (laid out like the Hub), load a model back "
                                           "and check its weights bit for bit, then replay the last training "
                                           "steps from the published artifacts and compare bit for bit. "
                                           "Rerunning continues where it left.")
    demo.add_argument("--out", type=Path, default=Path("out"), help="output root (default: ./out)")
    demo.set_defaults(func=_demo)

    check = commands.add_parser("verify", help="check a run directory against its manifest",
                                description="Hash every file listed in RUN_DIR/manifest.json; exit 1 on any mismatch.")
    check.add_argument("run_dir", type=Path)
    check.set_defaults(func=_verify)

    data.add_parsers(commands)
    hub.add_parsers(commands)
    replay.add_parsers(commands)
    launch.add_parsers(commands)
    analyze.add_parsers(commands)
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", metavar="FILTER",
                        help="comma-separated globs on run names, e.g. 'solu-*' or 'gelu-2l-seed1,attn-only-*'")
    parser.add_argument("--out", type=Path, default=Path("out"), help="output root; runs go to OUT/ZOO/runs/RUN")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to train on (default: cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _train(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    results = train_zoo(spec, args.out, runs=args.runs, resume=args.resume, device=args.device,
                        progress=not args.quiet, allow_platform_change=args.allow_platform_change,
                        data_workers=max(1, args.data_workers))
    _print_results(results)
    return 0


def _demo(args: argparse.Namespace) -> int:
    report = run_demo(args.out)
    _print_results(report.results)
    verdict = "bitwise equal to" if report.bitwise_equal else "DIFFERENT from"
    print(f"\npublished to {report.hub_root} (a directory root laid out like the Hub)")
    print(f"loaded {report.loaded} back through the verified loader: weights {verdict} the local checkpoint")
    print(f"replayed from the published artifacts: {report.replay_verdict}")
    print(f"next: zoo list --org {DEMO_ORG} --root {report.hub_root}   |   zoo verify {report.results[0].path}")
    return 0 if report.bitwise_equal and report.replay_bitwise_equal else 1


def _print_results(results: list) -> None:
    print(f"{'run':<24} {'steps':>6} {'final loss':>10}  directory")
    for r in results:
        loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "(done)"
        print(f"{r.run:<24} {r.final_step:>6} {loss:>10}  {r.path}")


def _verify(args: argparse.Namespace) -> int:
    mismatches = verify(args.run_dir)
    for m in mismatches:
        print(m)
    print(f"{args.run_dir}: {'OK' if not mismatches else f'{len(mismatches)} mismatch(es)'}")
    return 1 if mismatches else 0

