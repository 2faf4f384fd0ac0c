#!/usr/bin/env bash
# The whole test suite from a fresh machine: dependencies, build, Python test clients, ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install_deps.sh
bash deploy/build.sh
if [ -f tests/requirements.txt ]; then
    [ -x build/venv/bin/python ] || python3 -m venv build/venv
    build/venv/bin/pip install -q -r tests/requirements.txt
    cmake -S . -B build -DFL_PYTHON="$PWD/build/venv/bin/python" >/dev/null
fi
ctest --test-dir build --output-on-failure -j 2
