#!/usr/bin/env bash
# Dumps every layer of the official yolov3-tiny (`make weights`, sha256 dccea06f...) on Darknet's dog.jpg with
# Darknet itself, in the ../shared/reference format (tools/heads_ref/dump_layers.c), at a network size set in a
# copy of weights/yolov3-tiny.cfg (width=height=SIZE).
#   tools/heads_ref/yolov3_tiny_layers.sh <AlexeyAB/darknet git dir> [SIZE, default 128] [OUTDIR]
# SIZE 128 writes tests/data/yolov3-tiny-layers-128/ (committed, tests/yolov3_tiny.rs); other sizes need OUTDIR,
# e.g. `... 416 /tmp/yolov3-tiny-416` (about 30 MB, not committed), then
# `candle-darknet compare OUTDIR/yolov3-tiny.cfg weights/yolov3-tiny.weights --reference OUTDIR --image ../shared/darknet/data/dog.jpg`.
# Darknet 59596d7 is built CPU-only as in make_ref.sh (or $DK_BUILD reused).
set -euo pipefail
DK=${1:?path to an AlexeyAB/darknet git repository}
size=${2:-128}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "$root/../shared" && pwd)
if [ "$size" = 128 ]; then out=${3:-$root/tests/data/yolov3-tiny-layers-128}; else out=${3:?OUTDIR for size $size}; fi
tmp=${DK_BUILD:-$(mktemp -d)}
if [ ! -f "$tmp/libdarknet.so" ]; then
  git --git-dir="$DK" archive 59596d7 | tar -x -C "$tmp"
  sed -i 's/^GPU=.*/GPU=0/; s/^CUDNN=.*/CUDNN=0/; s/^CUDNN_HALF=.*/CUDNN_HALF=0/; s/^OPENCV=.*/OPENCV=0/; s/^AVX=.*/AVX=1/; s/^OPENMP=.*/OPENMP=0/; s/^LIBSO=.*/LIBSO=1/' "$tmp/Makefile"
  make -C "$tmp" -j2 >/dev/null 2>&1
fi
echo "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c  $root/weights/yolov3-tiny.weights" | sha256sum -c --quiet
objs=$(ls "$tmp"/obj/*.o | grep -v -e '/darknet.o$' -e '/yolo_console_dll.o$')
exe=$(mktemp); trap 'rm -f "$exe"' EXIT
gcc -O2 -I"$tmp/include" -I"$tmp/src" "$here/dump_layers.c" $objs -o "$exe" -lm -pthread -lstdc++
rm -rf "$out"; mkdir -p "$out"
sed -e "s/^width=.*/width=$size/" -e "s/^height=.*/height=$size/" "$root/weights/yolov3-tiny.cfg" > "$out/yolov3-tiny.cfg"
"$exe" "$out/yolov3-tiny.cfg" "$root/weights/yolov3-tiny.weights" "$shared/darknet/data/dog.jpg" "$out" > "$out/darknet_log.txt" 2>&1
echo "wrote $out"
