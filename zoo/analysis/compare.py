"""Seed statistics: final loss mean ± std across seeds, per size, for two families (e.g. SoLU vs GELU).

A run's final loss is the mean training loss of the updates logged in its last checkpoint
(those since the checkpoint before), so one noisy batch does not decide it.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from checkpoints_manifest import atomic_write_json
from zoo.analysis import _plots
from zoo.analysis._errors import AnalysisError
from zoo.analysis._runs import RunCheckpoints


@dataclass(frozen=True)
class SizeStats:
    family: str  # architecture, e.g. "solu"
    size: str  # e.g. "2l"
    n_seeds: int
    mean: float
    std: float  # sample std (n-1); 0.0 for a single seed
    losses: dict[str, float]  # seed -> final loss


def final_loss(run: RunCheckpoints) -> float:
    losses = run.last_losses()
    if not losses:
        raise AnalysisError(f"{run.name}: its last checkpoint logs no update; train it past step 0")
    return statistics.fmean(losses)


def compare(runs: list[RunCheckpoints], family_a: str, family_b: str) -> list[SizeStats]:
    """Per family and size, final loss across seeds; both families must be among `runs`."""
    stats = []
    for family in (family_a, family_b):
        chosen = [r for r in runs if r.config["run"]["architecture"] == family]
        if not chosen:
            known = sorted({r.config["run"]["architecture"] for r in runs})
            raise AnalysisError(f"no run of family {family!r} among the runs given (families: {', '.join(known)})")
        for size in sorted({r.model_name.removeprefix(f"{family}-") for r in chosen}):
            losses = {r.seed: final_loss(r) for r in chosen if r.model_name == f"{family}-{size}"}
            values = list(losses.values())
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            stats.append(SizeStats(family, size, len(values), statistics.fmean(values), std, losses))
    return stats


def table(stats: list[SizeStats]) -> str:
    """Plain-text table: family, size, seeds, mean ± std."""
    rows = [f"{'family':<10} {'size':<6} {'seeds':>5}  final loss (mean ± std)"]
    rows += [f"{s.family:<10} {s.size:<6} {s.n_seeds:>5}  {s.mean:.4f} ± {s.std:.4f}" for s in stats]
    return "\n".join(rows)


def analyze(runs: list[RunCheckpoints], family_a: str, family_b: str, out_dir: str | Path,
            *, name: str = "compare") -> list[SizeStats]:
    """Compare, then write `{name}.json` and `{name}.png` (mean ± std bars per size) into `out_dir`."""
    stats = compare(runs, family_a, family_b)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / f"{name}.json", {"analysis": "compare", "families": [family_a, family_b],
                                                 "sizes": [asdict(s) for s in stats]})
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
    ax.set_ylabel("final training loss (mean ± std over seeds)")
    ax.legend()
    _plots.save_png(fig, out_dir / f"{name}.png")
    return stats
