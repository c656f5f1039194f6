#!/usr/bin/env bash
# Training-loop references from Darknet itself (harness.c: train_detector's loop body, one loader thread,
# fixed srand), run twice: OMP_NUM_THREADS=2 (the reference) and OMP_NUM_THREADS=1 (the noise floor).
#
#   tools/train_loop_ref/make_ref.sh mini [DARKNET_GIT_DIR]          -> tests/data/train_loop/mini (committed)
#   tools/train_loop_ref/make_ref.sh tiny [DARKNET_GIT_DIR] [OUTDIR]  -> OUTDIR (default /tmp/train_loop_tiny)
#   VARIANT=plain tools/train_loop_ref/make_ref.sh mini DK OUTDIR     -> Darknet's CPU backward as it is
#
# DARKNET_GIT_DIR defaults to /work/.mirror/AlexeyAB+darknet/repo; commit 59596d7 is built (CPU, OPENCV=1
# against the system OpenCV via pkg-config opencv4, OPENMP=1, AVX=1, stock -Ofast flags) in $BUILD
# (default /tmp/darknet-trainloop-59596d7; kept between runs). Environment: K (iterations; mini 12, tiny 10),
# SEED (1), VARIANT (fixed or plain, see below), BATCH / SUBDIVISIONS (tiny only: the official yolov4-tiny.cfg's batch=64 is replaced, default 8/2,
# so that a run fits on a small CPU), DUMP_X=1 also writes every batch.
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
OBJS=$(ls "$BUILD"/obj/*.o | grep -v '/darknet.o$')
# Two harnesses: Darknet's CPU backward as it is ("plain"), and with its two gradient-flow faults corrected
# ("fixed", the default; see harness.c: a convolution's backward overwrites the previous layer's delta, and
# route/upsample deltas are never reset), which is the gradient of the loss, as Darknet's CUDA build computes it.
g++ -O2 -fopenmp -x c "$here/harness.c" -x none -I"$BUILD/include" -I"$BUILD/src" -DOPENCV $OBJS \
  -o "$BUILD/train_loop_harness_plain" $(pkg-config --libs opencv4) -lm -pthread
g++ -O2 -fopenmp -DGRADIENT_FLOW_FIX -x c "$here/harness.c" -x none -I"$BUILD/include" -I"$BUILD/src" -DOPENCV \
  -Wl,--allow-multiple-definition $OBJS -o "$BUILD/train_loop_harness_fixed" $(pkg-config --libs opencv4) -lm -pthread
VARIANT=${VARIANT:-fixed}
HARNESS=$BUILD/train_loop_harness_$VARIANT
[ -x "$HARNESS" ] || { echo "VARIANT must be fixed or plain"; exit 2; }

case $CASE in
  mini)
    K=${K:-12}
    out=${3:-$repo/tests/data/train_loop/mini}
    cfg=$repo/tests/data/train_loop/loop-mini.cfg
    labels=$repo/tests/data/train_loop/labels
    init=-   # Darknet's own random initialisation (parse_network_cfg after srand(SEED))
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

run() { # threads dir
  rm -rf "$2"; mkdir -p "$2"
  (cd "$root" && OMP_NUM_THREADS=$1 "$HARNESS" "$cfg" train.txt "$init" "$SEED" "$K" "$2" \
    "${DUMP_X:-0}" 2>"$2/darknet_log.txt" >/dev/null)
}
mkdir -p "$out"
# make_yolo_layer calls srand(time(0)): every layer after the first [yolo] gets a time-seeded random
# initialisation. So the network is initialised once (K = 0) and both runs start from that file.
mkdir -p "$root/init"
(cd "$root" && "$HARNESS" "$cfg" train.txt "$init" "$SEED" 0 "$root/init" >/dev/null 2>&1)
init=$root/init/initial.weights
run 2 "$out/reference"
run 1 "$out/baseline"
cp "$cfg" "$out/net.cfg"
cp "$root/train.txt" "$out/train.txt"
python3 "$here/noise_floor.py" "$out/reference" "$out/baseline" > "$out/noise_floor.json"
cat > "$out/case.json" <<EOF
{"cfg": "net.cfg", "train": "train.txt", "seed": $SEED, "iterations": $K, "darknet_commit": "$C",
 "harness": "$VARIANT", "omp_threads": 2, "baseline_omp_threads": 1}
EOF
if [ "$CASE" = tiny ]; then
  # Our side reads the same list (relative paths resolve under the .data file's folder; the label path
  # string seeds the truth's track ids, so it must be the same string as Darknet's).
  printf 'classes=80\ntrain=%s\nnames=%s\n' "$root/train.txt" "$repo/weights/coco.names" > "$root/train.data"
  ln -sf "$root/train.data" "$out/train.data"
fi
if [ "$out" = "$repo/tests/data/train_loop/mini" ]; then
  # Committed: the reference (one thread count) and the noise-floor summary; the baseline's tensors are not.
  rm -rf "$out/baseline"
fi
echo "wrote $out"
