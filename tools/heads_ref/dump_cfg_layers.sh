#!/usr/bin/env bash
# Dumps every layer of any cfg with Darknet itself, in the ../shared/reference format (dump_layers.c: fused
# conv+BN as `detector test`, input.bin, layer_XXX_<type>.bin, manifest.json), at a chosen network size and
# letterbox setting, with given weights or with calibrated random weights (calibrated_weights.c).
#   tools/heads_ref/dump_cfg_layers.sh <AlexeyAB/darknet git dir> <cfg> <weights | random:SEED> <image> <WxH> <letterbox 0|1> <outdir>
# OUTDIR gets the cfg actually run (its [net] width/height/letter_box rewritten; batch is 1 as the loader forces
# it), net.weights for random:SEED, darknet_log.txt and the dump; then
#   candle-darknet compare OUTDIR/<cfg name> <weights or OUTDIR/net.weights> --reference OUTDIR [--winograd ...]
# Large sizes are large dumps (yolov4-tiny at 608: 101 MB; yolov4-p6 at 1280: 3.8 GB, and Darknet needs 6.6 GB
# of memory and 4 minutes on one core with random:SEED): keep them out of the repository. Darknet 59596d7 is
# built CPU-only as in make_ref.sh (or $DK_BUILD reused).
# Darknet's AVX stride-1 maxpool (forward_maxpool_layer_avx, src/gemm.c) tests only the first of its 8 lanes'
# window columns against the left edge, so near the left edge lanes 1-7 miss in-window columns and output less
# than the window's maximum; it runs where size >= 3 and out_w > size + 7 (SPP 5x5 and 9x9 at 19x19 or 20x20, e.g.
# yolov4 at 608, yolov4-p6 at 1280). DK_PLAIN_MAXPOOL=1 builds Darknet with that branch off (its scalar loop, which
# takes the true maximum as the GPU path does) so that a dump compares everything else; the default is Darknet as is.
set -euo pipefail
DK=${1:?path to an AlexeyAB/darknet git repository}
cfg=${2:?cfg}
weights=${3:?weights file or random:SEED}
img=${4:?image}
size=${5:?WxH}
letterbox=${6:?letterbox 0 or 1}
out=${7:?output directory}
w=${size%x*}
h=${size#*x}
here=$(cd "$(dirname "$0")" && pwd)
tmp=${DK_BUILD:-$(mktemp -d)}
if [ ! -f "$tmp/libdarknet.so" ]; then
  git --git-dir="$DK" archive 59596d7 | tar -x -C "$tmp"
  sed -i 's/^GPU=.*/GPU=0/; s/^CUDNN=.*/CUDNN=0/; s/^CUDNN_HALF=.*/CUDNN_HALF=0/; s/^OPENCV=.*/OPENCV=0/; s/^AVX=.*/AVX=1/; s/^OPENMP=.*/OPENMP=0/; s/^LIBSO=.*/LIBSO=1/' "$tmp/Makefile"
  if [ "${DK_PLAIN_MAXPOOL:-0}" = 1 ]; then
    grep -q 'if(stride == 1 && is_avx() == 1) {' "$tmp/src/gemm.c"
    sed -i 's/if(stride == 1 \&\& is_avx() == 1) {/if(0 \&\& stride == 1 \&\& is_avx() == 1) {/' "$tmp/src/gemm.c"
  fi
  make -C "$tmp" -j2 >/dev/null 2>&1
fi
objs=$(ls "$tmp"/obj/*.o | grep -v -e '/darknet.o$' -e '/yolo_console_dll.o$')
bin=$(mktemp -d); trap 'rm -rf "$bin"' EXIT
gcc -O2 -I"$tmp/include" -I"$tmp/src" "$here/dump_layers.c" $objs -o "$bin/dump_layers" -lm -pthread -lstdc++
rm -rf "$out"; mkdir -p "$out"
ocfg=$out/$(basename "$cfg")
# Only [net] is rewritten: width/height/letter_box lines before the first layer section.
awk -v w="$w" -v h="$h" -v lb="$letterbox" '
  /^\[/ { sec++; print; if (sec == 1) printf "width=%s\nheight=%s\nletter_box=%s\n", w, h, lb; next }
  sec == 1 && /^[ \t]*(width|height|letter_box)[ \t]*=/ { next }
  { print }' "$cfg" > "$ocfg"
if [[ "$weights" == random:* ]]; then
  gcc -O2 -I"$tmp/include" -I"$tmp/src" "$here/calibrated_weights.c" $objs -o "$bin/calibrated_weights" -lm -pthread -lstdc++
  "$bin/calibrated_weights" "$ocfg" "$img" "$out/net.weights" "${weights#random:}" > "$out/calibration_log.txt" 2>&1
  weights=$out/net.weights
fi
"$bin/dump_layers" "$ocfg" "$weights" "$img" "$out" > "$out/darknet_log.txt" 2>&1
echo "wrote $out"
