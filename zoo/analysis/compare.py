"""Seed statistics: final loss mean ± std across seeds, per size, for two families (e.g. SoLU vs GELU).

When every run compared has a held-out split, the families are ranked by the held-out loss at
the last checkpoint: the loss on documents no run trained on, the same for every run. Else by
the final training loss: the mean loss of the updates logged in the last checkpoint (those
since the checkpoint before), so one noisy batch does not decide it. Both are reported.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from checkpoints_manifest import atomic_write_json
from zoo.analysis import _plots
from zoo.analysis._errors import AnalysisError
from zoo.analysis._runs import RunCheckpoints


HELD_OUT = "held-out loss at the last checkpoint"
TRAINING = "final training loss"


@dataclass(frozen=True)
class SizeStats:
    family: str  # architecture, e.g. "solu"
    size: str  # e.g. "2l"
    n_seeds: int
    metric: str  # what mean, std and losses are: HELD_OUT when every run compared has a split, else TRAINING
    mean: float
    std: float  # sample std (n-1); 0.0 for a single seed
    losses: dict[str, float]  # seed -> the metric
    training_mean: float  # the final training loss, reported beside the held-out loss
    training_std: float
    training_losses: dict[str, float]


def final_loss(run: RunCheckpoints) -> float:
    losses = run.last_losses()
    if not losses:
        raise AnalysisError(f"{run.name}: its last checkpoint logs no update; train it past step 0")
    return statistics.fmean(losses)


def held_out_loss(run: RunCheckpoints) -> float | None:
    """The held-out loss at the run's last checkpoint; None for a run without a held-out split."""
    return run.held_out().get(run.steps[-1]) if run.steps else None


def compare(runs: list[RunCheckpoints], family_a: str, family_b: str) -> list[SizeStats]:
    """Per family and size, final loss across seeds; both families must be among `runs`."""
    chosen = {}
    for family in (family_a, family_b):
        chosen[family] = [r for r in runs if r.config["run"]["architecture"] == family]
        if not chosen[family]:
            known = sorted({r.config["run"]["architecture"] for r in runs})
            raise AnalysisError(f"no run of family {family!r} among the runs given (families: {', '.join(known)})")
    held_out = {r.name: held_out_loss(r) for rs in chosen.values() for r in rs}
    metric = HELD_OUT if None not in held_out.values() else TRAINING
    stats = []
    for family, family_runs in chosen.items():
        for size in sorted({r.model_name.removeprefix(f"{family}-") for r in family_runs}):
            same = [r for r in family_runs if r.model_name == f"{family}-{size}"]
            training = {r.seed: final_loss(r) for r in same}
            losses = {r.seed: held_out[r.name] for r in same} if metric == HELD_OUT else training
            stats.append(SizeStats(family, size, len(same), metric, *_spread(losses), losses, *_spread(training),
                                   training))
    return stats


def _spread(losses: dict[str, float]) -> tuple[float, float]:
    values = list(losses.values())
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table(stats: list[SizeStats]) -> str:
    """Plain-text table: family, size, seeds, mean ± std (and the final training loss beside a held-out loss)."""
    held_out = stats[0].metric == HELD_OUT
    width = len(stats[0].metric) + 16
    head = f"{'family':<10} {'size':<6} {'seeds':>5}  " + f"{stats[0].metric + ' (mean ± std)':<{width}}"
    rows = [head + (TRAINING if held_out else "")]
    for s in stats:
        row = f"{s.family:<10} {s.size:<6} {s.n_seeds:>5}  " + f"{f'{s.mean:.4f} ± {s.std:.4f}':<{width}}"
        rows.append(row + (f"{s.training_mean:.4f} ± {s.training_std:.4f}" if held_out else ""))
    return "\n".join(row.rstrip() for row in rows)


def analyze(runs: list[RunCheckpoints], family_a: str, family_b: str, out_dir: str | Path,
            *, name: str = "compare") -> list[SizeStats]:
    """Compare, then write `{name}.json` and `{name}.png` (mean ± std bars per size) into `out_dir`."""
    stats = compare(runs, family_a, family_b)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{name}.json", {"analysis": "compare", "families": [family_a, family_b],
                                                 "metric": stats[0].metric, "sizes": [asdict(s) for s in stats]})
    sizes = sorted({s.size for s in stats})
    fig, axes = _plots.subplots(1, 1, width=5)
    ax = axes[0][0]
    for k, family in enumerate((family_a, family_b)):
        mine = {s.size: s for s in stats if s.family == family}
        xs = [i + (k - 0.5) * 0.3 for i, size in enumerate(sizes) if size in mine]
        ax.errorbar(xs, [mine[z].mean for z in sizes if z in mine], yerr=[mine[z].std for z in sizes if z in mine],
                    fmt="o", capsize=4, label=family)
        for x, size in zip(xs, [z for z in sizes if z in mine]):
            ax.scatter([x] * len(mine[size].losses), list(mine[size].losses.values()), s=8, color="grey", zorder=3)
    ax.set_xticks(range(len(sizes)), sizes)
    ax.set_xlabel("size")
    ax.set_ylabel(f"{stats[0].metric} (mean ± std over seeds)")
    ax.legend()
    _plots.save_png(fig, out_dir / f"{name}.png")
    return stats
