#!/bin/sh
# Regenerates tests/data/lr_policy/darknet.json with Darknet's own get_current_rate / update_convolutional_layer.
# Usage: tools/yolo_loss_cases/gen_rates.sh <darknet source tree built with `make` (GPU=0)>
set -e
DK=$1
HERE=$(dirname "$0")
OBJS=$(ls "$DK"/obj/*.o | grep -v '/darknet.o$')
g++ -O2 -x c "$HERE/rate_update_harness.c" -x none -I "$DK/include" -I "$DK/src" $OBJS -o "$DK/rate_update_harness" -lm -pthread
cd "$HERE/../../tests/data/lr_policy"
"$DK/rate_update_harness" darknet.json *.cfg > /dev/null 2>&1
