# Thin wrapper over CMake. `make test` and `make bench` set up everything they
# need on a fresh Debian machine (installing packages when run as root).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
BENCH_ARGS ?=

.PHONY: all deps build test test-sanitize bench clean

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

# The main job: the benchmark (see `build/ragged bench --help`), on the shared
# reference batches when they are there.
BENCH_LENGTHS ?= $(wildcard ../shared/bench/lengths.txt)
bench: build
	@./$(BUILD)/ragged bench $(if $(BENCH_LENGTHS),--lengths $(BENCH_LENGTHS)) $(BENCH_ARGS)

clean:
	rm -rf $(BUILD) build-sanitize
