"""The platform a run was made on, and which differences break bitwise equality."""

import dataclasses
import functools
import importlib.metadata
import os
import platform
from dataclasses import dataclass

from ._errors import ManifestError
from ._schema import check_keys, check_type

_LIBRARIES = ("torch", "numpy", "zarr", "tokenizers", "safetensors")

# Environment variables that choose the kernels torch, MKL, oneDNN and cuBLAS run (each library
# reads them itself, at its first computation). Measured on torch 2.13: ATEN_CPU_CAPABILITY
# (default even changes the step-0 weights), MKL_CBWR, MKL_ENABLE_INSTRUCTIONS and ONEDNN_MAX_CPU_ISA
# each change a run's bytes on some CPU; the others select reduced precision or another GEMM library.
KERNEL_ENVIRONMENT_VARIABLES = (
    "ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
    "ONEDNN_DEFAULT_FPMATH_MODE", "DNNL_DEFAULT_FPMATH_MODE", "NVIDIA_TF32_OVERRIDE",
    "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "TORCH_BLAS_PREFER_CUBLASLT",
)
# Process-wide torch settings (under torch.backends) that change the bits of matmuls:
# `torch.set_float32_matmul_precision("medium")` in a notebook makes CPU float32 matmuls bf16. Read
# through torch's per-backend fp32_precision values, which (unlike the legacy allow_tf32 flags) can be
# read whichever API set them.
PRECISION_SETTINGS = (
    "mkldnn.enabled", "mkldnn.matmul.fp32_precision", "cuda.matmul.fp32_precision",
    "cuda.matmul.allow_bf16_reduced_precision_reduction", "cuda.matmul.allow_fp16_reduced_precision_reduction",
    "cuda.preferred_blas_library", "cudnn.benchmark",
)
# Fields added after the first release: absent from the records of runs made before (None here).
_LATER_FIELDS = ("cpu_vendor", "cpu_capability", "kernel_environment", "precision", "world_size",
                 "micro_batches_per_rank")


@dataclass(frozen=True)
class EnvironmentRecord:
    """Library versions and platform facts recorded next to every run (OLMo-core's habit)."""

    python: str
    torch: str
    numpy: str
    zarr: str
    tokenizers: str
    safetensors: str
    os: str  # platform.system() + release
    machine: str  # platform.machine(): the CPU ISA
    device: str  # "cpu" or "cuda"
    device_name: str  # CPU model name, or the GPU name
    num_threads: int  # torch.get_num_threads()
    deterministic_algorithms: bool  # torch.are_deterministic_algorithms_enabled()
    cublas_workspace_config: str | None  # CUBLAS_WORKSPACE_CONFIG
    cpu_vendor: str | None = None  # /proc/cpuinfo vendor_id: MKL runs other code on other vendors
    cpu_capability: str | None = None  # torch.backends.cpu.get_cpu_capability(): DEFAULT, AVX2, AVX512 …
    kernel_environment: dict[str, str | None] | None = None  # KERNEL_ENVIRONMENT_VARIABLES (None: unset)
    precision: dict[str, str | bool] | None = None  # PRECISION_SETTINGS
    world_size: int | None = None  # data-parallel processes
    micro_batches_per_rank: int | None = None  # micro-batches each process sums per update

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the manifest's "environment" object); a later field a record
        lacks is left out, so that records of earlier runs read and write back unchanged."""
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in _LATER_FIELDS or v is not None}

    @classmethod
    def from_dict(cls, d: dict) -> "EnvironmentRecord":
        """Parse and type-check a dict written by `to_dict`; raise ManifestError naming the key."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        check_type(d, dict, "environment")
        check_keys(d, {name for name in fields if name not in _LATER_FIELDS or name in d}, "environment")
        for name in d:
            where = f"environment.{name}"
            if name == "cublas_workspace_config":
                check_type(d[name], str, where, optional=True)
            elif name in ("cpu_vendor", "cpu_capability"):
                check_type(d[name], str, where)
            elif name in ("world_size", "micro_batches_per_rank"):
                check_type(d[name], int, where)
            elif name == "kernel_environment":
                _check_table(d[name], KERNEL_ENVIRONMENT_VARIABLES, (str, type(None)), where)
            elif name == "precision":
                _check_table(d[name], PRECISION_SETTINGS, (str, bool), where)
            else:
                check_type(d[name], fields[name].type, where)
        return cls(**d)

    def bitwise_comparable(self, other: "EnvironmentRecord") -> list[str]:
        """What keeps results here from matching `other`'s (a manifest's) bit for bit.

        Call it on the current record: `environment_record().bitwise_comparable(
        manifest.environment)`. [] means the same platform. Library versions other
        than torch, the OS and the CPU model do not change torch's kernels; the torch
        version, device, thread count (reduction splits), deterministic mode, torch's CPU
        capability (also for GPU runs: weights are initialized on the CPU), the kernel
        environment variables and the precision settings do; on the CPU also the ISA and
        the CPU vendor (MKL's code paths), on the GPU its model and cuBLAS workspace.
        A field `other` does not record (a run made before it was recorded) is not compared:
        see `unrecorded_in`.
        """
        keys = ["torch", "device", "num_threads", "deterministic_algorithms", "cpu_capability"]
        if self.device == other.device == "cuda":
            keys += ["device_name", "cublas_workspace_config"]
        else:
            keys += ["machine", "cpu_vendor"]
        differences = [
            f"{key} {_shown(getattr(self, key))} here vs {_shown(getattr(other, key))} in the manifest"
            for key in keys
            if not (key in _LATER_FIELDS and getattr(other, key) is None) and getattr(self, key) != getattr(other, key)
        ]
        for table in ("kernel_environment", "precision"):
            ours, theirs = getattr(self, table) or {}, getattr(other, table)
            if theirs is not None:
                differences += [f"{name} {_shown(ours.get(name))} here vs {_shown(theirs.get(name))} in the manifest"
                                for name in sorted({*ours, *theirs}) if ours.get(name) != theirs.get(name)]
        return differences

    def unrecorded_in(self, other: "EnvironmentRecord") -> list[str]:
        """The platform facts compared by `bitwise_comparable` that `other` (an earlier run's) lacks."""
        return [name for name in ("cpu_vendor", "cpu_capability", "kernel_environment", "precision")
                if getattr(other, name) is None and getattr(self, name) is not None]


def environment_record(device: str = "cpu", *, world_size: int | None = None,
                       micro_batches_per_rank: int | None = None) -> EnvironmentRecord:
    """Record the current platform for `device` ("cpu" or "cuda"), and how a run is split over
    processes when given. Asking torch for its CPU capability fixes it for the process: call
    this after `training.determinism.set_determinism`."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    import torch  # lazy: this leaf package should not cost a torch import to load

    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                "environment_record(device='cuda') but torch sees no CUDA device; use device='cpu'"
            )
        device_name = torch.cuda.get_device_name()
    else:
        device_name = _cpu_info("model name") or platform.processor() or "unknown"
    return EnvironmentRecord(
        python=platform.python_version(),
        **{lib: _version(lib) for lib in _LIBRARIES},
        os=f"{platform.system()} {platform.release()}",
        machine=platform.machine(),
        device=device,
        device_name=device_name,
        num_threads=torch.get_num_threads(),
        deterministic_algorithms=torch.are_deterministic_algorithms_enabled(),
        cublas_workspace_config=os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
        cpu_vendor=_cpu_info("vendor_id") or "unknown",
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        kernel_environment={name: os.environ.get(name) for name in KERNEL_ENVIRONMENT_VARIABLES},
        precision={name: torch_setting(name) for name in PRECISION_SETTINGS},
        world_size=world_size,
        micro_batches_per_rank=micro_batches_per_rank,
    )


def torch_setting(name: str) -> str | bool:
    """The value of one of PRECISION_SETTINGS, by its dotted name under torch.backends."""
    import torch

    if name == "cuda.preferred_blas_library":
        return torch.backends.cuda.preferred_blas_library().name.lower()
    return functools.reduce(getattr, name.split("."), torch.backends)


def _check_table(value: object, names: tuple[str, ...], kinds: tuple[type, ...], where: str) -> None:
    if not isinstance(value, dict):
        raise ManifestError(f"{where} must be an object, got {type(value).__name__}")
    if unknown := sorted(set(value) - set(names)):
        raise ManifestError(f"{where} has unknown key(s) {', '.join(map(repr, unknown))}")
    for name, item in value.items():
        if not isinstance(item, kinds):
            raise ManifestError(f"{where}.{name} must be {' or '.join(k.__name__ for k in kinds)}, got "
                                f"{type(item).__name__}")


def _shown(value: object) -> str:
    return "unset" if value is None else str(value)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _cpu_info(key: str) -> str | None:
    """A field of the first CPU in /proc/cpuinfo (Linux), or None."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == key:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None
