"""Grokking: train and test accuracy of modular addition at every checkpoint.

The `grokking` zoo's documents are single equations `a + b = c`; the equations in its
token store are the train split, every other equation mod p is the test split. So the
split is read off the data the run trained on, never restated here.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from checkpoints_manifest import atomic_write_json
from data_index import TokenStore
from training.model import Transformer
from zoo.analysis import _plots
from zoo.analysis._errors import AnalysisError
from zoo.analysis._runs import RunCheckpoints

_EQUATION = re.compile(r"(\d+) \+ (\d+) = (\d+)")


@dataclass(frozen=True)
class Split:
    """Every equation mod `p` as model input [n, 4] (a + b =), its answer token, and train membership."""

    p: int
    inputs: torch.Tensor  # int64 [p*p, 4]
    answers: torch.Tensor  # int64 [p*p]
    train: torch.Tensor  # bool [p*p]


@dataclass(frozen=True)
class GrokPoint:
    step: int
    train_acc: float
    test_acc: float


@dataclass(frozen=True)
class GrokRun:
    run: str
    seed: str
    points: list[GrokPoint]
    missing_steps: list[int]
    train_100_step: int | None  # first checkpoint with 100% train accuracy
    test_95_step: int | None  # first checkpoint with > 95% test accuracy
    grokked: bool  # test > 95% reached at least twice as late as train 100% (and > 0 steps later)


def split(store: TokenStore) -> Split:
    """The train/test split of a grokking token store, every equation encoded by its own tokenizer."""
    train = set()
    p = 0
    for doc in range(store.n_docs):
        match = _EQUATION.fullmatch(store.document_text(doc))
        if match is None:
            raise AnalysisError(f"document {doc} of {store.path} is not an equation `a + b = c`; "
                                f"the grokking analysis needs a store of the `grokking` corpus")
        a, b, c = map(int, match.groups())
        train.add((a, b))
        if a + b > c:  # c = (a + b) mod p, so here p = a + b - c exactly
            p = a + b - c
    if p == 0:
        raise AnalysisError(f"{store.path}: no equation wraps around the modulus, so p is unknown; "
                            f"prepare the store with more documents")
    pairs = [(a, b) for a in range(p) for b in range(p)]
    encoded = [store.tokenizer.encode(f"{a} + {b} = {(a + b) % p}", add_special_tokens=False).ids for a, b in pairs]
    if any(len(ids) != 5 for ids in encoded):
        raise AnalysisError("the store's tokenizer does not make every number one token; "
                            "train the grokking zoo with a vocabulary that holds every number")
    ids = torch.tensor(encoded)
    return Split(p, ids[:, :4], ids[:, 4], torch.tensor([pair in train for pair in pairs]))


@torch.no_grad()
def accuracy(model: Transformer, data: Split, step: int = 0) -> GrokPoint:
    """Fraction of train and of test equations whose answer is the model's top prediction after `=`."""
    correct = model(data.inputs)[:, -1].argmax(-1) == data.answers
    return GrokPoint(step, correct[data.train].float().mean().item(), correct[~data.train].float().mean().item())


def analyze_run(run: RunCheckpoints, data: Split) -> GrokRun:
    points = [accuracy(run.load(s), data, s) for s in run.steps]
    train_100 = next((p.step for p in points if p.train_acc == 1.0), None)
    test_95 = next((p.step for p in points if p.test_acc > 0.95), None)
    grokked = train_100 is not None and test_95 is not None and test_95 > train_100 and test_95 >= 2 * train_100
    lo, hi = (run.steps[0], run.steps[-1]) if run.steps else (0, -1)
    missing = [s for s in run.missing_steps() if lo <= s <= hi]
    return GrokRun(run.name, run.seed, points, missing, train_100, test_95, grokked)


def analyze(runs: list[RunCheckpoints], store: TokenStore, out_dir: str | Path,
            *, name: str = "grokking") -> list[GrokRun]:
    """Accuracy curves of every run on the store's split; writes `{name}.json` and `{name}.png`."""
    data = split(store)
    results = [analyze_run(run, data) for run in runs]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{name}.json", {
        "analysis": "grokking", "p": data.p, "n_train": int(data.train.sum()), "n_test": int((~data.train).sum()),
        "runs": [asdict(r) for r in results]})
    plot(results, out_dir / f"{name}.png")
    return results


def plot(results: list[GrokRun], path: Path) -> None:
    """One panel per seed: train and test accuracy vs step."""
    fig, axes = _plots.subplots(1, len(results))
    for ax, r in zip(axes[0], results):
        steps = [p.step for p in r.points]
        _plots.plot_series(ax, steps, [p.train_acc for p in r.points], r.missing_steps, label="train")
        _plots.plot_series(ax, steps, [p.test_acc for p in r.points], r.missing_steps, label="test")
        title = r.run + (f" (missing {len(r.missing_steps)} ckpts)" if r.missing_steps else "")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
        _plots.step_axis(ax)
        ax.legend(fontsize=7)
    _plots.save_png(fig, path)
