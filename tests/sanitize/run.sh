#!/usr/bin/env bash
# A sanitizer build of its own (CPU only) and the suites that run under it, with zero reports
# allowed (every report aborts the process, and a test whose process aborts fails):
#   address  build-asan/: ASan + UBSan + LSan; every unit and integration test but the soak (ASan's
#            quarantine makes RSS grow by design) and the SmolLM2 parity (a downloaded model)
#   thread   build-tsan/: TSan; the router unit tests, the thread pool (test_cpu_ops), the RPC
#            layer, and the router and shards under the integration tests test_router_api and
#            test_router_load
# Suppressions (tests/sanitize/*.supp) name third-party libraries only.
# Usage: tests/sanitize/run.sh address|thread   (FL_PYTHON: the test venv's python)
set -euo pipefail
kind=${1:?usage: run.sh address|thread}
src=$(cd "$(dirname "$0")/../.." && pwd)
supp=$src/tests/sanitize
py=${FL_PYTHON:-$src/build/venv/bin/python}
[ -x "$py" ] || py=python3
case $kind in
address)
    build=$src/build-asan
    targets=()
    tests=(-E "test_soak|test_smollm2_parity")
    export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    export LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0
    ;;
thread)
    build=$src/build-tsan
    targets=(--target test_router_batcher test_router_stream test_router_config test_router_json
             test_router_validate test_cpu_ops test_rpc falconlite-router falconlite-shard falconlite)
    tests=(-R "^(test_router_batcher|test_router_stream|test_router_config|test_router_json|test_router_validate|test_cpu_ops|test_rpc|test_router_api|test_router_load)$")
    export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp
    ;;
*)
    echo "run.sh: expected address or thread, got $kind" >&2
    exit 2
    ;;
esac
t0=$(date +%s)
cmake -S "$src" -B "$build" -G Ninja -DFALCONLITE_CUDA=OFF -DFALCONLITE_SANITIZE="$kind" \
    -DFL_PYTHON="$py" >/dev/null
cmake --build "$build" -j "$(nproc)" "${targets[@]}" >/dev/null
echo "sanitizer $kind: built in $(( $(date +%s) - t0 )) s"
t1=$(date +%s)
ctest --test-dir "$build" --output-on-failure -j 2 "${tests[@]}"
echo "sanitizer $kind: tests in $(( $(date +%s) - t1 )) s"
