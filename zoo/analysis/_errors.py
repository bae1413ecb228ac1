"""The errors an analysis raises: each names what is wrong and what to do."""


class AnalysisError(Exception):
    """Base class: an analysis could not run on the runs it was given."""


class RunNotFoundError(AnalysisError):
    """A run argument is neither a local run directory nor a published model."""


class MissingCheckpointsError(AnalysisError):
    """A run lacks checkpoints the analysis needs (it names the steps)."""
