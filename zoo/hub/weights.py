"""Build a model from a published weights file, refusing anything malformed before allocating.

safetensors holds no code, but a hostile or broken file can still claim a huge header,
other tensors, dtypes or shapes than the config's model, or a config can ask for an
absurd model. Each is refused here with UnsafeArtifactError, from sizes alone: the
parameter count comes from the config's arithmetic (checked before the model is built)
and the tensor table from the file's header (checked before any tensor is loaded).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from training.model import ModelConfig, ModelConfigError, Transformer
from zoo.hub.errors import UnsafeArtifactError

MAX_PARAMS = 2_000_000_000  # 8 GB of float32: far above any zoo model, far below an absurd or hostile config
MAX_HEADER_BYTES = 16 << 20  # a header lists names, dtypes, shapes: even 100k tensors fit in a few MB
_DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2),
           torch.float64: ("F64", 8)}


def model_config(config: dict[str, Any], where: str) -> ModelConfig:
    """The run's model config, refused if it is malformed or asks for more than MAX_PARAMS parameters."""
    try:
        cfg = ModelConfig.from_dict(config["model"])
    except (ModelConfigError, KeyError, TypeError) as e:
        raise UnsafeArtifactError(f"{where}: config.json has no valid model config ({e}); republish the run") from None
    n = cfg.n_params()
    if n > MAX_PARAMS:
        raise UnsafeArtifactError(f"{where}: config.json asks for a model of {n:.3g} parameters; this loader builds "
                                  f"at most {MAX_PARAMS:.0e} (zoo models are small), so the config is corrupt or "
                                  f"hostile. Nothing was allocated")
    return cfg


def load_weights(cfg: ModelConfig, path: Path, where: str) -> Transformer:
    """A model of `cfg` with the weights of the safetensors file `path`, whose header must list exactly
    the model's tensors (names, dtypes, shapes) within the file's size."""
    model = Transformer(cfg)  # parameters are torch.empty: memory is only touched once weights are assigned
    _check_header(_header(path, where), model.state_dict(), path.stat().st_size, where)
    model.load_state_dict(safetensors.torch.load_file(path), assign=True)
    return model


def _header(path: Path, where: str) -> dict[str, Any]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or length > min(MAX_HEADER_BYTES, size - 8):
            raise UnsafeArtifactError(f"{where}: not a safetensors file (header length {length} in a file of "
                                      f"{size} bytes; at most {MAX_HEADER_BYTES} allowed); refused unread. "
                                      f"Only safetensors weights are loaded: republish the run")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise UnsafeArtifactError(f"{where}: not a safetensors file (its header is not a JSON object); refused")
    header.pop("__metadata__", None)
    return header


def _check_header(header: dict[str, Any], expected: dict[str, torch.Tensor], size: int, where: str) -> None:
    if header.keys() != expected.keys():
        extra, missing = sorted(header.keys() - expected.keys()), sorted(expected.keys() - header.keys())
        raise UnsafeArtifactError(f"{where}: tensors differ from the config's model (unexpected: {extra[:5]}, "
                                  f"missing: {missing[:5]}); refused before loading")
    for name, want in expected.items():
        info = header[name]
        dtype, itemsize = _DTYPES[want.dtype]
        shape = list(want.shape)
        ok = isinstance(info, dict) and info.get("dtype") == dtype and info.get("shape") == shape
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if ok and not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                       and 0 <= offsets[0] and offsets[1] - offsets[0] == want.numel() * itemsize
                       and offsets[1] <= size):  # safetensors checks the exact layout when it maps the file
            ok = False
        if not ok:
            got = {k: info.get(k) for k in ("dtype", "shape", "data_offsets")} if isinstance(info, dict) else info
            raise UnsafeArtifactError(f"{where}: tensor {name} is {got}, the config's model needs dtype {dtype} "
                                      f"shape {shape}; refused before loading")
