#!/usr/bin/env bash
# Regenerates src/anchors/testdata/darknet_ref/ from Darknet's own k-means code.
#   tools/anchors_darknet_ref/make_ref.sh <AlexeyAB/darknet git dir>     (commit 59596d7 is read with git show)
set -euo pipefail
DK=${1:?path to an AlexeyAB/darknet git repository}
C=59596d7
here=$(cd "$(dirname "$0")" && pwd)
out=$here/../../src/anchors/testdata/darknet_ref
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
git -C "$DK" show $C:src/matrix.c > "$tmp/matrix.c"
git -C "$DK" show $C:src/detector.c > "$tmp/detector.c"
awk '/^float dist\(float \*x, float \*y, int n\)$/,/^}/' "$tmp/matrix.c" > "$tmp/fn.c"
for f in '^int closest_center' '^int kmeans_expectation' '^void kmeans_maximization'; do
  awk "/$f/,/^}/" "$tmp/matrix.c" >> "$tmp/fn.c"; done
awk '/^void free_matrix/,/^}/' "$tmp/matrix.c" > "$tmp/fm.c"
awk '/^int anchors_data_comparator/,/^}/' "$tmp/detector.c" > "$tmp/cmp.c"
gcc -O2 -I"$tmp" "$here/harness.c" -o "$tmp/harness"
mkdir -p "$out"
# 3000 boxes around yolov3's anchors (±50 %), sizes quantised as a 6-decimal label file would give; initial
# centres: the first k boxes of a random permutation (Darknet's random_centers).
python3 - "$out" <<'PY'
import sys, numpy as np
out = sys.argv[1]
rng = np.random.default_rng(2024)
C = np.array([[10,13],[16,30],[33,23],[30,61],[62,45],[59,119],[116,90],[156,198],[373,326]], np.float32)
n = 3000
wh = np.clip(C[rng.integers(len(C), size=n)] * (1 + 0.5 * (rng.random((n, 2), dtype=np.float32) * 2 - 1)), 1, 416)
wh = (np.round(wh / 416, 6).astype(np.float32) * np.float32(416)).astype('<f4')
wh.tofile(f"{out}/boxes.bin")
perm = rng.permutation(n)
for k in (9, 6, 1):
    wh[perm[:k]].tofile(f"{out}/init{k}.bin")
PY
for k in 9 6 1; do "$tmp/harness" "$out/boxes.bin" "$out/init$k.bin" 3000 $k > "$out/darknet_k$k.txt"; done
echo "wrote $out"
