#!/usr/bin/env bash
# One-off run behind the size columns of docs/cfg-support.md: `candle-darknet info` on every detector cfg of
# <darknet cfg dir> at its own size and at 256x256, each with --forward unless MODES says otherwise; prints
# "<cfg> <mode>:ok|refused[<file:line: reason>]". Run from the repository root after `cargo build --release`.
#   tools/cfg_support_sizes.sh ../shared/darknet/cfg                          # own size and 256x256, forward
#   MODES="own-table 256x256" tools/cfg_support_sizes.sh ../shared/darknet/cfg   # own size: layer table only
set -uo pipefail
dir=$(cd "${1:?darknet cfg directory}" && pwd)
bin=$(pwd)/target/release/candle-darknet
# yolo9000's tree= is relative to Darknet's working directory: run from a folder with data/9k.tree.
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/data" && cp tests/data/yolo9000/9k.tree "$work/data/"
for f in "$dir"/*.cfg; do
  grep -qE '^\[(yolo|region|Gaussian_yolo)\]' "$f" || continue
  line="$(basename "$f")"
  for size in ${MODES:-own 256x256}; do
    case $size in
      own) args=(info --forward "$f") ;;
      own-table) args=(info "$f") ;;
      *) args=(info --forward "$f" --size "$size") ;;
    esac
    if out=$(cd "$work" && "$bin" "${args[@]}" 2>&1); then line+=" $size:ok"
    else line+=" $size:refused[$(echo "$out" | grep -m1 -E 'cfg:[0-9]+' | sed 's/.*\/cfg\///')]"; fi
  done
  echo "$line"
done
