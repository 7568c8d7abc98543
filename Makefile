# Thin wrapper over CMake. `make test` and `make bench` set up everything they
# need on a fresh Debian machine (installing packages when run as root).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
BENCH_ARGS ?=

.PHONY: all deps build test test-sanitize bench bench-attn clean

all: build

deps:
	@sh scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Every test once more under AddressSanitizer + UndefinedBehaviorSanitizer
# (CPU only, smaller problem sizes through RG_TEST_QUICK).
test-sanitize: deps
	@cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAGGED_SANITIZE=ON -DRAGGED_CUDA=OFF -DRAGGED_NATIVE=OFF
	@cmake --build build-sanitize -j $(JOBS)
	@cd build-sanitize && RG_TEST_QUICK=1 ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS)

# The main job: the model benchmark (see `build/ragged bench --help`): every
# batching strategy, eval and train. On a CPU: the "cpu" preset (about a minute
# on 2 cores). With an NVIDIA GPU and nvcc: the article's setup on the GPU
# (preset seed, batch 32, the shared lengths when present, 30 timed steps).
# BENCH_ARGS adds or overrides flags, e.g. BENCH_ARGS="--backend cpu --preset cpu".
GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && command -v nvcc >/dev/null 2>&1 && echo 1)
BENCH_LENGTHS ?= $(wildcard ../shared/bench/lengths.txt)
BENCH_GPU_ARGS = --backend cuda --preset seed -n 30 -w 10 $(if $(BENCH_LENGTHS),--lengths $(BENCH_LENGTHS))
bench: build
	@./$(BUILD)/ragged bench $(if $(GPU),$(BENCH_GPU_ARGS)) $(BENCH_ARGS)

# Attention alone, on the shared reference batches when they are there.
bench-attn: build
	@./$(BUILD)/ragged bench attn $(if $(BENCH_LENGTHS),--lengths $(BENCH_LENGTHS)) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) build-sanitize
