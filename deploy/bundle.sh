#!/usr/bin/env bash
# Makes a relocatable tarball of a build: bin/ (falconlite, falconlite-router, falconlite-shard,
# whichever exist) and lib/ (the non-system shared libraries they load; the binaries' rpath
# $ORIGIN/../lib finds them), so it runs on a GPU host that has only glibc >= the build's, the
# NVIDIA driver and the CUDA runtime libraries (cudart, cuBLAS, NCCL) — or add those with
# --with-cuda-libs. Prints the GLIBC version the binaries need.
# Usage: deploy/bundle.sh [--with-cuda-libs] [BUILD_DIR (default build)] [OUT (default
#        falconlite-bundle.tar.gz)]
set -euo pipefail
with_cuda=0
if [ "${1:-}" = "--with-cuda-libs" ]; then with_cuda=1; shift; fi
BUILD=${1:-build}
OUT=${2:-falconlite-bundle.tar.gz}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root="$stage/falconlite"
mkdir -p "$root/bin" "$root/lib"

bins=()
for b in falconlite falconlite-router falconlite-shard; do
    [ -x "$BUILD/bin/$b" ] && bins+=("$BUILD/bin/$b")
done
[ ${#bins[@]} -gt 0 ] || { echo "bundle: no binaries in $BUILD/bin" >&2; exit 1; }
cp "${bins[@]}" "$root/bin/"

# Libraries every Linux host (glibc, the C++ runtime) or GPU host (driver) already has.
system='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libresolv|libutil|libgcc_s|libstdc\+\+|libcuda|libnvidia)[.-]'
cuda='^(libcudart|libcublas|libcublasLt|libnccl|libnvJitLink|libnvrtc)[.-]'
ldd "${bins[@]}" | awk '/=> \// {print $1, $3}' | sort -u | while read -r name path; do
    if [[ $name =~ $system ]]; then continue; fi
    if [[ $name =~ $cuda ]] && [ $with_cuda -eq 0 ]; then continue; fi
    cp -L "$path" "$root/lib/$name"
done
# A bundled library's own dependencies resolve through the same folder.
if command -v patchelf >/dev/null; then
    for l in "$root"/lib/*; do [ -f "$l" ] && patchelf --set-rpath '$ORIGIN' "$l"; done
fi
glibc=$(objdump -T "$root"/bin/* "$root"/lib/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -Vu | tail -1)
tar -C "$stage" -czf "$OUT" falconlite
echo "bundle: $OUT ($(du -h "$OUT" | cut -f1)); bin: $(ls "$root/bin" | tr '\n' ' ');" \
     "lib: $(ls "$root/lib" | tr '\n' ' '); needs ${glibc:-GLIBC ?}" \
     "$([ $with_cuda -eq 0 ] && echo '+ CUDA runtime libraries on the host')"
