"""Run (model) cards: README.md with Hub YAML metadata, and the loss-curve PNG; zoo_card.py has the zoo's.

Every byte is a function of the run's files, so publishing again yields the same
card and makes no commit.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from checkpoints_manifest import Manifest

LICENSE = "apache-2.0"  # the project's license (pyproject.toml)


def _front_matter(tags: list[str], datasets: list[str]) -> str:
    lines = ["---", "library_name: zoo", f"license: {LICENSE}", "tags:"]
    lines += [f"- {tag}" for tag in tags]
    if datasets:
        lines += ["datasets:"] + [f"- {d}" for d in datasets]
    lines += ["---", ""]
    return "\n".join(lines)


def seed_arguments(run: dict[str, Any]) -> str:
    """The seeds of a run as `zoo.load` takes them: `seed=3`, or `init_seed=1, data_seed=2`."""
    if run["init_seed"] == run["data_seed"]:
        return f"seed={run['init_seed']}"
    return f"init_seed={run['init_seed']}, data_seed={run['data_seed']}"


def model_card(org: str, config: dict[str, Any], manifest: Manifest, *, data_repo: str,
               evaluations: Sequence[dict[str, Any]] = ()) -> str:
    """README.md of a run repo: metadata, what the model is, its loss curve, how to load and replay it.

    `evaluations` (the checkpoints' eval.json records) add the held-out loss; a run without a
    held-out split gets the card it always had."""
    run, model = config["run"], config["model"]
    steps = manifest.checkpoints
    seed = seed_arguments(run)
    tags = ["zoo", "mechanistic-interpretability", "transformer-lens", run["architecture"], run["zoo"]]
    table = [
        "| zoo | model | architecture | n_layers | d_model | n_heads | d_head | d_mlp | d_vocab | n_ctx "
        "| init seed | data seed | checkpoints | steps |",
        "|" + "---|" * 14,
        f"| {run['zoo']} | {run['model']} | {run['architecture']} | {model['n_layers']} | {model['d_model']} "
        f"| {model['n_heads']} | {model['d_head']} | {model['d_mlp']} | {model['d_vocab']} | {model['n_ctx']} "
        f"| {run['init_seed']} | {run['data_seed']} | {len(steps)} | {steps[0]} … {steps[-1]} |",
    ]
    return _front_matter(tags, [data_repo]) + "\n".join([
        f"# {manifest.run}",
        "",
        f"A `{run['model']}` transformer of the `{run['zoo']}` zoo, trained deterministically: every checkpoint "
        f"below is full-state (weights, AdamW moments, loop position) and replays bitwise on the same platform.",
        "",
        *table,
        "",
        "![loss curve](loss.png)",
        "",
        *_held_out_lines(config, evaluations),
        "## Load and replay",
        "",
        "```python",
        "import zoo",
        f"m = zoo.load({run['model']!r}, {seed}, step={steps[-1]}, zoo={run['zoo']!r}, org={org!r})",
        "logits, cache = m.model.run_with_cache(tokens)  # tokens: int64 [batch, pos]",
        "```",
        "",
        f"Checkpoints (`checkpoints/stepNNNNNNNN/`): steps {', '.join(map(str, steps))}. "
        f"Each is tagged by the commit it was published at in `manifest.json`, which lists every file "
        f"with its sha256; `zoo.load` checks each downloaded byte against it.",
        "",
        f"Training data: [{data_repo}](../../datasets/{data_repo}) (token store and per-step index).  ",
        f"Dataset fingerprint: `{manifest.dataset_fingerprint}`  ",
        f"Code version: `{manifest.code_version}`; platform: torch {manifest.environment.torch}, "
        f"{manifest.environment.device}.",
        "",
    ])


def _held_out_lines(config: dict[str, Any], evaluations: Sequence[dict[str, Any]]) -> list[str]:
    if not evaluations:
        return []
    last = evaluations[-1]
    return [f"Held-out loss (the dashed line): {last['held_out_loss']:.4f} at step {last['step']}, on "
            f"{config['data']['held_out_docs']} documents never trained on ({last['held_out_tokens']:,} tokens), "
            f"evaluated at every checkpoint (`eval.json` beside each).", ""]


def loss_png(records: list[dict[str, Any]], title: str, evaluations: Sequence[dict[str, Any]] = ()) -> bytes:
    """The loss curve as PNG bytes, without the metadata (software version) that would vary; with
    `evaluations`, the held-out loss at every checkpoint beside the training loss."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5), dpi=100)
    axes = figure.add_subplot()
    axes.plot([r["step"] for r in records], [r["loss"] for r in records], linewidth=1,
              label="training (each update's batch)")
    if evaluations:
        axes.plot([e["step"] for e in evaluations], [e["held_out_loss"] for e in evaluations], "--", linewidth=1.2,
                  label="held out (every checkpoint)")
        axes.legend()
    axes.set(xlabel="step", ylabel="loss", title=title)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()
