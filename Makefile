# Thin wrapper over CMake. `make demo` and `make test` are the README's two commands.
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
PROF_BUILD ?= build-prof
JOBS ?= $(shell nproc)
CTEST_ARGS ?=

.PHONY: all deps configure build demo test test-asan test-tsan profile-check clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

configure: $(BUILD)/CMakeCache.txt

build: deps configure
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/meshsample demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The whole suite under ASan + UBSan (CI runs it after `make test`).
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DMESHSAMPLE_SANITIZE_ADDRESS=ON -DMESHSAMPLE_SANITIZE_UNDEFINED=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && MS_TEST_SCALE=sanitizer ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

# The threaded paths under TSan: clang with LLVM's OpenMP runtime, whose archer tool tells TSan
# about OpenMP's synchronisation (libgomp is not instrumented and would report false races).
# MPI tests are left out: MPICH is not instrumented either.
test-tsan: deps
	CC=clang-14 cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DMESHSAMPLE_SANITIZE_THREAD=ON
	cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && OMP_TOOL_LIBRARIES=/usr/lib/llvm-14/lib/libarcher.so \
	  TSAN_OPTIONS="ignore_noninstrumented_modules=1 halt_on_error=1" MS_TEST_SCALE=sanitizer \
	  ctest --output-on-failure -j $(JOBS) -L "unit|trace|invariance|cli" -LE mpi $(CTEST_ARGS)

# The phase-profile tuning build (bench/README.md) still builds and still reports its phases.
profile-check: deps
	cmake -S . -B $(PROF_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMESHSAMPLE_PROFILE_SCAN=ON
	cmake --build $(PROF_BUILD) -j $(JOBS) --target meshsample_cli
	./$(PROF_BUILD)/meshsample bench --batch 4 --vocab 8192 --mesh 1x2 --threads 2 --penalties \
	  --logprobs 2 --steps 5 2>&1 | grep "scan phases, ns a row"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(PROF_BUILD)
