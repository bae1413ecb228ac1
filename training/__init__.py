"""training: the model family, the deterministic loop, full-state checkpoints and resume."""

from training.errors import (
    CheckpointError,
    ResourceError,
    RunDirectoryConflictError,
    RunLockedError,
    SpecError,
    StoppedError,
    StorageError,
    TensorFileError,
    TrainingError,
)
from training.loop import RunResult, StepStats, build_model, build_optimizer, train_run, train_step, train_zoo
from training.model import ARCHITECTURES, ModelConfig, Transformer, init_weights, lm_loss
from training.schedule import checkpoint_steps, learning_rate
from training.spec import BUILTIN_SPECS, SPEC_ARGUMENT_HELP, RunSpec, ZooSpec, load_spec, parse_spec

__all__ = [
    "ARCHITECTURES", "BUILTIN_SPECS", "CheckpointError", "ModelConfig", "ResourceError", "RunDirectoryConflictError",
    "RunLockedError", "RunResult", "RunSpec", "SPEC_ARGUMENT_HELP", "SpecError", "StepStats", "StoppedError",
    "StorageError", "TensorFileError", "TrainingError", "Transformer", "ZooSpec", "build_model", "build_optimizer",
    "checkpoint_steps", "init_weights", "learning_rate", "lm_loss", "load_spec", "parse_spec", "train_run",
    "train_step", "train_zoo",
]
