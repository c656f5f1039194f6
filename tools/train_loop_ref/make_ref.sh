#!/usr/bin/env bash
# Training-loop references from Darknet itself (harness.c: train_detector's loop body, one loader thread,
# fixed srand), run twice: Darknet as built for the references (AVX=1, -Ofast, OMP_NUM_THREADS=2: the
# reference) and the same source built with AVX=0 and -O2 (OMP_NUM_THREADS=1: the baseline, Darknet's own
# float noise floor: no FMA contraction, no AVX accumulation order, no fast-math reassociation).
#
#   tools/train_loop_ref/make_ref.sh mini [DARKNET_GIT_DIR]          -> tests/data/train_loop/mini (committed)
#   tools/train_loop_ref/make_ref.sh tiny [DARKNET_GIT_DIR] [OUTDIR]  -> OUTDIR (default /tmp/train_loop_tiny)
#   VARIANT=plain tools/train_loop_ref/make_ref.sh mini DK OUTDIR     -> Darknet's CPU backward as it is
#
# DARKNET_GIT_DIR defaults to /work/.mirror/AlexeyAB+darknet/repo; commit 59596d7 is built (CPU, OPENCV=1
# against the system OpenCV via pkg-config opencv4, OPENMP=1, AVX=1, stock -Ofast flags) in $BUILD
# (default /tmp/darknet-trainloop-59596d7; kept between runs). Environment: K (iterations; mini 12, tiny 10),
# SEED (1), INIT (mini only: start from this weights file instead of a new random initialisation, e.g. the
# committed tests/data/train_loop/mini/reference/initial.weights, which reproduces the committed reference), VARIANT (fixed or plain, see below), BATCH / SUBDIVISIONS (tiny only: the official yolov4-tiny.cfg's batch=64 is replaced, default 8/2,
# so that a run fits on a small CPU), DUMP_X=1 also writes every batch, DUMP_UPDATES=1 every layer's accumulators
# (weight/bias/scale_updates after each update: full-precision gradients) as iter_NNN_updates.safetensors.
#
# Afterwards: `candle-darknet train-compare <case dir>` (see docs/training.md) runs our side against it.
set -euo pipefail
CASE=${1:?mini or tiny}
DK=${2:-/work/.mirror/AlexeyAB+darknet/repo}
C=59596d7
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
shared=${SHARED:-$repo/../shared}
BUILD=${BUILD:-/tmp/darknet-trainloop-$C}
SEED=${SEED:-1}

if [ ! -f "$BUILD/obj/network.o" ]; then
  mkdir -p "$BUILD"
  git --git-dir="$DK" archive $C | tar -x -C "$BUILD"
  make -C "$BUILD" -j"$(nproc)" GPU=0 CUDNN=0 OPENCV=1 OPENMP=1 AVX=1 LIBSO=0 >"$BUILD/build.log" 2>&1 \
    || { tail -20 "$BUILD/build.log"; exit 1; }
fi
# The baseline build: the same source without AVX at -O2 (its float evaluation differs, nothing else).
BASE_BUILD=${BASE_BUILD:-$BUILD-noavx-O2}
if [ ! -f "$BASE_BUILD/obj/network.o" ]; then
  mkdir -p "$BASE_BUILD"
  git --git-dir="$DK" archive $C | tar -x -C "$BASE_BUILD"
  make -C "$BASE_BUILD" -j"$(nproc)" GPU=0 CUDNN=0 OPENCV=1 OPENMP=1 AVX=0 OPTS=-O2 LIBSO=0 \
    >"$BASE_BUILD/build.log" 2>&1 || { tail -20 "$BASE_BUILD/build.log"; exit 1; }
fi
# Two harnesses per build: Darknet's CPU backward as it is ("plain"), and with its two gradient-flow faults
# corrected ("fixed", the default; see harness.c: a convolution's backward overwrites the previous layer's
# delta, and route/upsample deltas are never reset), which is the gradient of the loss, as Darknet's CUDA
# build computes it.
for B in "$BUILD" "$BASE_BUILD"; do
  OBJS=$(ls "$B"/obj/*.o | grep -v '/darknet.o$')
  g++ -O2 -fopenmp -x c "$here/harness.c" -x none -I"$B/include" -I"$B/src" -DOPENCV $OBJS \
    -o "$B/train_loop_harness_plain" $(pkg-config --libs opencv4) -lm -pthread
  g++ -O2 -fopenmp -DGRADIENT_FLOW_FIX -x c "$here/harness.c" -x none -I"$B/include" -I"$B/src" -DOPENCV \
    -Wl,--allow-multiple-definition $OBJS -o "$B/train_loop_harness_fixed" $(pkg-config --libs opencv4) \
    -lm -pthread
done
VARIANT=${VARIANT:-fixed}
HARNESS=$BUILD/train_loop_harness_$VARIANT
BASE_HARNESS=$BASE_BUILD/train_loop_harness_$VARIANT
[ -x "$HARNESS" ] || { echo "VARIANT must be fixed or plain"; exit 2; }

case $CASE in
  mini)
    K=${K:-12}
    out=${3:-$repo/tests/data/train_loop/mini}
    cfg=$repo/tests/data/train_loop/loop-mini.cfg
    labels=$repo/tests/data/train_loop/labels
    init=${INIT:--}   # Darknet's own random initialisation (parse_network_cfg after srand(SEED)), or INIT
    DUMP_UPDATES=${DUMP_UPDATES:-1}
    ;;
  tiny)
    K=${K:-10}
    out=${3:-/tmp/train_loop_tiny}
    mkdir -p "$out"
    cfg=$out/yolov4-tiny-train.cfg
    sed -e "s/^batch=64/batch=${BATCH:-8}/" -e "s/^subdivisions=1$/subdivisions=${SUBDIVISIONS:-2}/" \
      "$repo/weights/yolov4-tiny.cfg" > "$cfg"
    labels=$shared/reference/augment/labels_public_synthetic
    init=$out/yolov4-tiny.conv.29
    [ -f "$init" ] || (cd "$BUILD" && ./darknet partial "$repo/weights/yolov4-tiny.cfg" \
      "$repo/weights/yolov4-tiny.weights" "$init" 29 >/dev/null)
    ;;
  *) echo "unknown case $CASE (mini or tiny)"; exit 2 ;;
esac

# The images: Darknet's sample pictures plus bus/zidane, labels beside them (a pub/ dir of links).
if [ "$CASE" = mini ]; then root=$(mktemp -d); trap 'rm -rf "$root"' EXIT; else root=$out/root; rm -rf "$root"; fi
mkdir -p "$root/pub"
for n in bus dog eagle giraffe horses person scream zidane; do
  img=$shared/darknet/data/$n.jpg; [ -f "$img" ] || img=$repo/weights/$n.jpg
  ln -s "$(readlink -f "$img")" "$root/pub/$n.jpg"
  ln -s "$(readlink -f "$labels/$n.txt")" "$root/pub/$n.txt"
  echo "pub/$n.jpg" >> "$root/train.txt"
done

run() { # threads dir harness
  rm -rf "$2"; mkdir -p "$2"
  (cd "$root" && OMP_NUM_THREADS=$1 "$3" "$cfg" train.txt "$init" "$SEED" "$K" "$2" \
    "${DUMP_X:-0}" "${DUMP_UPDATES:-0}" 2>"$2/darknet_log.txt" >/dev/null)
}
mkdir -p "$out"
# make_yolo_layer calls srand(time(0)): every layer after the first [yolo] gets a time-seeded random
# initialisation. So the network is initialised once (K = 0) and both runs start from that file.
mkdir -p "$root/init"
(cd "$root" && "$HARNESS" "$cfg" train.txt "$init" "$SEED" 0 "$root/init" >/dev/null 2>&1)
init=$root/init/initial.weights
run 2 "$out/reference" "$HARNESS"
run 1 "$out/baseline" "$BASE_HARNESS"
cp "$cfg" "$out/net.cfg"
cp "$root/train.txt" "$out/train.txt"
python3 "$here/noise_floor.py" "$out/reference" "$out/baseline" > "$out/noise_floor.json"
cat > "$out/case.json" <<EOF
{"cfg": "net.cfg", "train": "train.txt", "seed": $SEED, "iterations": $K, "darknet_commit": "$C",
 "harness": "$VARIANT", "omp_threads": 2, "baseline_omp_threads": 1, "baseline_build": "AVX=0 OPTS=-O2"}
EOF
if [ "$CASE" = tiny ]; then
  # Our side reads the same list (relative paths resolve under the .data file's folder; the label path
  # string seeds the truth's track ids, so it must be the same string as Darknet's).
  printf 'classes=80\ntrain=%s\nnames=%s\n' "$root/train.txt" "$repo/weights/coco.names" > "$root/train.data"
  ln -sf "$root/train.data" "$out/train.data"
fi
if [ "$out" = "$repo/tests/data/train_loop/mini" ]; then
  # Committed: the reference and the noise-floor summary; of the baseline only its accumulators after the
  # first update (DUMP_UPDATES=1: the first-update gradient test of tests/train_parity.rs).
  keep=$out/baseline/iter_001_updates.safetensors
  [ -f "$keep" ] && mv "$keep" "$out/baseline_iter_001_updates.safetensors"
  keep=$out/reference/iter_001_updates.safetensors
  [ -f "$keep" ] && mv "$keep" "$out/reference_iter_001_updates.safetensors"
  rm -rf "$out/baseline" "$out"/reference/iter_*_updates.safetensors
fi
echo "wrote $out"
