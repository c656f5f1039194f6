#!/usr/bin/env bash
# Builds AlexeyAB/darknet 59596d7 as libdarknet.so (OPENCV=1 against the system OpenCV, AVX=1, OPENMP=0,
# CPU only, stock flags: the build the augmentation references used) and the loader harness linked to it.
#   tools/loader_bench/build_darknet.sh [darknet git dir] [out dir]
#   tools/loader_bench/build_darknet.sh --missing-packages
# Without a git dir (or with an empty one), commit 59596d7 alone is fetched (shallow) from $DARKNET_URL (default
# https://github.com/AlexeyAB/darknet) into OUT/darknet.git. Default out dir: target/loader_bench.
# --missing-packages prints the Debian packages that the build needs and this machine lacks (`make
# bench-loader-deps` installs them); the build itself stops first thing with the same list.
# Idempotent: an existing out/darknet/libdarknet.so is reused; the harness is rebuilt when harness.c is newer.
set -euo pipefail
C=59596d7880f6504768df41d6daa586f5cb2b932f

# The Debian packages behind what the build runs: git (the source), make and g++ (Darknet's Makefile; its
# OpenCV glue is C++), gcc (the harness), pkg-config (Darknet's Makefile asks it for OpenCV's flags) and
# OpenCV's development files.
missing_packages() {
  local cmd pkg missing=()
  for cmd in git:git make:make g++:g++ gcc:gcc pkg-config:pkg-config; do
    command -v "${cmd%%:*}" >/dev/null || missing+=("${cmd#*:}")
  done
  pkg-config --exists opencv4 2>/dev/null || pkg-config --exists opencv 2>/dev/null || missing+=(libopencv-dev)
  echo "${missing[*]}"
}
if [ "${1:-}" = --missing-packages ]; then missing_packages; exit 0; fi
missing=$(missing_packages)
if [ -n "$missing" ]; then
  echo "error: Darknet's loader build needs Debian's $missing (apt-get install $missing, or make bench-loader-deps as root)" >&2
  exit 1
fi

DK=${1:-}
OUT=${2:-target/loader_bench}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ ! -f "$OUT/darknet/libdarknet.so" ]; then
  if [ -z "$DK" ]; then
    DK=$OUT/darknet.git
    url=${DARKNET_URL:-https://github.com/AlexeyAB/darknet}
    if ! git --git-dir="$DK" cat-file -e "$C^{commit}" 2>/dev/null; then
      echo "fetching AlexeyAB/darknet $C from $url ..." >&2
      { git init -q --bare "$DK" && git --git-dir="$DK" fetch -q --depth 1 "$url" "$C"; } \
        || { echo "error: could not fetch Darknet $C from $url: set DARKNET_GIT=<a git dir holding it>" >&2; exit 1; }
    fi
  fi
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
