#!/usr/bin/env bash
# The main job on the built-in default: set up, then `zoo demo` (train a quick subset of
# the toy zoo and show where everything is). Extra arguments go to `zoo demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
exec .venv/bin/zoo demo "$@"
