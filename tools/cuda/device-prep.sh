#!/usr/bin/env bash
# Packs everything tools/cuda/device-check.sh needs into target/cuda/device/pack (the one path a GPU session
# carries: the device machine cannot download anything and receives at most 64 MiB with the working tree).
# Run by `make cuda-device-prep`, which first builds the two binaries:
#   target/cuda/build/release/candle-darknet  (`make cuda`)
#   target/cuda/darknet/{darknet,darknet_bench}  (tools/cuda/build-darknet-gpu.sh)
# Inputs: weights/ (`make weights`) and the shared data ($CANDLE_DARKNET_SHARED, else ../shared).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SHARED=${CANDLE_DARKNET_SHARED:-$ROOT/../shared}
BIN=${CUDA_BIN:-target/cuda/build/release/candle-darknet}
DKDIR=${DARKNET_GPU_DIR:-target/cuda/darknet}
DEV=target/cuda/device
LIMIT_MIB=${LIMIT_MIB:-60}  # of the 64 MiB: the working tree travels too (~2 MiB)

for f in "$BIN" "$DKDIR/darknet" "$DKDIR/darknet_bench" weights/yolov4-tiny.weights weights/yolov4-tiny.cfg \
    weights/coco.names "$SHARED/reference/yolov4-tiny-bus416/manifest.json" "$SHARED/darknet/cfg/yolov4.cfg"; do
  [ -e "$f" ] || { echo "device-prep: $f missing" >&2; exit 1; }
done

stage=$DEV/pack.tmp
rm -rf "$stage"
mkdir -p "$stage"/{bin,lib,models,samples,ref/mini-yolov4}
# Binaries, without symbols (size).
strip -o "$stage/bin/candle-darknet" "$BIN"
strip -o "$stage/bin/darknet" "$DKDIR/darknet"
strip -o "$stage/bin/darknet_bench" "$DKDIR/darknet_bench"
# OpenMP runtime of this compiler, for a machine without one (device-check.sh puts it last on the path).
cp "$(gcc -print-file-name=libgomp.so.1)" "$stage/lib/"

cp weights/yolov4-tiny.cfg weights/yolov4-tiny.weights weights/coco.names "$stage/models/"
# yolov4 at 416 (the issue's size; Darknet's cfg says 608).
sed -e 's/^width=.*/width=416/' -e 's/^height=.*/height=416/' "$SHARED/darknet/cfg/yolov4.cfg" >"$stage/models/yolov4-416.cfg"
cp weights/bus.jpg weights/zidane.jpg "$stage/samples/"
for n in dog eagle giraffe horses person; do cp "$SHARED/darknet/data/$n.jpg" "$stage/samples/"; done

py=${PYTHON:-python3}
"$py" tools/cuda/devpack.py derive "$SHARED/reference/yolov4-tiny-bus416" "$stage/ref/yolov4-tiny-bus416"
cp "$SHARED/reference/mini-yolov4/mini-yolov4.cfg" "$SHARED/reference/mini-yolov4/mini-yolov4.weights" "$stage/ref/mini-yolov4/"
for r in infer_fused infer_unfused; do
  "$py" tools/cuda/devpack.py derive "$SHARED/reference/mini-yolov4/$r" "$stage/ref/mini-yolov4/$r"
done
"$py" tools/cuda/devpack.py derive "$SHARED/reference/mini-yolov4-train" "$stage/ref/mini-yolov4-train"
"$py" tools/cuda/devpack.py compress "$stage"

# Provenance, for the report.
{
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "built $(date -u +%FT%TZ)"
  "$ROOT/target/cuda/site/nvidia/cu13/bin/nvcc" --version | tail -2
} >"$stage/PROVENANCE"

mib=$(du -sm "$stage" | cut -f1)
if [ "$mib" -gt "$LIMIT_MIB" ]; then
  echo "device-prep: $stage is $mib MiB, over the $LIMIT_MIB MiB that can travel" >&2
  exit 1
fi
rm -rf "$DEV/pack"
mv "$stage" "$DEV/pack"
echo "device-prep: $DEV/pack ready ($mib MiB); carry [\"target/cuda/device\"] (docs/cuda.md)"
