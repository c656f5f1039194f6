#!/usr/bin/env bash
# Builds AlexeyAB/darknet 59596d7 as libdarknet.so (OPENCV=1 against the system OpenCV, AVX=1, OPENMP=0,
# CPU only, stock flags: the build the augmentation references used) and the loader harness linked to it.
#   tools/loader_bench/build_darknet.sh [darknet git dir] [out dir]
# Default git dir: /work/.mirror/AlexeyAB+darknet/repo; default out dir: target/loader_bench.
# Idempotent: an existing out/darknet/libdarknet.so is reused; the harness is rebuilt when harness.c is newer.
set -euo pipefail
DK=${1:-/work/.mirror/AlexeyAB+darknet/repo}
OUT=${2:-target/loader_bench}
C=59596d7
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if ! pkg-config --exists opencv4 2>/dev/null && ! pkg-config --exists opencv 2>/dev/null; then
  echo "error: OpenCV development files not found (Debian: apt-get install libopencv-dev)" >&2; exit 1
fi
if [ ! -f "$OUT/darknet/libdarknet.so" ]; then
  git --git-dir="$DK" cat-file -e "$C^{commit}" 2>/dev/null \
    || { echo "error: $DK is not a git dir holding AlexeyAB/darknet commit $C" >&2; exit 1; }
  rm -rf "$OUT/darknet.tmp"; mkdir -p "$OUT/darknet.tmp"
  git --git-dir="$DK" archive "$C" | tar -x -C "$OUT/darknet.tmp"
  mkdir -p "$OUT/darknet.tmp/obj"
  make -C "$OUT/darknet.tmp" -j"$(nproc)" GPU=0 CUDNN=0 OPENCV=1 AVX=1 OPENMP=0 LIBSO=1 libdarknet.so >"$OUT/darknet_build.log" 2>&1 \
    || { tail -20 "$OUT/darknet_build.log" >&2; echo "error: darknet build failed (log: $OUT/darknet_build.log)" >&2; exit 1; }
  rm -rf "$OUT/darknet"; mv "$OUT/darknet.tmp" "$OUT/darknet"
fi
if [ ! -x "$OUT/harness" ] || [ "$here/harness.c" -nt "$OUT/harness" ]; then
  gcc -O2 -Wall -I"$OUT/darknet/include" "$here/harness.c" -o "$OUT/harness.tmp" \
    -L"$OUT/darknet" -ldarknet -Wl,-rpath,"$OUT/darknet" -lpthread -lm
  mv "$OUT/harness.tmp" "$OUT/harness"
fi
echo "$OUT/harness"
