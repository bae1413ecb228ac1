"""The platform a run was made on, and which differences break bitwise equality."""

import dataclasses
import importlib.metadata
import os
import platform
from dataclasses import dataclass

from ._schema import check_keys, check_type

_LIBRARIES = ("torch", "numpy", "zarr", "tokenizers", "safetensors")


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

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (the manifest's "environment" object)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EnvironmentRecord":
        """Parse and type-check a dict written by `to_dict`; raise ManifestError naming the key."""
        fields = dataclasses.fields(cls)
        check_keys(d, {f.name for f in fields}, "environment")
        for f in fields:
            if f.name == "cublas_workspace_config":
                check_type(d[f.name], str, f"environment.{f.name}", optional=True)
            else:
                check_type(d[f.name], f.type, f"environment.{f.name}")
        return cls(**d)

    def bitwise_comparable(self, other: "EnvironmentRecord") -> list[str]:
        """What keeps results here from matching `other`'s (a manifest's) bit for bit.

        Call it on the current record: `environment_record().bitwise_comparable(
        manifest.environment)`. [] means the same platform. Library versions other
        than torch, the OS and the CPU model do not change torch's kernels; the
        torch version, device, ISA (CPU) or GPU model, thread count (reduction
        splits) and deterministic mode do.
        """
        keys = ["torch", "device", "num_threads", "deterministic_algorithms"]
        if self.device == other.device == "cuda":
            # cuBLAS picks kernels per GPU model and workspace size.
            keys += ["device_name", "cublas_workspace_config"]
        else:
            keys += ["machine"]
        return [
            f"{key} {getattr(self, key)} here vs {getattr(other, key)} in the manifest"
            for key in keys
            if getattr(self, key) != getattr(other, key)
        ]


def environment_record(device: str = "cpu") -> EnvironmentRecord:
    """Record the current platform for `device` ("cpu" or "cuda")."""
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
        device_name = _cpu_name()
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
    )


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _cpu_name() -> str:
    """CPU model name: /proc/cpuinfo on Linux, else platform.processor(), else "unknown"."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
