#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz/ with clang into build-fuzz/ (FALCONLITE_FUZZ: ASan +
# UBSan + libFuzzer, CPU only) and runs each one over its corpus (tests/fuzz/corpus/<target>/:
# seeds and every crash found so far) for a bounded number of executions. Registered with ctest
# as `fuzz`; exits 77 (ctest: skipped) when clang or its libFuzzer runtime is missing.
#   FL_FUZZ_RUNS   executions per target (default 200000)
#   FL_FUZZ_BUILD  build dir (default <source>/build-fuzz)
# A crash fails the run and leaves its input in $FL_FUZZ_BUILD/artifacts/: add it to the corpus
# (as crash-<what>) with the fix.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=${FL_FUZZ_BUILD:-$src/build-fuzz}
runs=${FL_FUZZ_RUNS:-200000}
targets="fuzz_http_json fuzz_http_framing fuzz_pb_api fuzz_pb_shard fuzz_pb_shard_replies fuzz_tokenizer fuzz_model_files"

if ! command -v clang >/dev/null; then
    echo "SKIP: clang not installed (deploy/install_deps.sh installs it)"
    exit 77
fi
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' > "$probe/p.c"
if ! clang -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2>/dev/null; then
    echo "SKIP: clang has no libFuzzer runtime (libclang-rt-dev)"
    exit 77
fi

t0=$(date +%s)
CC=clang CXX=clang++ cmake -S "$src" -B "$build" -G Ninja -DFALCONLITE_CUDA=OFF -DFALCONLITE_FUZZ=ON \
    -DFALCONLITE_NATIVE=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j 2 --target $targets >/dev/null
echo "built in $(( $(date +%s) - t0 )) s"

mkdir -p "$build/artifacts"
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
failed=0
for t in $targets; do
    work="$build/corpus/$t"
    mkdir -p "$work"
    t1=$(date +%s)
    # New inputs go to the first (scratch) directory; the repository's corpus is only read.
    if "$build/bin/$t" -runs="$runs" -max_len=8192 -timeout=20 -rss_limit_mb=2048 \
        -artifact_prefix="$build/artifacts/$t-" "$work" "$src/tests/fuzz/corpus/$t" \
        >"$build/$t.log" 2>&1; then
        execs=$(grep -o 'Done [0-9]* runs' "$build/$t.log" | tail -1 | awk '{print $2}')
        echo "PASS $t: ${execs:-?} executions in $(( $(date +%s) - t1 )) s, corpus $(ls "$work" | wc -l) files"
    else
        failed=1
        echo "FAIL $t (input in $build/artifacts/):"
        tail -40 "$build/$t.log"
    fi
done
exit $failed
