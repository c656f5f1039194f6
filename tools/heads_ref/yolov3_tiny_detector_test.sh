#!/usr/bin/env bash
# Regenerates tests/data/yolov3-tiny-detector-test/: what `darknet detector test` prints (-ext_output) for the
# official yolov3-tiny (`make weights`, sha256 dccea06f...) on Darknet's sample images and bus/zidane, at
# -thresh 0.25 and 0.05.
#   tools/heads_ref/yolov3_tiny_detector_test.sh <AlexeyAB/darknet git dir> [<shared dir, default ../shared>]
# Darknet 59596d7 is built CPU-only as in make_ref.sh (or $DK_BUILD reused).
set -euo pipefail
DK=${1:?path to an AlexeyAB/darknet git repository}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
shared=$(cd "${2:-$root/../shared}" && pwd)
out=$root/tests/data/yolov3-tiny-detector-test
tmp=${DK_BUILD:-$(mktemp -d)}
if [ ! -x "$tmp/darknet" ]; then
  git --git-dir="$DK" archive 59596d7 | tar -x -C "$tmp"
  sed -i 's/^GPU=.*/GPU=0/; s/^CUDNN=.*/CUDNN=0/; s/^CUDNN_HALF=.*/CUDNN_HALF=0/; s/^OPENCV=.*/OPENCV=0/; s/^AVX=.*/AVX=1/; s/^OPENMP=.*/OPENMP=0/; s/^LIBSO=.*/LIBSO=1/' "$tmp/Makefile"
  make -C "$tmp" -j2 >/dev/null 2>&1
fi
echo "dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c  $root/weights/yolov3-tiny.weights" | sha256sum -c --quiet
mkdir -p "$out"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
printf 'classes=80\nnames=%s\n' "$shared/darknet/data/coco.names" > "$work/coco.data"
for img in "$shared"/darknet/data/{dog,eagle,giraffe,horses,person,scream}.jpg "$root"/weights/{bus,zidane}.jpg; do
  for t in 0.25 0.05; do
    (cd "$work" && "$tmp/darknet" detector test coco.data "$shared/darknet/cfg/yolov3-tiny.cfg" \
      "$root/weights/yolov3-tiny.weights" "$img" -thresh "$t" -ext_output -dont_show 2>/dev/null \
      | { grep '%' || true; } > "$out/$(basename "$img" .jpg)_$t.txt")
  done
done
echo "wrote $out"
