#!/usr/bin/env bash
# Regenerates src/layers/testdata/bn_sums/ from Darknet's own mean_cpu / variance_cpu / scal_cpu / axpy_cpu
# (src/blas.c of 59596d7), compiled twice: with the flags of the reference build (Makefile AVX=1 OPENMP=1:
# -ffp-contract=fast -mavx -mavx2 -msse3 -msse4.1 -msse4.2 -msse4a -Ofast -fopenmp -fPIC) and with those of
# the baseline build (AVX=0 OPTS=-O2). harness.c generates the input and prints the results' float bits.
#   tools/bn_sums_ref/make_ref.sh [DARKNET_GIT_DIR]     (default /work/.mirror/AlexeyAB+darknet/repo)
set -euo pipefail
DK=${1:-/work/.mirror/AlexeyAB+darknet/repo}
C=59596d7
here=$(cd "$(dirname "$0")" && pwd)
out=$here/../../src/layers/testdata/bn_sums
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
git --git-dir="$DK" archive $C src include | tar -x -C "$tmp"
common="-Wall -Wfatal-errors -Wno-unused-result -Wno-unknown-pragmas -fPIC -rdynamic -I$tmp/include -I$tmp/src"
declare -A flags=(
  [Ofast_avx]="-ffp-contract=fast -mavx -mavx2 -msse3 -msse4.1 -msse4.2 -msse4a -Ofast -fopenmp"
  [O2]="-O2 -fopenmp"
)
mkdir -p "$out"
for v in Ofast_avx O2; do
  # shellcheck disable=SC2086
  gcc $common ${flags[$v]} -c "$tmp/src/blas.c" -o "$tmp/blas_$v.o" 2>/dev/null
  # The harness itself: plain -O2, no AVX (no FMA either way), so its generator rounds as Rust does.
  # shellcheck disable=SC2086
  gcc -O2 -I"$tmp/include" -I"$tmp/src" "$here/harness.c" "$tmp/blas_$v.o" -fopenmp -lm -o "$tmp/harness_$v"
  "$tmp/harness_$v" > "$out/darknet_$v.txt"
done
gcc --version | head -1 > "$out/compiler.txt"
echo "wrote $out"
