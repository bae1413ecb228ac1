"""Zoo specs: one TOML file names everything needed to train every run of a zoo.

A spec is parsed strictly: an unknown key, a wrong type or a bad value is a
`SpecError` that names the key and its line in the file, so a typo never
silently trains the wrong zoo.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from data_index import DataIndexError, DataSpec

from training.determinism import CPU_LEVELS
from training.errors import SpecError
from training.model import ARCHITECTURES
from training.numerics import Numerics, numerics_from_table

BUILTIN_SPECS = ("toy", "tiny", "induction", "grokking", "research")
# What a command-line SPEC argument accepts, for every command that takes one.
SPEC_ARGUMENT_HELP = f"a built-in spec name ({', '.join(BUILTIN_SPECS)}) or a path to a TOML spec"

# Bounds that refuse absurd specs before anything is allocated or written (a typo of a few
# zeros would otherwise hang building the schedule, or ask for terabytes).
MAX_STEPS = 10**9
MAX_CHECKPOINTS = 100_000
MAX_PARAMETERS = 10**11
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class SizeSpec:
    """The shape of one model size; the architecture comes from its family."""

    n_layers: int
    d_model: int
    n_heads: int
    d_head: int
    d_mlp: int


@dataclass(frozen=True)
class TrainingSpec:
    steps: int
    batch_size: int
    micro_batch_size: int
    precision: str = "float32"
    cpu_threads: int = 1  # part of the platform: CPU kernels give other bits with other thread counts
    cpu_level: str = "native"  # part of the platform: the instruction set of CPU kernels (CPU_LEVELS)


@dataclass(frozen=True)
class OptimizerSpec:
    """AdamW with linear warmup, then cosine decay to `min_lr` or a constant lr."""

    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 0
    schedule: str = "cosine"
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    eps: float = 1e-8
    grad_clip: float = 1.0


@dataclass(frozen=True)
class CheckpointSpec:
    """Dense schedule: every power of two up to `log_until`, then every `every` steps."""

    log_until: int = 512
    every: int = 100
    extra_steps: tuple[int, ...] = ()


def seeds_label(init_seed: int, data_seed: int) -> str:
    """A run's seeds as tables show them: `3`, or `1/2` (init/data) when they differ."""
    return str(init_seed) if init_seed == data_seed else f"{init_seed}/{data_seed}"


@dataclass(frozen=True)
class RunSpec:
    """One model of a zoo with one (init_seed, data_seed) pair: the unit of training."""

    zoo: str
    model: str
    architecture: str
    size: SizeSpec
    init_seed: int
    data_seed: int

    @property
    def name(self) -> str:
        """`solu-2l-seed3`, or `solu-2l-init1-data2` when the seeds differ."""
        if self.init_seed == self.data_seed:
            return f"{self.model}-seed{self.init_seed}"
        return f"{self.model}-init{self.init_seed}-data{self.data_seed}"

    @property
    def full_name(self) -> str:
        """The name published runs carry: `{zoo}-{run}`."""
        return f"{self.zoo}-{self.name}"


@dataclass(frozen=True)
class ZooSpec:
    name: str
    data: DataSpec
    sizes: dict[str, SizeSpec]
    families: dict[str, tuple[str, ...]]
    seeds: tuple[tuple[int, int], ...]
    training: TrainingSpec
    optimizer: OptimizerSpec
    checkpoints: CheckpointSpec
    numerics: Numerics | None = None  # None: the spec names no path (see training/numerics.py)

    def runs(self, pattern: str | None = None) -> list[RunSpec]:
        """Every run of the zoo, in a fixed order; `pattern` filters run names (glob, comma-separated)."""
        runs = [
            RunSpec(self.name, f"{arch}-{size}", arch, self.sizes[size], init_seed, data_seed)
            for arch, sizes in self.families.items()
            for size in sizes
            for init_seed, data_seed in self.seeds
        ]
        if pattern is None:
            return runs
        globs = [g.strip() for g in pattern.split(",") if g.strip()]
        chosen = [r for r in runs if any(fnmatch.fnmatchcase(r.name, g) for g in globs)]
        if not chosen:
            raise SpecError(
                f"--runs {pattern!r} matches no run of zoo {self.name!r}; "
                f"its runs are: {', '.join(r.name for r in runs)}"
            )
        return chosen

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for config.json: enough to rebuild the spec with `spec_from_dict`."""
        return {
            "name": self.name,
            "data": self.data.to_dict(),
            "sizes": {k: dataclasses.asdict(v) for k, v in self.sizes.items()},
            "families": {k: list(v) for k, v in self.families.items()},
            "seeds": [list(p) for p in self.seeds],
            # "native" is left out: a config without cpu_level is every run's from before it existed
            "training": {k: v for k, v in dataclasses.asdict(self.training).items()
                         if (k, v) != ("cpu_level", "native")},
            "optimizer": dataclasses.asdict(self.optimizer),
            "checkpoints": {**dataclasses.asdict(self.checkpoints),
                            "extra_steps": list(self.checkpoints.extra_steps)},
            **({"numerics": dataclasses.asdict(self.numerics)} if self.numerics is not None else {}),
        }


def load_spec(name_or_path: str | Path) -> ZooSpec:
    """A built-in spec by name (`toy`, `tiny`) or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SpecError(f"spec file {str(path)!r} does not exist; built-in specs are: {', '.join(BUILTIN_SPECS)}")
        return parse_spec(path.read_text(encoding="utf-8"), source=str(path))
    if str(name_or_path) not in BUILTIN_SPECS:
        raise SpecError(
            f"unknown spec {str(name_or_path)!r}: not a file, and the built-in specs are: {', '.join(BUILTIN_SPECS)}"
        )
    text = resources.files("training").joinpath("specs", f"{name_or_path}.toml").read_text(encoding="utf-8")
    return parse_spec(text, source=f"built-in spec {name_or_path!r}")


def parse_spec(text: str, *, source: str = "<spec>") -> ZooSpec:
    """Parse and validate a zoo spec; every error names the key and its line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{source}: not valid TOML: {e}") from None
    return spec_from_dict(raw, source=source, text=text)


def spec_from_dict(raw: dict[str, Any], *, source: str = "<spec>", text: str = "") -> ZooSpec:
    where = _Locator(source, text)
    _check_keys(raw, {"name", "seeds", "seed_pairs", "data", "sizes", "families", "training",
                      "optimizer", "checkpoints", "numerics"}, (), where)
    for key in ("name", "data", "sizes", "families", "training"):
        if key not in raw:
            raise SpecError(f"{source}: missing required key {key!r}")
    name = _typed(raw["name"], str, (), "name", where)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name):
        raise SpecError(f"{where.at((), 'name')}: name {name!r} must be lowercase letters, digits, '-', '_' or '.'")

    try:
        data = _dataclass_from(DataSpec, raw["data"], ("data",), where)
    except DataIndexError as e:  # DataSpec checks its own values; say where in the spec they are
        raise SpecError(f"{source}, table [data]: {e}") from None
    sizes = {
        size: _dataclass_from(SizeSpec, table, ("sizes",), where, key=size)
        for size, table in _typed(raw["sizes"], dict, (), "sizes", where).items()
    }
    for size, s in sizes.items():
        for f in dataclasses.fields(s):
            if getattr(s, f.name) <= 0:
                raise SpecError(f"{where.at(('sizes',), size)}: {f.name} must be positive, got {getattr(s, f.name)}")

    families: dict[str, tuple[str, ...]] = {}
    for arch, names in _typed(raw["families"], dict, (), "families", where).items():
        if arch not in ARCHITECTURES:
            raise SpecError(
                f"{where.at(('families',), arch)}: unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}"
            )
        names = _typed(names, list, ("families",), arch, where)
        for size in names:
            if size not in sizes:
                raise SpecError(
                    f"{where.at(('families',), arch)}: size {size!r} is not defined under [sizes] "
                    f"(defined: {', '.join(sizes) or 'none'})"
                )
        families[arch] = tuple(names)

    seeds = [(k, k) for k in _int_list(raw.get("seeds", []), (), "seeds", where)]
    for pair in _typed(raw.get("seed_pairs", []), list, (), "seed_pairs", where):
        if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(x) for x in pair)):
            raise SpecError(f"{where.at((), 'seed_pairs')}: each seed pair is [init_seed, data_seed], got {pair!r}")
        seeds.append((pair[0], pair[1]))
    if not seeds:
        raise SpecError(f"{source}: no runs: give `seeds = [0, 1, ...]` and/or `seed_pairs = [[init, data], ...]`")
    if len(set(seeds)) != len(seeds):
        raise SpecError(f"{where.at((), 'seeds')}: a seed pair is listed twice")

    training = _dataclass_from(TrainingSpec, raw["training"], ("training",), where)
    _check_training(training, where)
    _check_micro_batches(training, where)
    optimizer = _dataclass_from(OptimizerSpec, raw.get("optimizer", {}), ("optimizer",), where)
    if optimizer.schedule not in ("cosine", "constant"):
        raise SpecError(f"{where.at(('optimizer',), 'schedule')}: schedule must be 'cosine' or 'constant', "
                        f"got {optimizer.schedule!r}")
    _check_optimizer(optimizer, where)
    checkpoints = _dataclass_from(CheckpointSpec, raw.get("checkpoints", {}), ("checkpoints",), where)
    if checkpoints.every <= 0 or checkpoints.log_until < 0:
        raise SpecError(f"{where.at(('checkpoints',), 'every')}: every must be > 0 and log_until >= 0")
    if training.steps // checkpoints.every > MAX_CHECKPOINTS:
        raise SpecError(f"{where.at(('checkpoints',), 'every')}: every = {checkpoints.every} gives more than "
                        f"{MAX_CHECKPOINTS:,} checkpoints over {training.steps:,} steps; raise it to at least "
                        f"{-(-training.steps // MAX_CHECKPOINTS)}")
    if any(max(pair) > MAX_SEED for pair in seeds):
        raise SpecError(f"{where.at((), 'seeds')}: seeds must be below 2**63")
    for size, s in sizes.items():
        n = _parameter_count(s, data.vocab_size, data.n_ctx)
        if n > MAX_PARAMETERS:
            raise SpecError(f"{where.at(('sizes',), size)}: size {size!r} has about {n:.2e} parameters, more than "
                            f"this trainer's limit of {MAX_PARAMETERS:.0e}; check the widths for a typo")
    numerics = None
    if "numerics" in raw:
        numerics = numerics_from_table(raw["numerics"], where=f"{source}, table [numerics]", complete=False)
    return ZooSpec(name, data, sizes, families, tuple(seeds), training, optimizer, checkpoints, numerics)


def _parameter_count(s: SizeSpec, d_vocab: int, n_ctx: int) -> int:
    """An upper bound on the parameters of a model of size `s` (with an MLP), before building it."""
    per_layer = 4 * s.d_model * s.n_heads * s.d_head + 2 * s.d_model * s.d_mlp + 4 * s.d_model + s.d_mlp
    return s.n_layers * per_layer + 2 * d_vocab * s.d_model + n_ctx * s.d_model


def _check_optimizer(o: OptimizerSpec, where: _Locator) -> None:
    table = ("optimizer",)
    for f in dataclasses.fields(o):
        value = getattr(o, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(f"{where.at(table, f.name)}: {f.name} must be a finite number, got {value}")
    ranges = {"lr": (o.lr > 0, "> 0"), "min_lr": (o.min_lr >= 0, ">= 0"), "eps": (o.eps > 0, "> 0"),
              "warmup_steps": (o.warmup_steps >= 0, ">= 0"), "weight_decay": (o.weight_decay >= 0, ">= 0"),
              "grad_clip": (o.grad_clip >= 0, ">= 0 (0 turns clipping off)"),
              "beta1": (0 <= o.beta1 < 1, "in [0, 1)"), "beta2": (0 <= o.beta2 < 1, "in [0, 1)")}
    for key, (ok, rule) in ranges.items():
        if not ok:
            raise SpecError(f"{where.at(table, key)}: {key} must be {rule}, got {getattr(o, key)}")


def _check_training(t: TrainingSpec, where: _Locator) -> None:
    table = ("training",)
    for key in ("steps", "batch_size", "micro_batch_size", "cpu_threads"):
        if getattr(t, key) <= 0:
            raise SpecError(f"{where.at(table, key)}: {key} must be positive, got {getattr(t, key)}")
    if t.steps > MAX_STEPS:
        raise SpecError(f"{where.at(table, 'steps')}: steps = {t.steps:,} is more than {MAX_STEPS:,}; check for a typo")
    if t.batch_size % t.micro_batch_size:
        raise SpecError(
            f"{where.at(table, 'micro_batch_size')}: batch_size {t.batch_size} is not divisible by "
            f"micro_batch_size {t.micro_batch_size}; pick a micro-batch size that divides it"
        )
    if t.cpu_level not in CPU_LEVELS:
        raise SpecError(f"{where.at(table, 'cpu_level')}: cpu_level must be one of {', '.join(map(repr, CPU_LEVELS))} "
                        f"(native: this machine's kernels; avx2: the same AVX2 kernels on every CPU that has them), "
                        f"got {t.cpu_level!r}")
    if t.precision not in ("float32", "bfloat16"):
        raise SpecError(f"{where.at(table, 'precision')}: precision must be 'float32' or 'bfloat16', got {t.precision!r}")


def micro_batches_problem(n_micro: int, world_size: int) -> str | None:
    """Why `n_micro` micro-batches per update cannot be split over `world_size` processes as 1, 2, 4, … each
    (what makes every processes × accumulation split sum gradients in the same tree), or None."""
    per_process, rest = divmod(n_micro, world_size)
    if rest or per_process < 1 or per_process & (per_process - 1):
        return (f"{n_micro} micro-batches cannot be split over {world_size} processes as a power-of-two number "
                f"each (needed for bitwise-equal sums)")
    return None


def _check_micro_batches(t: TrainingSpec, where: _Locator) -> None:
    """The trainer's rule, checked here so that a spec it would refuse is refused before anything is written."""
    n_micro = t.batch_size // t.micro_batch_size
    if micro_batches_problem(n_micro, 1) is None:
        return
    micro = [t.batch_size >> k for k in range(t.batch_size.bit_length()) if t.batch_size % (1 << k) == 0]
    low, high = 1 << (n_micro.bit_length() - 1), 1 << n_micro.bit_length()
    raise SpecError(
        f"{where.at(('training',), 'micro_batch_size')}: batch_size {t.batch_size} / micro_batch_size "
        f"{t.micro_batch_size} = {n_micro} micro-batches per update, but the trainer sums micro-batch gradients "
        f"in a pairwise tree of 1, 2, 4, … of them (so that any processes × accumulation split gives the same "
        f"bits); use micro_batch_size {', '.join(map(str, micro[:6]))}, or batch_size "
        f"{low * t.micro_batch_size} or {high * t.micro_batch_size}")


class _Locator:
    """Finds the line of a key in the TOML text, so errors can point at it."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = text.splitlines()

    def at(self, table: tuple[str, ...], key: str) -> str:
        current: tuple[str, ...] = ()
        key_re = re.compile(rf"""^\s*["']?{re.escape(key)}["']?\s*=""")
        for number, line in enumerate(self.lines, start=1):
            header = re.match(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$", line)
            if header:
                current = tuple(p.strip().strip("\"'") for p in header.group(1).split("."))
                continue
            if current == table and key_re.match(line):
                return f"{self.source}, line {number}, key {'.'.join((*table, key))!r}"
        return f"{self.source}, key {'.'.join((*table, key))!r}"


def _check_keys(table: dict, allowed: set[str], path: tuple[str, ...], where: _Locator) -> None:
    for key in table:
        if key not in allowed:
            raise SpecError(f"{where.at(path, key)}: unknown key {key!r}; allowed here: {', '.join(sorted(allowed))}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _int_list(value: Any, path: tuple[str, ...], key: str, where: _Locator) -> list[int]:
    value = _typed(value, list, path, key, where)
    if not all(_is_int(x) and x >= 0 for x in value):
        raise SpecError(f"{where.at(path, key)}: {key} must be a list of non-negative integers, got {value!r}")
    return value


def _typed(value: Any, kind: type, path: tuple[str, ...], key: str, where: _Locator) -> Any:
    """`value` if it is of `kind` (an int is a float too), else a SpecError at `key`."""
    if kind is float and _is_int(value):
        return float(value)
    if not (_is_int(value) if kind is int else isinstance(value, kind)):
        raise SpecError(f"{where.at(path, key)}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _dataclass_from(cls: type, table: Any, path: tuple[str, ...], where: _Locator, *, key: str | None = None) -> Any:
    """Build a frozen dataclass from the TOML table at `path`, checking every key and type.

    `key` names an inline table inside `path` (`1l = { n_layers = 1, ... }`): its keys share
    that one line, so errors point there.
    """
    def locate(name: str) -> tuple[tuple[str, ...], str]:
        return (path, key) if key is not None else (path, name)

    table = _typed(table, dict, *((path, key) if key is not None else (path[:-1], path[-1])), where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in table:
        if name not in fields:
            raise SpecError(f"{where.at(*locate(name))}: unknown key {name!r}; allowed here: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(value, hints[name], *locate(name), where) for name, value in table.items()}
    missing = [n for n, f in fields.items()
               if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        table_name = key if key is not None else path[-1]
        raise SpecError(f"{where.at(*locate(table_name))}: [{table_name}] is missing {', '.join(missing)}")
    return cls(**values)


def _coerce(value: Any, hint: Any, path: tuple[str, ...], key: str, where: _Locator) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (option,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(value, option, path, key, where)
    if origin is tuple:
        (item,) = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return tuple(_coerce(v, item, path, key, where) for v in _typed(value, list, path, key, where))
    return _typed(value, hint, path, key, where)
