"""Analyses that use the zoo as a model system: the induction bump, grokking, seed statistics,
document learning curves, and export to TransformerLens. Each reads models through `zoo.load`
(or a local run directory) and writes its numbers as JSON next to its plot."""

from zoo.analysis._errors import AnalysisError, MissingCheckpointsError, RunNotFoundError
from zoo.analysis._runs import RunCheckpoints, local_run, open_runs, published_runs

__all__ = ["AnalysisError", "MissingCheckpointsError", "RunCheckpoints", "RunNotFoundError", "local_run",
           "open_runs", "published_runs"]
