"""Read a safetensors file that may be damaged or hostile: its header is checked before a tensor is loaded.

safetensors holds no code, but a file can still claim a huge header, nest its header JSON
100,000 deep, or list other tensors, dtypes, shapes or overlapping byte ranges than the
model or optimizer it is loaded into. Every such file is refused here with TensorFileError,
from the header alone. Resume, replay and `zoo.load` all read weights through `read_tensors`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from checkpoints_manifest import UnsafeJSONError, parse_json
from training.errors import TensorFileError

MAX_HEADER_BYTES = 16 << 20  # a header lists names, dtypes, shapes: even 100k tensors fit in a few MB
_DTYPES = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2),
           torch.float64: ("F64", 8)}


def read_tensors(path: Path, expected: Mapping[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """The tensors of the safetensors file `path`, once its header lists exactly `expected`'s names, each
    with its dtype and shape, their bytes laid end to end within the file (`where` names it in errors).

    `expected` may hold tensors on the meta device or unfilled (`torch.empty`): only their
    dtype and shape are read.
    """
    size = path.stat().st_size
    header, data_bytes = _header(path, size, where)
    _check(header, expected, data_bytes, where)
    return load_file(path)


def _header(path: Path, size: int, where: str) -> tuple[dict[str, Any], int]:
    """The header's tensor table, and the size of the data after it."""
    with open(path, "rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or length > min(MAX_HEADER_BYTES, size - 8):
            raise TensorFileError(f"{where}: not a safetensors file (header length {length} in a file of "
                                  f"{size} bytes; at most {MAX_HEADER_BYTES} allowed); refused unread")
        raw = f.read(length)
    try:
        header = parse_json(raw, source=f"{where} (its header)", max_bytes=MAX_HEADER_BYTES)
    except UnsafeJSONError as e:
        raise TensorFileError(f"not a safetensors file: {e}") from None
    if not isinstance(header, dict):
        raise TensorFileError(f"{where}: not a safetensors file (its header is not a JSON object); refused")
    header.pop("__metadata__", None)
    return header, size - 8 - length


def _check(header: dict[str, Any], expected: Mapping[str, torch.Tensor], data_bytes: int, where: str) -> None:
    if header.keys() != expected.keys():
        extra, missing = sorted(header.keys() - expected.keys()), sorted(expected.keys() - header.keys())
        raise TensorFileError(f"{where}: tensors differ from what it must hold (unexpected: {extra[:5]}, "
                              f"missing: {missing[:5]}); refused before loading")
    spans = []
    for name, want in expected.items():
        info = header[name]
        dtype, itemsize = _DTYPES[want.dtype]
        shape = list(want.shape)
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        ok = (isinstance(info, dict) and info.get("dtype") == dtype and info.get("shape") == shape
              and isinstance(offsets, list) and len(offsets) == 2
              and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
              and offsets[1] - offsets[0] == want.numel() * itemsize)
        if not ok:
            got = {k: info.get(k) for k in ("dtype", "shape", "data_offsets")} if isinstance(info, dict) else info
            raise TensorFileError(f"{where}: tensor {name} is {got}, the model needs dtype {dtype} shape {shape}; "
                                  f"refused before loading")
        spans.append((offsets[0], offsets[1], name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            problem = "overlaps the tensor before it" if begin < end else f"leaves a gap at byte {end}"
            raise TensorFileError(f"{where}: tensor {name} (bytes {begin}..{stop}) {problem}; a safetensors file "
                                  f"lays its tensors end to end: refused before loading")
        end = stop
    if end != data_bytes:
        raise TensorFileError(f"{where}: its tensors cover {end} bytes but the file holds {data_bytes} after the "
                              f"header; refused before loading")
