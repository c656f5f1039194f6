#!/bin/sh
# Regenerates tests/data/backward/ with Darknet's own forward_network + backward_network (no update).
# Usage: tools/yolo_loss_cases/gen_backward.sh <darknet source tree built with `make` (GPU=0)>
set -e
DK=$1
HERE=$(dirname "$0")
OBJS=$(ls "$DK"/obj/*.o | grep -v '/darknet.o$')
g++ -O2 -x c "$HERE/backward_harness.c" -x none -I "$DK/include" -I "$DK/src" $OBJS -o "$DK/backward_harness" -lm -pthread
D="$HERE/../../tests/data/backward"
"$DK/backward_harness" "$D/net.cfg" "$D" > "$D/darknet_log.txt" 2>&1
