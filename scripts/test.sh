#!/usr/bin/env bash
# Set up, start the local services the tests need (a one-node Slurm cluster) where this machine can,
# and run every test. Where Slurm cannot start (not root, not Debian: a laptop), every other test runs
# and the Slurm tests are skipped, saying why; under CI=true they must run, so there it stops instead.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
if ! bash scripts/slurm_up.sh; then
    if [[ ${CI:-} == true ]]; then
        echo "test.sh: CI=true needs the Slurm tests, but scripts/slurm_up.sh could not start Slurm (above)" >&2
        exit 1
    fi
    echo "test.sh: Slurm cannot start here (above): the Slurm tests will be skipped, every other test runs" >&2
fi
exec .venv/bin/python -m pytest "$@"
