#!/usr/bin/env bash
# Benchmark of `candle-darknet anchors` against tools/kmeans_numpy.py (the same algorithm in numpy) on the same
# synthetic boxes, both on 2 cores. Prints the time per restart and per Lloyd iteration of each and the ratios.
# Not a test: speed is reported, not asserted.
#
#   tools/bench_anchors.sh [N=1000000] [RESTARTS=3]      (BIN=path/to/candle-darknet to pick the binary)
set -euo pipefail
N=${1:-1000000}
R=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-$here/target}/release/candle-darknet}
PY=${PYTHON:-python3}
if [ ! -x "$BIN" ]; then echo "error: $BIN not found; run 'cargo build --release' first (or set BIN)" >&2; exit 1; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export RAYON_NUM_THREADS=2 OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2
pin=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then pin=(taskset -c 0,1); fi

echo "generating $N synthetic boxes ..."
"$PY" "$here/tools/kmeans_numpy.py" --generate "$N" --out "$tmp/labels/boxes.txt" --seed 1
echo "== candle-darknet anchors ($BIN)"
"${pin[@]}" "$BIN" anchors --labels "$tmp/labels" -n 9 --size 416x416 --seed 1 --restarts "$R" --json "$tmp/rust.json"
echo "== tools/kmeans_numpy.py"
"${pin[@]}" "$PY" "$here/tools/kmeans_numpy.py" --labels "$tmp/labels" -n 9 --size 416x416 --seed 1 --restarts "$R" \
  --json "$tmp/numpy.json"
"$PY" - "$tmp/rust.json" "$tmp/numpy.json" <<'EOF'
import json, sys
r, n = (json.load(open(p)) for p in sys.argv[1:3])
def stats(j):
    s, it = j["restart_seconds"], j["restart_iterations"]
    return sum(s) / len(s), sum(s) / max(1, sum(it) + len(it))
rs, ri = stats(r)
ns, ni = stats(n)
print(f"\nboxes: {r['boxes']}, k = 9, restarts = {len(r['restart_seconds'])}, 2 threads")
print(f"{'':12} {'s/restart':>10} {'ms/iteration':>13} {'iterations':>18} {'avg IoU':>8} {'load s':>7}")
for name, j, s, i in (("rust", r, rs, ri), ("numpy", n, ns, ni)):
    print(f"{name:12} {s:10.3f} {1000*i:13.2f} {str(j['restart_iterations']):>18} {100*j['avg_iou']:8.2f} {j['load_seconds']:7.2f}")
print(f"ratio numpy/rust: {ns/rs:.2f}x per restart, {ni/ri:.2f}x per iteration")
EOF
