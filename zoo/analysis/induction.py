"""The induction bump: in-context learning on repeated random tokens, and each head's induction score.

A sequence of `half` random tokens is shown twice. The tokens are drawn from those the zoo's
training data uses often: a byte-level vocabulary holds many ids (raw bytes, merge
intermediates) that the data never or hardly shows, whose embeddings stay at their
initialization, and no model could copy them; a probe made of them measures the
embeddings, not in-context learning. A model that does in-context learning
predicts the second copy far better than the first (ICL score = mean loss on the first half
minus on the second, in nats), and an induction head at position i of the second copy
attends to the token after the previous occurrence of token i: position i - half + 1.
Measured at every checkpoint, both jump together in a narrow window (Olsson et al. 2022).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from checkpoints_manifest import atomic_write_json
from data_index import TokenStore
from training.model import Transformer
from zoo.analysis import _plots
from zoo.analysis._errors import AnalysisError
from zoo.analysis._runs import RunCheckpoints

_SEED = 20220308  # fixed probe tokens: every checkpoint and every run sees the same sequences
_BATCH = 64
_HEAD_THRESHOLD = 0.5  # an "induction head": more than half its attention on the induction target
_WINDOW = 0.1  # a bump's jump happens within a tenth of the training steps
_JUMP = 1.0  # … and gains at least this many nats of ICL score
_FREQUENT = 0.1  # a probe token occurs at least this fraction of the mean count of the tokens the data uses
_COUNTED_SAMPLES = 1 << 16  # token counts come from the store's first samples (the whole of a small store)


@dataclass(frozen=True)
class InductionPoint:
    """One checkpoint's measurements."""

    step: int
    loss_first: float  # mean next-token loss on the first copy
    loss_second: float  # … and on the second
    icl_score: float  # loss_first - loss_second
    head_scores: list[list[float]]  # [layer][head] mean attention to the induction target


@dataclass(frozen=True)
class Bump:
    """The ICL score's steepest jump: its largest gain between two checkpoints at most a tenth of the
    training apart. (A window holding 10-90% of the whole rise would also count the slow gains
    after the head has formed, as the rest of the model learns to use it.)"""

    start: int
    end: int
    jump: float  # ICL score at `end` minus at `start`, nats
    rise: float  # final ICL score minus the step-0 one
    max_head_score: float  # best head at the last checkpoint
    best_head: str  # "L{layer}H{head}"
    has_bump: bool  # a jump of >= 1 nat, and a head above 0.5 at the end


@dataclass(frozen=True)
class InductionRun:
    """One run's curve, with the gaps in its checkpoints named."""

    run: str
    model: str
    seed: str
    points: list[InductionPoint]
    missing_steps: list[int]
    bump: Bump


def probe_vocabulary(store: TokenStore) -> torch.Tensor:
    """Ascending ids of the tokens the store's data uses often (never the EOS), to draw probes from."""
    n = min(store.n_samples, _COUNTED_SAMPLES)
    counts = np.bincount(store.samples(np.arange(n)).ravel(), minlength=store.vocab_size)
    counts[store.eos_id] = 0
    used = counts[counts > 0]
    return torch.from_numpy(np.flatnonzero(counts >= _FREQUENT * used.mean())) if used.size else torch.empty(0)


def repeated_tokens(vocabulary: torch.Tensor, half: int, batch: int = _BATCH, seed: int = _SEED) -> torch.Tensor:
    """[batch, 2*half] int64: tokens drawn uniformly from `vocabulary`, followed by the same tokens again."""
    g = torch.Generator().manual_seed(seed)
    first = vocabulary[torch.randint(0, len(vocabulary), (batch, half), generator=g)]
    return torch.cat([first, first], dim=1)


@torch.no_grad()
def measure(model: Transformer, tokens: torch.Tensor, step: int = 0) -> InductionPoint:
    """ICL score and every head's induction score of `model` on repeated `tokens` [batch, 2*half]."""
    half = tokens.shape[1] // 2
    patterns: dict[str, torch.Tensor] = {}

    def keep(pattern: torch.Tensor, hook) -> None:
        patterns[hook.name] = pattern

    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    with model.hooks([(name, keep) for name in names]):
        logits = model(tokens)
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="none")
    nll = nll.view(tokens.shape[0], -1)  # column j: loss of predicting token j+1
    loss_first = nll[:, : half - 1].mean().item()
    loss_second = nll[:, half:].mean().item()
    dest = torch.arange(half, 2 * half)
    heads = [patterns[name][:, :, dest, dest - half + 1].mean(dim=(0, 2)).tolist() for name in names]
    return InductionPoint(step, loss_first, loss_second, loss_first - loss_second, heads)


def analyze_run(run: RunCheckpoints, vocabulary: torch.Tensor) -> InductionRun:
    """Measure every checkpoint of `run` on the same probe tokens from `vocabulary`."""
    tokens = repeated_tokens(vocabulary, run.config["model"]["n_ctx"] // 2)
    points = [measure(run.load(s), tokens, s) for s in run.steps]
    lo, hi = (run.steps[0], run.steps[-1]) if run.steps else (0, -1)
    missing = [s for s in run.missing_steps() if lo <= s <= hi]
    return InductionRun(run.name, run.model_name, run.seed, points, missing, find_bump(points, run.config))


def find_bump(points: list[InductionPoint], config: dict) -> Bump:
    """The ICL score's steepest jump, and whether it is a bump: >= 1 nat, and an induction head at the end."""
    window = _WINDOW * config["training"]["steps"]
    start, end = points[-1], points[-1]
    for i, a in enumerate(points):
        for b in points[i + 1:]:
            if b.step - a.step > window:
                break
            if b.icl_score - a.icl_score > end.icl_score - start.icl_score:
                start, end = a, b
    jump = end.icl_score - start.icl_score
    scores = points[-1].head_scores
    layer, head = max(((l, h) for l in range(len(scores)) for h in range(len(scores[l]))),
                      key=lambda lh: scores[lh[0]][lh[1]])
    best = scores[layer][head]
    return Bump(start.step, end.step, jump, points[-1].icl_score - points[0].icl_score, best, f"L{layer}H{head}",
                jump >= _JUMP and best > _HEAD_THRESHOLD)


def analyze(runs: list[RunCheckpoints], store: TokenStore, out_dir: str | Path,
            *, name: str = "induction") -> list[InductionRun]:
    """Measure every run on probes from the zoo's `store`, write `{name}.json` and `{name}.png` into
    `out_dir`, and return the curves."""
    out_dir = Path(out_dir)
    vocabulary = probe_vocabulary(store)
    if len(vocabulary) < 2:
        raise AnalysisError(f"token store {store.path} uses fewer than 2 tokens; an induction probe needs a "
                            f"zoo trained on varied text")
    results = [analyze_run(run, vocabulary) for run in runs]
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{name}.json", {"analysis": "induction", "probe_tokens": len(vocabulary),
                                                 "runs": [asdict(r) for r in results]})
    plot(results, out_dir / f"{name}.png")
    return results


def plot(results: list[InductionRun], path: Path) -> None:
    """Per model: ICL score vs step (one line per seed) over the best head's induction score vs step."""
    models = sorted({r.model for r in results}, key=lambda m: (m.split("-")[-1], m))
    fig, axes = _plots.subplots(2, len(models))
    for col, model in enumerate(models):
        icl_ax, head_ax = axes[0][col], axes[1][col]
        for r in (r for r in results if r.model == model):
            steps = [p.step for p in r.points]
            line = dict(marker=".", markersize=3, label=f"seed {r.seed}")
            _plots.plot_series(icl_ax, steps, [p.icl_score for p in r.points], r.missing_steps, **line)
            best = [max(max(layer) for layer in p.head_scores) for p in r.points]
            _plots.plot_series(head_ax, steps, best, r.missing_steps, **line)
            if r.missing_steps:
                icl_ax.set_title(f"{model} (missing: {_short(r.missing_steps)})", fontsize=8)
        icl_ax.set_title(icl_ax.get_title() or model)
        icl_ax.set_ylabel("ICL score (nats)")
        head_ax.set_ylabel("best head's induction score")
        head_ax.axhline(_HEAD_THRESHOLD, color="grey", lw=0.8, ls="--")
        head_ax.set_ylim(0, 1)
        for ax in (icl_ax, head_ax):
            _plots.step_axis(ax, log=False)  # the bump is one window late in training
        icl_ax.legend(fontsize=7)
    _plots.save_png(fig, path)


def _short(steps: list[int]) -> str:
    return ", ".join(map(str, steps)) if len(steps) <= 4 else f"{steps[0]}…{steps[-1]} ({len(steps)})"
