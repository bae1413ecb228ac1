"""The zoo card: README.md of a zoo's dataset repo, where a person lands first, and its figure.

Every run's loss curve on one figure (a colour per family, a line style per size, the seeds of
each model as a band around their mean), the table of families × sizes × seeds with checkpoint
counts and links to the run repos, the dataset fingerprint, and three lines to load and replay.
The figure is a PNG published beside the card. Every byte is a function of the runs' files, so
publishing again yields the same card and makes no commit.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np

from checkpoints_manifest import Manifest
from training.model import ARCHITECTURES
from training.schedule import describe_steps
from training.spec import seeds_label
from zoo.hub.card import _front_matter, seed_arguments

FIGURE = "loss.png"
_LINE_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class CardRun:
    """What the zoo card shows of one run."""

    name: str  # the run's repo name, e.g. toy-solu-2l-seed1
    config: dict[str, Any]
    steps: list[int]  # checkpoint steps
    losses: list[tuple[int, float]]  # (step, loss) of every update logged

    @property
    def model(self) -> str:
        return self.config["run"]["model"]

    @property
    def seeds(self) -> str:
        return seeds_label(self.config["run"]["init_seed"], self.config["run"]["data_seed"])


def zoo_card(zoo: str, org: str, runs: list[CardRun], manifest: Manifest, data_seeds: list[int]) -> str:
    """README.md of the dataset repo of `zoo`: the figure, the runs, the data, how to load and replay."""
    models = _by_model(runs)
    window = _window(runs)
    first = models[0][1][0]
    where = f'{seed_arguments(first.config["run"])}, zoo="{zoo}", org="{org}"'
    rows = []
    for model, group in models:
        config = group[0].config
        steps = {tuple(r.steps) for r in group}
        checkpoints = (f"{len(group[0].steps)}: {describe_steps(group[0].steps)}" if len(steps) == 1
                       else " / ".join(str(len(r.steps)) for r in group) + " (the seeds differ)")
        finals = [np.mean([loss for _, loss in r.losses[-window:]]) for r in group if r.losses]
        final = f"{np.mean(finals):.3f} ± {np.std(finals):.3f}" if len(finals) == len(group) else "—"
        links = ", ".join(f"[{r.seeds}](../../{org}/{r.name})" for r in group)
        rows.append(f"| {model} | {config['run']['architecture']} | {config['model']['n_layers']} "
                    f"| {config['model']['d_model']} | {links} | {checkpoints} | {final} |")
    return _front_matter(["zoo", "mechanistic-interpretability", "zarr", zoo], []) + "\n".join([
        f"# The `{zoo}` zoo",
        "",
        f"{len(runs)} runs of {len(models)} models, trained deterministically by zoo: every checkpoint is "
        f"full-state (weights, AdamW moments, loop position) and replays bit for bit on the same platform, "
        f"from this repo's data and the run's repo alone.",
        "",
        f"![loss of every run]({FIGURE})",
        "",
        "| model | family | layers | d_model | seeds (run repos) | checkpoints | final loss |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Final loss: mean ± std over seeds of each run's "
        + ("last logged loss." if window == 1 else f"mean loss over its last {window} updates."),
        "",
        "## Load and replay",
        "",
        "```python",
        "import zoo, zoo.replay",
        f'm = zoo.load("{first.model}", {where})  # the final checkpoint, every byte verified',
        f'zoo.replay.replay("{first.model}", {where}, from_step={first.steps[-2:][0]}, '
        f'to_step={first.steps[-1]}).verdict()  # BITWISE EQUAL',
        "```",
        "",
        "## Data",
        "",
        "| folder | holds |",
        "|---|---|",
        "| `data/` | `tokenizer.json`, the zarr token store (`tokens`, `doc_offsets`), `store.json` |",
        *(f"| `index/data{d}/` | zarr step index of data_seed {d}: `batches [step, row]` and document → "
          f"(step, row) |" for d in data_seeds),
        "",
        f"Dataset fingerprint: `{manifest.dataset_fingerprint}` (sha256 over token store and tokenizer); "
        f"`manifest.json` lists every file with its sha256.",
        "",
    ])


def zoo_loss_png(zoo: str, runs: list[CardRun]) -> bytes:
    """Every run's loss on one figure: per model the mean over its seeds, and a band from the lowest to the
    highest seed; each smoothed by a moving average. PNG bytes without varying metadata."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import FormatStrFormatter

    window = _window(runs)
    figure = Figure(figsize=(8, 4.5), dpi=100)
    axes = figure.add_subplot()
    colours = {arch: f"C{i}" for i, arch in enumerate(ARCHITECTURES)}
    for model, group in _by_model(runs):
        architecture = group[0].config["run"]["architecture"]
        sizes = sorted({_size(r) for r in runs if r.config["run"]["architecture"] == architecture})
        style = _LINE_STYLES[sizes.index(_size(group[0])) % len(_LINE_STYLES)]
        steps = sorted(set.intersection(*({s for s, _ in r.losses} for r in group)))
        if not steps:
            continue  # not trained yet: nothing to draw
        curves = np.array([_moving_average([dict(r.losses)[s] for s in steps], window) for r in group])
        axes.plot(steps, curves.mean(axis=0), color=colours[architecture], linestyle=style, linewidth=1.2,
                  label=f"{model} ({len(group)} seed{'s' if len(group) > 1 else ''})")
        if len(group) > 1:
            axes.fill_between(steps, curves.min(axis=0), curves.max(axis=0), color=colours[architecture], alpha=0.2,
                              linewidth=0)
    axes.set_xscale("log")
    axes.set_yscale("log")  # early steps and the last differences between models both stay visible
    axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    smoothed = f"; moving average over {window} steps" if window > 1 else ""
    axes.set(xlabel="step", ylabel="loss", title=f"{zoo}: loss of every run (its seeds as a band{smoothed})")
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small", ncols=2)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _size(run: CardRun) -> tuple[int, int]:
    return run.config["model"]["n_layers"], run.config["model"]["d_model"]


def _by_model(runs: list[CardRun]) -> list[tuple[str, list[CardRun]]]:
    """Runs grouped by model, families in ARCHITECTURES order, sizes by depth then width, seeds in order."""
    def key(r: CardRun) -> tuple:
        return (ARCHITECTURES.index(r.config["run"]["architecture"]), *_size(r), r.model)

    ordered = sorted(runs, key=lambda r: (*key(r), r.config["run"]["init_seed"], r.config["run"]["data_seed"]))
    return [(group[0].model, group) for _, grouped in groupby(ordered, key=key) for group in [list(grouped)]]


def _window(runs: list[CardRun]) -> int:
    """Updates per moving-average point: about 1/60 of the shortest run, so every curve keeps its shape."""
    return max(1, min(len(r.losses) for r in runs) // 60)


def _moving_average(values: list[float], window: int) -> np.ndarray:
    """The mean of each value and the `window - 1` before it (fewer at the start, so no step is dropped)."""
    sums = np.cumsum(np.asarray(values, dtype=np.float64))
    before = np.concatenate([np.zeros(window), sums[:-window]])[:len(sums)]
    return (sums - before) / np.minimum(np.arange(1, len(sums) + 1), window)
