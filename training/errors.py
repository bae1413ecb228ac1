"""Errors of the training layer: one class per failure a user can act on."""

import errno


class TrainingError(RuntimeError):
    """Base class: something about a training request cannot be carried out."""


class SpecError(TrainingError, ValueError):
    """A zoo spec is malformed; the message names the key, its line and the fix."""


class RunDirectoryConflictError(TrainingError):
    """The output directory holds another run's files, or a run that needs --resume."""


class CheckpointError(TrainingError):
    """A checkpoint is missing, incomplete or does not match its manifest."""


class TensorFileError(CheckpointError):
    """A safetensors file is malformed or holds other tensors, dtypes, shapes or byte ranges than it must;
    refused from its header, before anything was loaded."""


class ResourceError(TrainingError):
    """A run (or a model) needs more memory or disk than this machine or device has; the message gives
    the estimate and the limit."""


class StoppedError(TrainingError):
    """Training stopped at a step boundary because it was asked to (e.g. by a scheduler's SIGTERM).
    Nothing is lost: resume goes on from the last checkpoint."""


class RunLockedError(TrainingError):
    """Another process is training (or publishing) this run right now."""


class StorageError(TrainingError):
    """The output directory cannot be written: the disk is full, read-only, or not writable by us."""


class PlatformError(TrainingError):
    """This process cannot compute on the platform a run pins (a CPU level, a cuBLAS workspace)."""


class CpuLevelNotSetError(PlatformError):
    """A run pins a CPU level this process was not started with; zoo commands restart themselves with it."""

    def __init__(self, level: str, missing: dict[str, str]) -> None:
        self.level = level
        settings = " ".join(f"{k}={v}" for k, v in missing.items())
        super().__init__(f"the run pins CPU level {level!r}, which torch, MKL and oneDNN read from the environment "
                         f"when the process starts; this one was started without it. Start Python with {settings} "
                         f"(zoo commands do so themselves)")


class PlatformChangedError(TrainingError):
    """A run would resume on another platform than it was trained on; the message names the differences."""


class StaleStepIndexError(TrainingError):
    """A zoo's step index is not the one its runs trained with (another batch size, step count or store)."""


def describe_os_error(e: OSError) -> str:
    """What went wrong with a write, in the words a user can act on."""
    causes = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
              errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied"}
    return causes.get(e.errno, str(e))
