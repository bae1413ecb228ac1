"""Where and how a benchmark's figures were measured: recorded in its JSON, next to the figures."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from typing import Any

import torch

from checkpoints_manifest import environment_record


def measured_on(device: str = "cpu", **how: Any) -> dict[str, Any]:
    """The device and its name, the CPU model and cores, torch's threads and version, the load on the
    machine, the command and the time, plus `how` (steps, rounds, statistic…). Whether the machine
    was quiet is the note of whoever ran it: a load average is a hint, not a proof."""
    return {
        "device": device,
        "device_name": environment_record(device).device_name,
        "cpu_model": environment_record("cpu").device_name,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min": os.getloadavg()[0],
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **how,
    }
