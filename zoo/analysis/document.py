"""Document learning curves: the loss on one document at every checkpoint, with the steps that trained on it.

The memorization-and-forgetting curve researchers compute for Pythia, here exact: the steps
that saw the document are read from the zoo's step index (`where_seen`), the loss from each
checkpoint's weights on the document's stored tokens. The document is fed after an EOS (as
packing puts it after the document before), in windows of n_ctx tokens (each window starts
without the context before it), and its loss is the mean over all its tokens, its EOS
included. Beside it, the run's held-out loss at each checkpoint (when its data has a
held-out split): what the model does on text it never saw. A held-out document was never
trained on: its curve is the held-out baseline itself, one document at a time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib import ticker

from checkpoints_manifest import atomic_write_json
from data_index import StepIndex, TokenStore
from training.model import Transformer, lm_loss
from zoo.analysis import _plots
from zoo.analysis._errors import AnalysisError
from zoo.analysis._runs import RunCheckpoints


@dataclass(frozen=True)
class DocumentPoint:
    step: int
    loss: float


@dataclass(frozen=True)
class DocumentRun:
    """One run's curve on the document."""

    run: str
    model: str
    seed: str
    points: list[DocumentPoint]  # the document's loss at every checkpoint
    seen: list[tuple[int, int]]  # every (step, row) whose sample held part of the document
    trained_at: list[int]  # the distinct steps among them
    held_out: list[DocumentPoint]  # the run's held-out loss at every checkpoint ([] without a split)
    missing_steps: list[int]


@torch.no_grad()
def document_loss(model: Transformer, tokens: np.ndarray, *, eos_id: int, n_ctx: int) -> float:
    """Mean next-token loss of `model` on a document's tokens (its EOS last), fed after an EOS in windows of n_ctx."""
    sequence = torch.from_numpy(np.concatenate([[eos_id], tokens]).astype(np.int64))
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, len(sequence) - 1, n_ctx):
        window = sequence[start:start + n_ctx + 1][None]
        total += lm_loss(model(window[:, :-1]), window[:, 1:]).double() * (window.shape[1] - 1)
    return (total / (len(sequence) - 1)).item()


def analyze_run(run: RunCheckpoints, doc: int, tokens: np.ndarray, store: TokenStore,
                index: StepIndex) -> DocumentRun:
    """The document's loss at every checkpoint of `run`, and when `index` (the run's data seed) trained on it."""
    if (index.data_seed, index.batch_size) != (run.config["run"]["data_seed"], run.config["training"]["batch_size"]):
        raise AnalysisError(f"{run.name} trained with data seed {run.config['run']['data_seed']} and batch size "
                            f"{run.config['training']['batch_size']}; the step index given is of data seed "
                            f"{index.data_seed}, batch size {index.batch_size}")
    n_ctx = run.config["model"]["n_ctx"]
    points = [DocumentPoint(s, document_loss(run.load(s), tokens, eos_id=store.eos_id, n_ctx=n_ctx))
              for s in run.steps]
    seen = index.where_seen(doc)
    held = run.held_out()
    lo, hi = (run.steps[0], run.steps[-1]) if run.steps else (0, -1)
    return DocumentRun(run.name, run.model_name, run.seed, points, seen, sorted({step for step, _ in seen}),
                       [DocumentPoint(s, held[s]) for s in run.steps if s in held],
                       [s for s in run.missing_steps() if lo <= s <= hi])


def analyze(runs: list[RunCheckpoints], doc: int, store: TokenStore, indexes: dict[int, StepIndex],
            out_dir: str | Path, *, name: str | None = None) -> list[DocumentRun]:
    """Curves of document `doc` for every run (indexes: data seed -> its step index); writes
    `document{doc}.json` and `.png` (or `{name}.*`) into `out_dir`."""
    tokens = store.document_tokens(doc)
    if not len(tokens):
        raise AnalysisError(f"document {doc} has no tokens in {store.path} (it lies in the tail dropped by packing)")
    missing = sorted({r.config["run"]["data_seed"] for r in runs} - set(indexes))
    if missing:
        raise AnalysisError(f"no step index for data seed(s) {missing}; build them (zoo train SPEC prepares them)")
    if any(index.store_fingerprint != store.fingerprint for index in indexes.values()):
        raise AnalysisError(f"the step indexes given were built on another store than {store.path}; give the "
                            f"zoo's own data")
    results = [analyze_run(r, doc, tokens, store, indexes[r.config["run"]["data_seed"]]) for r in runs]
    out_dir = Path(out_dir)
    name = name or f"document{doc}"
    out_dir.mkdir(parents=True, exist_ok=True)
    text = store.document_text(doc)
    atomic_write_json(out_dir / f"{name}.json", {
        "analysis": "document", "doc": doc, "held_out": store.is_held_out(doc), "n_tokens": len(tokens),
        "text": text, "runs": [asdict(r) for r in results]})
    plot(results, doc, store.is_held_out(doc), out_dir / f"{name}.png")
    return results


def plot(results: list[DocumentRun], doc: int, held_out: bool, path: Path) -> None:
    """Per model: the document's loss vs step (one colour per seed; the run's held-out loss dashed) with a tick
    at every step that trained on the document; below, the document's loss minus the held-out loss (how much
    better the model does on this document than on text it never saw: memorization, then forgetting)."""
    models = sorted({r.model for r in results})
    gap = any(r.held_out for r in results)
    fig, axes = _plots.subplots(2 if gap else 1, len(models), width=4.6)
    for col, model in enumerate(models):
        ax = axes[0][col]
        runs = [r for r in results if r.model == model]
        for k, r in enumerate(runs):
            color = f"C{k}"
            steps = [p.step for p in r.points]
            _plots.plot_series(ax, steps, [p.loss for p in r.points], r.missing_steps, color=color, linewidth=1.2,
                               label=f"seed {r.seed}")
            if r.held_out:
                _plots.plot_series(ax, [p.step for p in r.held_out], [p.loss for p in r.held_out], r.missing_steps,
                                   color=color, linestyle="--", linewidth=0.8)
            for a in [row[col] for row in axes]:
                a.plot(r.trained_at, [0.03 + 0.05 * k] * len(r.trained_at), "|", color=color, markersize=9,
                       transform=a.get_xaxis_transform())
            if gap and r.held_out:
                held = {p.step: p.loss for p in r.held_out}
                both = [p for p in r.points if p.step in held]
                _plots.plot_series(axes[1][col], [p.step for p in both], [p.loss - held[p.step] for p in both],
                                   r.missing_steps, color=color, linewidth=1.0)
        ax.set_title(f"{model}: document {doc}" + (" (held out: never trained on)" if held_out else ""), fontsize=9)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(ticker.FormatStrFormatter("%g"))
        ax.set_ylabel("loss (nats per token)")
        ax.plot([], [], "k--", linewidth=0.8, label="held-out loss")
        ax.plot([], [], "k|", markersize=9, label="a step trained on it")
        ax.legend(fontsize=6)
        _plots.step_axis(ax, log=False)  # the steps that train on a document spread over the whole run
        if gap:
            below = axes[1][col]
            below.axhline(0.0, color="grey", linewidth=0.8)
            below.set_ylabel("document − held-out loss")
            _plots.step_axis(below, log=False)
    _plots.save_png(fig, path)
