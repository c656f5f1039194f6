#!/usr/bin/env bash
# Builds the GPU peer: Darknet (AlexeyAB, commit 59596d7) with GPU=1 CUDNN=1, by the toolkit of
# tools/cuda/install-toolkit.sh (no system CUDA, no GPU needed), plus tools/cuda/darknet_bench.c (our timing
# harness, linked with Darknet's objects). Darknet's code is read from its git repository, never copied here.
#
#   tools/cuda/build-darknet-gpu.sh <AlexeyAB/darknet git dir> [OUT_DIR]      (default OUT_DIR: target/cuda/darknet)
#
# Environment: CUDA_ENV (default target/cuda/env.sh, written by install-toolkit.sh), JOBS (make -j, default 2),
# DARKNET_ARCH (nvcc -gencode list; default sm_90 SASS + compute_90 PTX, the lent H200),
# DARKNET_GPU=0: the same two programs without CUDA (default OUT_DIR target/cuda/darknet-cpu), which
# `device-check.sh --dry-run` runs in place of the GPU ones to test their command lines on a machine without a GPU.
# Writes OUT_DIR/darknet and OUT_DIR/darknet_bench (dynamically linked against libcudart/libcublas/libcurand/
# libcudnn of CUDA 13 and cuDNN 9: the machine that runs them provides those and the driver).
set -euo pipefail
DK=${1:?path to an AlexeyAB/darknet git repository}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
gpu=${DARKNET_GPU:-1}
default_out=$root/target/cuda/darknet
[ "$gpu" = 1 ] || default_out=$root/target/cuda/darknet-cpu
out=$(mkdir -p "${2:-$default_out}" && cd "${2:-$default_out}" && pwd)
commit=59596d7
stamp=$out/.built-$commit
if [ "$gpu" = 1 ]; then
  env_file=${CUDA_ENV:-$root/target/cuda/env.sh}
  [ -f "$env_file" ] || { echo "build-darknet-gpu: $env_file missing: run tools/cuda/install-toolkit.sh first" >&2; exit 1; }
  # shellcheck disable=SC1090
  source "$env_file"
  arch=${DARKNET_ARCH:--gencode arch=compute_90,code=[sm_90,compute_90]}
  # Darknet's Makefile hard-codes /usr/local/cuda: the wheel toolkit's headers and libraries are given through
  # the compilers' own search variables instead (the stub libcuda.so only satisfies the link).
  export CPATH=$CUDA_HOME/include
  export LIBRARY_PATH=$CUDA_HOME/lib:$CUDA_HOME/lib/stubs
  flags=(GPU=1 CUDNN=1 NVCC="$CUDA_HOME/bin/nvcc" ARCH="$arch")
  defs=(-DGPU -DCUDNN -I"$CUDA_HOME/include")
  libs=(-L"$CUDA_HOME/lib" -L"$CUDA_HOME/lib/stubs" -lcuda -lcudart -lcublas -lcurand -lcudnn)
else
  flags=(GPU=0 CUDNN=0)
  defs=()
  libs=()
fi

src=$out/src
if [ ! -f "$stamp" ]; then
  rm -rf "$src"
  mkdir -p "$src/obj"
  git --git-dir="$DK" archive "$commit" | tar -x -C "$src"
  make -C "$src" -j"${JOBS:-2}" "${flags[@]}" CUDNN_HALF=0 OPENCV=0 OPENMP=1 AVX=0 LIBSO=0 darknet
  cp "$src/darknet" "$out/darknet.tmp" && mv "$out/darknet.tmp" "$out/darknet"
  rm -f "$out/darknet_bench"
  touch "$stamp"
fi
# The harness (rebuilt when its source changes): Darknet's objects without darknet.o (its main).
if [ ! -f "$out/darknet_bench" ] || [ "$here/darknet_bench.c" -nt "$out/darknet_bench" ]; then
  objs=$(ls "$src"/obj/*.o | grep -v '/darknet\.o$')
  gcc -O2 -Wall "${defs[@]}" -I"$src/include" -c "$here/darknet_bench.c" -o "$src/darknet_bench.o"
  # shellcheck disable=SC2086
  g++ -o "$out/darknet_bench.tmp" "$src/darknet_bench.o" $objs "${libs[@]}" -lgomp -lm -pthread -lstdc++
  mv "$out/darknet_bench.tmp" "$out/darknet_bench"
fi
ls -l "$out/darknet" "$out/darknet_bench"
