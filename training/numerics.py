"""The numerics path of a run: which kernels and rules compute its updates, and how its records are written.

Every choice here changes the bits a run produces, so the path is part of the run's identity:
config.json records it in its `numerics` table, and a run trains, resumes and replays on the
path it recorded, whatever this code's default has become since. A config.json without the
table was written before the table existed: its path is LEGACY, today's code path for every run
published until then, kept so that those runs go on replaying bit for bit. A new run takes
CURRENT unless its spec's `[numerics]` table names a path (keys it leaves out take CURRENT's values).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from checkpoints_manifest import ManifestError, read_json
from training.errors import SpecError


class NumericsError(SpecError):
    """A numerics table names an unknown path; the message names the key and the values that exist."""


@dataclass(frozen=True)
class Numerics:
    """One value per choice that changes the bits of training (see CHOICES for what each value means)."""

    attention: str  # how attention is computed
    compile: bool  # torch.compile of the model
    adamw: str  # the AdamW implementation
    grad_layout: str  # the memory layout gradients are reduced in
    weight_decay: str  # which parameters AdamW decays
    loss_log: str  # how loss.jsonl writes a non-finite number


# Every value each choice may take, with what it means. Add a value here when a new path lands.
CHOICES: dict[str, dict[Any, str]] = {
    "attention": {"explicit": "scores materialized as [batch, head, q, k], masked, softmaxed",
                  "sdpa": "F.scaled_dot_product_attention, causal, on a backend deterministic on the device"},
    "compile": {False: "eager PyTorch",
                True: "torch.compile of each transformer block (inductor, in its deterministic mode)"},
    "adamw": {"foreach-cuda": "torch's AdamW: the for-loop implementation on CPU, foreach on CUDA",
              "fused": "torch's fused AdamW kernel, on CPU and CUDA"},
    "grad_layout": {"autograd": "gradients reduced in the memory layout autograd returns them in",
                    "contiguous": "every gradient made contiguous before it is summed or its norm taken, so one "
                                  "process, accumulation and data parallel reduce the same layout"},
    "weight_decay": {"ndim>=2": "every parameter with two or more dimensions is decayed (the attention "
                                "biases b_Q/b_K/b_V [heads, d_head] too)",
                     "weights": "the W_* parameters only (weight matrices and embeddings); no bias or "
                                "LayerNorm parameter"},
    "loss_log": {"python-json": "as Python's json writes it: a non-finite number as bare NaN or Infinity, "
                                "which strict JSON parsers reject",
                 "strict-json": "a non-finite number as the string \"NaN\", \"Infinity\" or \"-Infinity\": "
                                "valid JSON, read back to the same number"},
}

LEGACY = Numerics(attention="explicit", compile=False, adamw="foreach-cuda", grad_layout="autograd",
                  weight_decay="ndim>=2", loss_log="python-json")
# Compile is off unless a spec turns it on (`[numerics] compile = true`, as the research spec does): it is
# bitwise twice and across a resume on CPU (tests/test_fast_path.py), but compiling costs a minute or more
# on a small CPU, more than it gains at the toy zoos' sizes.
CURRENT = dataclasses.replace(LEGACY, attention="sdpa", adamw="fused", grad_layout="contiguous",
                              weight_decay="weights", loss_log="strict-json")


def numerics_from_table(table: Any, *, where: str, complete: bool) -> Numerics:
    """A Numerics from a spec's `[numerics]` table (missing keys: CURRENT's) or, with `complete`, from
    a config.json's `numerics` table (every key required). NumericsError names the key and the choices."""
    if not isinstance(table, dict):
        raise NumericsError(f"{where}: numerics must be a table, got {type(table).__name__} {table!r}")
    fields = [f.name for f in dataclasses.fields(Numerics)]
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise NumericsError(f"{where}: unknown numerics key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
    if complete and (missing := [f for f in fields if f not in table]):
        raise NumericsError(f"{where}: the numerics table lacks {', '.join(missing)}; it was written by "
                            f"another version of zoo")
    values = {**dataclasses.asdict(CURRENT), **table}
    for key, value in values.items():
        choices = CHOICES[key]
        if type(value) is not type(next(iter(choices))) or value not in choices:
            listing = "; ".join(f"{choice!r}: {meaning}" for choice, meaning in choices.items())
            raise NumericsError(f"{where}: numerics.{key} = {value!r} is not a path this code has; "
                                f"the choices are {listing}")
    return Numerics(**values)


def recorded_numerics(config: dict[str, Any], *, where: str = "config.json") -> Numerics:
    """The path a run's config.json records: its `numerics` table, or LEGACY when it has none."""
    if "numerics" not in config:
        return LEGACY
    return numerics_from_table(config["numerics"], where=where, complete=True)


def numerics_record(numerics: Numerics) -> dict[str, Any] | None:
    """What config.json records for `numerics`: None (no table) for LEGACY, so that a run on today's
    original path has the same config as every run trained before the table existed."""
    return None if numerics == LEGACY else dataclasses.asdict(numerics)


def resolve_numerics(asked: Numerics | None, config_path: Path) -> Numerics:
    """The path a run trains on: the spec's when it names one; else the one the run's existing
    config.json records (a resumed run keeps its path); else CURRENT for a new run."""
    if asked is not None:
        return asked
    if config_path.is_file():
        try:
            return recorded_numerics(read_json(config_path), where=str(config_path))
        except (ManifestError, ValueError, TypeError):  # NumericsError included
            return CURRENT  # not a readable config: the run directory check refuses it with the reason
    return CURRENT
