#!/usr/bin/env bash
# Set up, start the local services the tests need (a one-node Slurm cluster), run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
bash scripts/slurm_up.sh
exec .venv/bin/python -m pytest "$@"
