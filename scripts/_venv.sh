# Sourced by demo.sh and test.sh: make .venv with torch 2.13.0 (the CPU wheel here) and zoo.
# torch is installed first and pinned, so nothing pulls a multi-GB CUDA build.
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e '.[test,tl]'
