#!/usr/bin/env bash
# The one GPU run of issue #18, on a lent device machine (docs/cuda.md says how to call it): from what
# `make cuda-device-prep` packed into target/cuda/device (our CUDA build, Darknet 59596d7 GPU=1 CUDNN=1 with its
# timing harness, the public Darknet references, the weights and samples) it runs
#   1. `compare` on every public Darknet reference (yolov4-tiny on bus.jpg, mini-yolov4 fused/unfused/train),
#   2. `detect` on the samples (on the GPU and on the CPU, the detections compared),
#   3. `bench` of yolov4-tiny and yolov4 at 416, batch 1, 8 and 64, ours and Darknet's (same random weights for
#      yolov4: only yolov4-tiny's official weights fit in the transfer),
#   4. a short yolov4-tiny fine-tune at 416 (batch 64, synthetic 3-class data), ours and Darknet's, images/s,
# and writes $OUT/device-check.json (results, ratios ours/Darknet) and $OUT/device-check.log.
# Every step has a time limit and its own record; a failing step does not stop the others.
#
#   tools/cuda/device-check.sh [--dry-run]
#
# --dry-run: on a machine without a GPU, the same steps on the CPU, smaller (batch 1 and 2, 2 training
#   iterations at 224): the carried binaries are started against the toolkit's libraries with a stub libcuda,
#   so every command line, file and parser is exercised; Darknet's steps run its CPU build
#   (DARKNET_CPU_DIR, default target/cuda/darknet-cpu: `DARKNET_GPU=0 tools/cuda/build-darknet-gpu.sh`) when
#   present, and its GPU build is only started for its usage line.
# Environment: DEV (default target/cuda/device), OUT (default target/cuda/device-out), WORK (scratch, default
#   /tmp/candle-darknet-device), BUDGET_S (whole run, default 480), ITERS (training iterations, default 40).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
DEV=${DEV:-$ROOT/target/cuda/device}
OUT=${OUT:-$ROOT/target/cuda/device-out}
WORK=${WORK:-/tmp/candle-darknet-device}
BUDGET_S=${BUDGET_S:-480}
START=$(date +%s)
mkdir -p "$OUT"
rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/results"
LOG=$OUT/device-check.log
: >"$LOG"
STEPS=$WORK/steps.jsonl
: >"$STEPS"
D=$WORK/d           # unpacked payload
R=$WORK/results
BIN=$D/bin/candle-darknet
DK=$D/bin/darknet
DKB=$D/bin/darknet_bench
say() { echo "[device-check $(($(date +%s) - START))s] $*" | tee -a "$LOG"; }

# step NAME LIMIT_S CMD...: runs CMD (output to logs/NAME.log and the main log), records rc and seconds.
step() {
  local name=$1 limit=$2 left t0 rc
  shift 2
  left=$((BUDGET_S - ($(date +%s) - START)))
  if [ "$left" -le 5 ]; then
    say "$name: skipped (time budget spent)"
    printf '{"name":"%s","rc":null,"seconds":0,"skipped":"time budget spent"}\n' "$name" >>"$STEPS"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "$name: $* (limit ${limit}s)"
  t0=$(date +%s%N)
  timeout "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
  rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  tail -n 40 "$WORK/logs/$name.log" >>"$LOG"
  say "$name: rc $rc, ${secs}s"
  printf '{"name":"%s","rc":%d,"seconds":%s,"limit_s":%d}\n' "$name" "$rc" "${secs:-0}" "$limit" >>"$STEPS"
  return $rc
}
skip() { # NAME REASON
  say "$1: skipped ($2)"
  printf '{"name":"%s","rc":null,"seconds":0,"skipped":"%s"}\n' "$1" "$2" >>"$STEPS"
}

# --- 0. payload and libraries -------------------------------------------------------------------------------------
[ -f "$DEV/pack/devpack.json" ] || { say "no payload at $DEV/pack: run 'make cuda-device-prep' first"; exit 1; }
step unpack 120 python3 "$ROOT/tools/cuda/devpack.py" unpack "$DEV/pack" "$D" || { say "unpack failed"; exit 1; }

if [ "$DRY" = 1 ]; then
  DEVICE=cpu
  # The carried binaries need libcuda.so.1, which only a driver provides: the toolkit's link stub stands in.
  # Nothing in a --device cpu run calls into it.
  source "$ROOT/target/cuda/env.sh"
  mkdir -p "$WORK/stub"
  ln -sf "$CUDA_HOME/lib/stubs/libcuda.so" "$WORK/stub/libcuda.so.1"
  export LD_LIBRARY_PATH=$WORK/stub:$CUDA_HOME/lib:$D/lib
  BATCHES="1 2"; RUNS=2; WARMUP=1; ITERS=${ITERS:-2}; TRAIN_SIZE=224; TRAIN_BATCH=4; NTRAIN=16
  DKCPU=${DARKNET_CPU_DIR:-$ROOT/target/cuda/darknet-cpu}
  DK_RUN=""; DKB_RUN=""
  [ -x "$DKCPU/darknet" ] && DK_RUN=$DKCPU/darknet
  [ -x "$DKCPU/darknet_bench" ] && DKB_RUN=$DKCPU/darknet_bench
else
  DEVICE=cuda
  # The CUDA 13 / cuDNN 9 libraries the binaries were linked against: the driver's libcuda, and the runtime,
  # cuBLAS, cuRAND, NVRTC and cuDNN of the machine's toolkit or of its Python packages (the image's PyTorch).
  site=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)
  cands="/usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/local/cuda/lib64"
  cands="$cands /usr/local/cuda/targets/x86_64-linux/lib"
  for s in $site; do cands="$cands $(ls -d "$s"/nvidia/*/lib 2>/dev/null | tr '\n' ' ')"; done
  libdirs=""
  for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13 \
      libcudnn.so.9 libgomp.so.1; do
    found=""
    for c in $cands; do [ -e "$c/$lib" ] && { found=$c; break; }; done
    [ -z "$found" ] && found=$(dirname "$(timeout 60 find / \( -path /proc -o -path /sys \) -prune -o -name "$lib" -print -quit 2>/dev/null)" 2>/dev/null)
    [ "$found" = "." ] && found=""
    say "library $lib: ${found:-NOT FOUND}"
    echo "{\"lib\":\"$lib\",\"dir\":\"$found\"}" >>"$WORK/libs.jsonl"
    case ":$libdirs:" in *":$found:"*) ;; *) [ -n "$found" ] && libdirs=$libdirs:$found ;; esac
  done
  # $D/lib (a libgomp.so.1 from the build machine) last: only for what the machine lacks.
  export LD_LIBRARY_PATH=${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$D/lib
  nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
    >"$WORK/gpu.txt" 2>&1 || true
  say "GPU: $(cat "$WORK/gpu.txt")"
  BATCHES="1 8 64"; RUNS=20; WARMUP=5; ITERS=${ITERS:-40}; TRAIN_SIZE=416; TRAIN_BATCH=64; NTRAIN=256
  DK_RUN=$DK; DKB_RUN=$DKB
fi
say "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
for b in "$BIN" "$DK" "$DKB"; do
  missing=$(ldd "$b" 2>&1 | grep "not found" | tr -s ' \t' ' ' | tr '\n' ';')
  say "ldd $(basename "$b"): ${missing:-all libraries found}"
  echo "{\"bin\":\"$(basename "$b")\",\"missing\":\"$missing\"}" >>"$WORK/ldd.jsonl"
done

M=$D/models
REF=$D/ref

# --- 1. compare on the public Darknet references ------------------------------------------------------------------
step compare_yolov4-tiny-bus416 90 "$BIN" compare "$REF/yolov4-tiny-bus416/yolov4-tiny.cfg" "$M/yolov4-tiny.weights" \
  --reference "$REF/yolov4-tiny-bus416" --image "$D/samples/bus.jpg" --device $DEVICE --json "$R/compare_yolov4-tiny-bus416.json"
for r in infer_fused infer_unfused; do
  step "compare_mini-yolov4-$r" 60 "$BIN" compare "$REF/mini-yolov4/mini-yolov4.cfg" "$REF/mini-yolov4/mini-yolov4.weights" \
    --reference "$REF/mini-yolov4/$r" --device $DEVICE --json "$R/compare_mini-yolov4-$r.json"
done
step compare_mini-yolov4-train 60 "$BIN" compare "$REF/mini-yolov4/mini-yolov4.cfg" "$REF/mini-yolov4/mini-yolov4.weights" \
  --reference "$REF/mini-yolov4-train" --device $DEVICE --json "$R/compare_mini-yolov4-train.json"

# --- 2. detect on the samples (this device, then the CPU) -----------------------------------------------------------
step detect_$DEVICE 90 "$BIN" detect "$M/yolov4-tiny.cfg" "$M/yolov4-tiny.weights" "$D/samples" --names "$M/coco.names" \
  --device $DEVICE --batch 4 --json "$R/detect_$DEVICE.json" --quiet
[ "$DEVICE" = cpu ] || step detect_cpu 120 "$BIN" detect "$M/yolov4-tiny.cfg" "$M/yolov4-tiny.weights" "$D/samples" \
  --names "$M/coco.names" --device cpu --json "$R/detect_cpu.json" --quiet

# --- 3. bench, ours and Darknet's ----------------------------------------------------------------------------------
# yolov4 at 416 with random weights (Darknet's initialisation, fixed seed), the same file for both programs.
step random_weights_yolov4 60 "$BIN" random-weights "$M/yolov4-416.cfg" -o "$M/yolov4-416-random.weights" --seed 1
for m in yolov4-tiny yolov4; do
  if [ $m = yolov4 ]; then cfg=$M/yolov4-416.cfg; w=$M/yolov4-416-random.weights; else cfg=$M/yolov4-tiny.cfg; w=$M/yolov4-tiny.weights; fi
  for b in $BATCHES; do
    runs=$RUNS; [ "$b" -ge 64 ] && runs=10
    step "bench_ours_${m}_b$b" 90 "$BIN" bench "$cfg" "$w" --batch "$b" --runs $runs --warmup $WARMUP --pipeline-runs 0 \
      --device $DEVICE --json "$R/bench_ours_${m}_b$b.json"
    if [ -z "$DKB_RUN" ]; then
      skip "bench_darknet_${m}_b$b" "dry run without Darknet's CPU build"
    elif [ "$DRY" = 1 ] && [ $m = yolov4 ]; then
      skip "bench_darknet_${m}_b$b" "dry run: a minute per forward on Darknet's CPU build"
    else
      dk_runs=$runs; dk_warmup=$WARMUP
      [ "$DRY" = 1 ] && { dk_runs=1; dk_warmup=0; }
      step "bench_darknet_${m}_b$b" 120 "$DKB_RUN" "$cfg" "$w" "$b" $dk_runs $dk_warmup
      grep '^{"batch"' "$WORK/logs/bench_darknet_${m}_b$b.log" | tail -1 >"$R/bench_darknet_${m}_b$b.json"
    fi
  done
done

# --- 4. fine-tune, ours and Darknet's: same cfg, data, initial weights --------------------------------------------
T=$WORK/train
mkdir -p "$T"
step train_data 120 python3 "$ROOT/tools/make_synthetic_dataset.py" "$T/data" --train $NTRAIN --valid 8 --size $TRAIN_SIZE --seed 1
# Darknet looks for a label file under .../labels/ where the image path says .../images/ (replace_image_to_label);
# the generator writes them beside the images.
ln -sfn images "$T/data/labels"
step train_cfg 30 python3 "$ROOT/tools/finetune_cfg.py" "$M/yolov4-tiny.cfg" "$T/shapes.cfg" --classes 3 --size $TRAIN_SIZE \
  --batch $TRAIN_BATCH --subdivisions 1 --lr 0.004 --burn-in 10 --iters "$ITERS"
step train_partial 30 "$BIN" partial "$M/yolov4-tiny.cfg" "$M/yolov4-tiny.weights" "$T/yolov4-tiny.conv.29" 29
step train_ours 240 "$BIN" train "$T/shapes.cfg" --data "$T/data/shapes.data" --weights "$T/yolov4-tiny.conv.29" \
  --device $DEVICE --out "$T/backup_ours" --seed 1 --workers 8 --checkpoint-every 100000
if [ -z "$DK_RUN" ]; then
  skip train_darknet "dry run without Darknet's CPU build"
else
  mkdir -p "$T/data/backup"
  # Line-buffered, so that a run stopped at its limit still leaves its iteration lines.
  lb=""; command -v stdbuf >/dev/null && lb="stdbuf -oL"
  step train_darknet 240 bash -c "cd '$T' && $lb '$DK_RUN' detector train data/shapes.data shapes.cfg yolov4-tiny.conv.29 -dont_show -clear"
fi
# The binaries start (usage) even in a dry run: their libraries resolve.
[ "$DRY" = 1 ] && step darknet_starts 10 bash -c "'$DK' 2>&1 | grep -q usage"

# --- report --------------------------------------------------------------------------------------------------------
python3 "$ROOT/tools/cuda/device_report.py" --work "$WORK" --out "$OUT/device-check.json" --dry-run "$DRY" \
  --train-batch "$TRAIN_BATCH" 2>&1 | tee -a "$LOG"
say "done in $(($(date +%s) - START)) s: $OUT/device-check.json"
