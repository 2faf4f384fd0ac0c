# Sourced by the integration scripts: locations of the built binaries and fixtures, the Python
# that reads JSON, a temporary folder removed at exit, and a failure counter.
#   BIN   the falconlite CLI (the script exits 77, skipped, when it is not built)
#   DATA  tests/golden/data       PY  Python for JSON checks     TMP  scratch folder
#   fail MESSAGE   records a failure; finish   prints the tally and exits 1 on any failure
BIN="${FL_BIN_DIR:?FL_BIN_DIR not set}/falconlite"
DATA="${FL_TEST_DATA:?FL_TEST_DATA not set}/golden/data"
PY="${FL_PYTHON:-python3}"
command -v "$PY" >/dev/null || PY=python3
[ -x "$BIN" ] || { echo "skip: $BIN not built"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
