#!/usr/bin/env bash
# Regenerates tests/data/heads/<case>/ with Darknet itself (see tests/data/heads/README.md).
#   tools/heads_ref/make_ref.sh <AlexeyAB/darknet git dir> [case...]
# With case names, only those cases are regenerated (DK_BUILD=<dir> reuses a Darknet built there).
# Commit 59596d7 is exported with git archive and built CPU-only (GPU=0 OPENCV=0 OPENMP=0 AVX=1) in a temporary
# directory; the harness links its objects and runs from the cfg directory (so `tree=region.tree` resolves as
# Darknet resolves it: relative to the working directory).
set -euo pipefail
DK=${1:?path to an AlexeyAB/darknet git repository}
shift
only=" $* "
C=59596d7
here=$(cd "$(dirname "$0")" && pwd)
data=$(cd "$here/../../tests/data/heads" && pwd)
tmp=${DK_BUILD:-$(mktemp -d)}
if [ ! -f "$tmp/libdarknet.so" ]; then
  git --git-dir="$DK" archive $C | tar -x -C "$tmp"
  sed -i 's/^GPU=.*/GPU=0/; s/^CUDNN=.*/CUDNN=0/; s/^CUDNN_HALF=.*/CUDNN_HALF=0/; s/^OPENCV=.*/OPENCV=0/; s/^AVX=.*/AVX=1/; s/^OPENMP=.*/OPENMP=0/; s/^LIBSO=.*/LIBSO=1/' "$tmp/Makefile"
  make -C "$tmp" -j2 >/dev/null 2>&1
fi
objs=$(ls "$tmp"/obj/*.o | grep -v -e '/darknet.o$' -e '/yolo_console_dll.o$')
gcc -O2 -I"$tmp/include" -I"$tmp/src" "$here/harness.c" $objs -o "$tmp/heads_harness" -lm -pthread -lstdc++
img=$data/dog.jpg
# case  cfg  seed  last-conv weight scale  classes  thresholds
# Then `darknet detector test` itself on the saved weights (names c0, c1, ...): its printed lines, for each
# threshold, in detector_test_<thresh>.txt.
names=$(mktemp); dfile=$(mktemp)
run() {
  local case=$1 cfg=$2 seed=$3 scale=$4 classes=$5; shift 5
  if [ "$only" != "  " ] && [[ "$only" != *" $case "* ]]; then return 0; fi
  for i in $(seq 0 $((classes - 1))); do echo "c$i"; done > "$names"
  rm -rf "${data:?}/$case"; mkdir -p "$data/$case"
  (cd "$data/cfg" && "$tmp/heads_harness" "$cfg" "$img" "$data/$case" "$seed" "$scale" "$@" > "$data/$case/darknet_log.txt" 2>&1)
  printf 'classes=%s\nnames=%s\n' "$classes" "$names" > "$dfile"
  for t in "$@"; do
    (cd "$data/cfg" && "$tmp/darknet" detector test "$dfile" "$cfg" "$data/$case/net.weights" "$img" -thresh "$t" \
      -ext_output -dont_show 2>/dev/null | { grep '%' || true; } > "$data/$case/detector_test_$t.txt"
      rm -f predictions.jpg bad.list)
  done
}
run region region.cfg 11 20 7 0.25 0.05
run region_tree region_tree.cfg 12 6 8 0.25 0.05
run gaussian gaussian.cfg 13 16 3 0.25 0.05
run xnor xnor.cfg 14 1 2 0.25
run crnn crnn.cfg 15 4 2 0.25
run contrastive contrastive.cfg 16 4 2 0.25
rm -f "$names" "$dfile"
echo "wrote $data"
