#!/usr/bin/env bash
# Installs the Debian packages falconlite builds against (run as root on Debian 12 / Ubuntu 24.04).
# gnuplot-nox draws `falconlite bench-server --plot`. The CUDA toolkit is optional and not
# installed here: the CUDA backend builds when nvcc is found.
set -euo pipefail
pkgs="build-essential cmake ninja-build pkg-config python3 python3-venv python3-pip
      libgrpc-dev protobuf-c-compiler libprotobuf-c-dev libuv1-dev libcjson-dev
      libhttp-parser-dev libonig-dev libcmocka-dev libssl-dev
      gnuplot-nox clang libclang-rt-dev openssl"
# clang + libclang-rt-dev (Debian 12: clang 14 and its compiler-rt, libFuzzer included) build the
# fuzz targets (tests/fuzz/); libssl-dev (OpenSSL 3) serves HTTPS; openssl makes the test certificates of tests/integration/test_faults.py.
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends $missing
fi
