#!/usr/bin/env bash
# Regenerates tests/data/ema/darknet_ema.txt with Darknet itself (see tests/data/ema/README.md).
#   tools/ema_ref/make_ref.sh <AlexeyAB/darknet git dir>
# Commit 59596d7 is exported with git archive and built CPU-only (GPU=0 OPENCV=0 OPENMP=0 AVX=1) in a temporary
# directory (or $DK_BUILD, reused when it already holds the build); the harness links its objects.
set -euo pipefail
DK=${1:?path to an AlexeyAB/darknet git repository}
C=59596d7
here=$(cd "$(dirname "$0")" && pwd)
out=$here/../../tests/data/ema
tmp=${DK_BUILD:-$(mktemp -d)}
if [ ! -f "$tmp/libdarknet.so" ]; then
  git --git-dir="$DK" archive $C | tar -x -C "$tmp"
  sed -i 's/^GPU=.*/GPU=0/; s/^CUDNN=.*/CUDNN=0/; s/^CUDNN_HALF=.*/CUDNN_HALF=0/; s/^OPENCV=.*/OPENCV=0/; s/^AVX=.*/AVX=1/; s/^OPENMP=.*/OPENMP=0/; s/^LIBSO=.*/LIBSO=1/' "$tmp/Makefile"
  make -C "$tmp" -j2 >/dev/null 2>&1
fi
objs=$(ls "$tmp"/obj/*.o | grep -v -e '/darknet.o$' -e '/yolo_console_dll.o$')
gcc -O2 -I"$tmp/include" -I"$tmp/src" "$here/harness.c" $objs -o "$tmp/ema_harness" -lm -pthread -lstdc++
mkdir -p "$out"
cp "$here/net.cfg" "$out/net.cfg"
"$tmp/ema_harness" "$here/net.cfg" 2>"$out/darknet_log.txt" | grep -E '^(iteration|ema\.|layers\.)' > "$out/darknet_ema.txt"
echo "wrote $out"
