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
# The whole suite (with the `fuzz` test: libFuzzer targets in build-fuzz/, tests/fuzz/run_fuzz.sh).
t=$(date +%s)
ctest --test-dir build --output-on-failure -j 2
echo "ctest: $(( $(date +%s) - t )) s"
# Sanitizer builds of their own (tests/sanitize/run.sh): ASan+UBSan+LSan, then TSan.
py=$PWD/build/venv/bin/python
[ -x "$py" ] || py=python3
for kind in address thread; do
    t=$(date +%s)
    FL_PYTHON=$py bash tests/sanitize/run.sh "$kind"
    echo "sanitizer $kind step: $(( $(date +%s) - t )) s"
done
