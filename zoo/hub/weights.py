"""Build a model from a published weights file, refusing anything malformed before allocating.

safetensors holds no code, but a hostile or broken file can still claim a huge header,
other tensors, dtypes or shapes than the config's model, or a config can ask for an
absurd model. Each is refused here with UnsafeArtifactError, from sizes alone: the
model's memory comes from the config's arithmetic (training/footprint.py, checked before
the model is built) and the tensor table from the file's header (training/tensors_file.py,
checked before any tensor is loaded: the reader resume and replay use too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.errors import ResourceError, TensorFileError
from training.footprint import check_model
from training.model import ModelConfig, ModelConfigError, Transformer
from training.tensors_file import read_tensors
from zoo.hub.errors import UnsafeArtifactError


def model_config(config: dict[str, Any], where: str, device: str = "cpu") -> ModelConfig:
    """The run's model config, refused if it is malformed or its weights exceed `device`'s memory."""
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (ModelConfigError, KeyError, TypeError) as e:
        raise UnsafeArtifactError(f"{where}: config.json has no valid model config ({e}); republish the run") from None
    try:
        check_model(cfg, device=device, what=f"{where}/config.json")
    except ResourceError as e:
        raise UnsafeArtifactError(f"{e}: the config is corrupt or hostile, or the model is too large for this "
                                  f"machine") from None
    return cfg


def load_weights(cfg: ModelConfig, path: Path, where: str) -> Transformer:
    """A model of `cfg` with the weights of the safetensors file `path`, whose header must list exactly
    the model's tensors (names, dtypes, shapes) laid out within the file."""
    model = Transformer(cfg)  # parameters are torch.empty: memory is only touched once weights are assigned
    try:
        tensors = read_tensors(path, model.state_dict(), where)
    except TensorFileError as e:
        raise UnsafeArtifactError(str(e)) from None
    model.load_state_dict(tensors, assign=True)
    return model
