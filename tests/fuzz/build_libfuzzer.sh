#!/usr/bin/env bash
# Optional: build the fuzz targets as libFuzzer binaries with clang (ASan + UBSan) and run each
# for a while. Not part of the build or of ctest; needs clang with libFuzzer.
#   tests/fuzz/build_libfuzzer.sh [OUTDIR] [SECONDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${1:-$root/build-fuzz}
secs=${2:-60}
command -v clang >/dev/null || { echo "clang not found: libFuzzer build skipped" >&2; exit 0; }
mkdir -p "$out"
flags=(-g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -I"$root/tools" -I"$root/include")
clang "${flags[@]}" "$here/fuzz_npy.c" "$root/tools/npy.c" -o "$out/fuzz_npy_libfuzzer"
mkdir -p "$out/corpus_npy"
"$out/fuzz_npy_libfuzzer" -max_total_time="$secs" "$out/corpus_npy"
clang "${flags[@]}" "$here/fuzz_cli_args.c" "$root/tools/cli_util.c" -lm -o "$out/fuzz_cli_args_libfuzzer"
mkdir -p "$out/corpus_cli_args"
"$out/fuzz_cli_args_libfuzzer" -max_total_time="$secs" "$out/corpus_cli_args"
