"""Errors of the training layer: one class per failure a user can act on."""


class TrainingError(RuntimeError):
    """Base class: something about a training request cannot be carried out."""


class SpecError(TrainingError, ValueError):
    """A zoo spec is malformed; the message names the key, its line and the fix."""


class RunDirectoryConflictError(TrainingError):
    """The output directory holds another run's files, or a run that needs --resume."""


class CheckpointError(TrainingError):
    """A checkpoint is missing, incomplete or does not match its manifest."""


class RunLockedError(TrainingError):
    """Another process is training (or publishing) this run right now."""
