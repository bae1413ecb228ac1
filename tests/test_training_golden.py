"""Golden record: the tiny zoo's final checkpoints, byte for byte, on the reference platform.

Any change to the model, the loop, the data order or the file formats that moves a
single bit fails here loudly. The record belongs to one platform (x86_64 CPU with
AVX512 kernels, torch 2.13.0: the CI machines); elsewhere the test is skipped, since
bitwise equality is promised per platform only.
"""

import hashlib
import platform

import pytest
import torch

GOLDEN = {
    "gelu-1l-seed0": {
        "loss.jsonl": "e07ea67972373c8e33b872a395fe131b1483a9adcbf5f11222ac4dae5b5cfb6d",
        "model.safetensors": "df79d45a63edc784604932525c9da01120e2223fcb9a74dfaa508c480a76e4ff",
        "optimizer.safetensors": "ef71d33980b5879e186ce473b9f261c4f21220e18a2f371f5a71debbbfbeb170",
        "state.json": "e0e3cd8c0d5de103b9d994244eee534d6ce58eed2da55c0888beb9320ae1051c",
    },
    "solu-1l-seed1": {
        "loss.jsonl": "947c0db806f7542f385899adc4b2317899efab4758aff32a1d3c4df8a0cfee83",
        "model.safetensors": "17bc239d36e858dfb61e71107a55a5caddd91feaf802f679d33fd2144a9f8e7f",
        "optimizer.safetensors": "88a73e78c7458dfd203be701db813c5146376469fd5f8c6503527473e010a27f",
        "state.json": "e0e3cd8c0d5de103b9d994244eee534d6ce58eed2da55c0888beb9320ae1051c",
    },
}
REFERENCE_PLATFORM = ("x86_64", "2.13.0+cpu", "AVX512")


@pytest.mark.skipif(
    (platform.machine(), torch.__version__, torch.backends.cpu.get_cpu_capability()) != REFERENCE_PLATFORM,
    reason=f"golden record is for {REFERENCE_PLATFORM}",
)
def test_final_checkpoints_of_the_tiny_zoo_match_the_golden_record(trained_tiny):
    for run, files in GOLDEN.items():
        folder = trained_tiny / "tiny" / "runs" / run / "checkpoints" / "step00000024"
        got = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in files}
        assert got == files, run
