#!/usr/bin/env bash
# Invalid arguments and files: exit 2, exactly one line on stderr naming the problem, and
# nothing on stdout.
. "$(dirname "$0")/cli_lib.sh"

B=4
V=1000
"$H" gen-logits "$W/x.npy" $B $V f32 1 || exit 1
"$H" gen-logits "$W/b.npy" $B $V bf16 1 || exit 1
"$H" gen-logits "$W/h.npy" $B $V f16 1 || exit 1
X=(sample --logits "$W/x.npy")

# Sanity: the base command works, so the failures below are the options' fault.
ok "base command" "$MS" "${X[@]}" --temperature 0.5 --seed 1

# ---- options ----
usage_error "unknown flag" "bogus" "$MS" "${X[@]}" --bogus 1
usage_error "unknown flag (no value)" "frobnicate" "$MS" "${X[@]}" --frobnicate
usage_error "positional argument" "stray" "$MS" "${X[@]}" stray
usage_error "missing value at the end" "temperature" "$MS" "${X[@]}" --temperature
usage_error "missing --logits" "logits" "$MS" sample --temperature 1
usage_error "bad number" "temperature" "$MS" "${X[@]}" --temperature abc
usage_error "number with junk" "temperature" "$MS" "${X[@]}" --temperature 0.5x
usage_error "empty number" "top-p" "$MS" "${X[@]}" --top-p ""
usage_error "fractional top-k" "top-k" "$MS" "${X[@]}" --top-k 1.5
usage_error "bad seed" "seed" "$MS" "${X[@]}" --seed 12x
usage_error "seed overflow" "seed" "$MS" "${X[@]}" --seed 99999999999999999999999
usage_error "empty list element" "top-k" "$MS" "${X[@]}" --top-k 1,,2,3
usage_error "trailing comma" "temperature" "$MS" "${X[@]}" --temperature 0.7,
usage_error "list of wrong length" "temperature.*2 values" "$MS" "${X[@]}" --temperature 0.5,0.6
usage_error "list longer than B" "seed" "$MS" "${X[@]}" --seed 1,2,3,4,5
usage_error "bad mesh" "mesh" "$MS" "${X[@]}" --mesh 2by2
usage_error "zero mesh" "mesh" "$MS" "${X[@]}" --mesh 0x2
usage_error "bad axis" "axis" "$MS" "${X[@]}" --axis 2
usage_error "bad backend" "backend" "$MS" "${X[@]}" --backend cuda
usage_error "bad penalty order" "penalty-order" "$MS" "${X[@]}" --penalty-order vllm
usage_error "bad logprobs mode" "logprobs-mode" "$MS" "${X[@]}" --logprobs 2 --logprobs-mode cooked
usage_error "negative logprobs" "logprobs" "$MS" "${X[@]}" --logprobs -1
usage_error "zero draws" "draws" "$MS" "${X[@]}" --draws 0
usage_error "bad dtype name" "dtype" "$MS" "${X[@]}" --dtype f64
usage_error "flag value on a value option" "threads" "$MS" "${X[@]}" --threads=two

# ---- values the library must reject ----
usage_error "negative temperature" "temperature" "$MS" "${X[@]}" --temperature -1
usage_error "NaN temperature" "temperature" "$MS" "${X[@]}" --temperature nan
usage_error "infinite temperature" "temperature" "$MS" "${X[@]}" --temperature inf
usage_error "NaN in a list" "temperature" "$MS" "${X[@]}" --temperature 0.5,nan,0.5,0.5
usage_error "NaN top-p" "top" "$MS" "${X[@]}" --temperature 1 --top-p nan
usage_error "NaN min-p" "min" "$MS" "${X[@]}" --temperature 1 --min-p nan
usage_error "NaN presence" "presence" "$MS" "${X[@]}" --presence nan
usage_error "infinite frequency" "frequency" "$MS" "${X[@]}" --frequency inf
usage_error "negative repetition" "repetition" "$MS" "${X[@]}" --repetition -1
usage_error "seed below -1" "seed" "$MS" "${X[@]}" --temperature 1 --seed -2

# ---- mesh / shape configuration ----
usage_error "vocab not divisible by the mesh" "divisible|vocab" "$MS" "${X[@]}" --mesh 1x3
usage_error "dp not dividing the batch" "dp" "$MS" "${X[@]}" --dp 3
usage_error "dp not matching the mesh" "dp|sampling_dp" "$MS" "${X[@]}" --dp 2
usage_error "vocab-size above the columns" "vocab" "$MS" "${X[@]}" --vocab-size 1001
usage_error "vocab-size 0" "vocab-size" "$MS" "${X[@]}" --vocab-size 0
# (--backend mpi initialises MPI, so its failures are tested under mpiexec: test_mpi_errors.sh.)

# ---- files ----
usage_error "missing file" "nope.npy" "$MS" sample --logits "$W/nope.npy"
usage_error "directory" "$W" "$MS" sample --logits "$W"
# Streams are read only as far as the header allows: an endless one must not hang or eat memory.
usage_error "endless stream" "bad magic" timeout 20 "$MS" sample --logits /dev/zero
for k in empty bad-magic bad-version truncated-header truncated-data extra-data big-endian float64 \
  fortran three-d one-d huge-shape missing-key garbage-dict int32-logits empty-shape; do
  "$H" bad-npy $k "$W/$k.npy" || exit 1
  usage_error "malformed npy: $k" "$k.npy" "$MS" sample --logits "$W/$k.npy"
done
usage_error "big-endian is named" "big-endian" "$MS" sample --logits "$W/big-endian.npy"
usage_error "truncated is named" "truncated" "$MS" sample --logits "$W/truncated-data.npy"
# A real file cut short anywhere is rejected, never read past its end.
size=$(stat -c %s "$W/x.npy")
for cut in 5 9 60 127 128 129 $((size / 2)) $((size - 1)); do
  head -c $cut "$W/x.npy" >"$W/cut.npy"
  usage_error "file cut at $cut bytes" "cut.npy" "$MS" sample --logits "$W/cut.npy"
done

# ---- dtypes ----
usage_error "bf16 flag on an f32 file" "dtype" "$MS" sample --logits "$W/x.npy" --dtype bf16
usage_error "f16 flag on an f32 file" "dtype" "$MS" sample --logits "$W/x.npy" --dtype f16
usage_error "f32 flag on an f16 file" "dtype" "$MS" sample --logits "$W/h.npy" --dtype f32
usage_error "uint16 file without --dtype bf16" "bf16" "$MS" sample --logits "$W/b.npy"
usage_error "uint16 file with --dtype f16" "dtype" "$MS" sample --logits "$W/b.npy" --dtype f16

# ---- token histories ----
"$H" tokens "$W/oob.npy" i4 $B 2 1 2 3 4 5 6 7 $V || exit 1
usage_error "prompt id = vocab" "prompt" "$MS" "${X[@]}" --prompt "$W/oob.npy"
usage_error "output id = vocab" "output-tokens" "$MS" "${X[@]}" --output-tokens "$W/oob.npy"
"$H" tokens "$W/neg.npy" i8 $B 2 1 2 3 -2 5 6 7 8 || exit 1
usage_error "prompt id -2" "prompt" "$MS" "${X[@]}" --prompt "$W/neg.npy"
"$H" tokens "$W/big.npy" i8 $B 1 1 2 3 1099511627776 || exit 1
usage_error "int64 id beyond int32" "prompt" "$MS" "${X[@]}" --prompt "$W/big.npy"
"$H" tokens "$W/tokens-999.npy" i4 $B 1 1 2 3 999 || exit 1
usage_error "padded id in the prompt (id >= vocab-size)" "prompt" "$MS" "${X[@]}" --vocab-size 999 \
  --prompt "$W/tokens-999.npy"
"$H" tokens "$W/rows.npy" i4 3 1 1 2 3 || exit 1
usage_error "history with the wrong number of rows" "prompt" "$MS" "${X[@]}" --prompt "$W/rows.npy"
usage_error "float history" "prompt" "$MS" "${X[@]}" --prompt "$W/x.npy"
usage_error "malformed history" "prompt" "$MS" "${X[@]}" --prompt "$W/truncated-data.npy"

# ---- bench and the tool itself ----
usage_error "bench: unknown flag" "bogus" "$MS" bench --bogus
usage_error "bench: bad number" "steps" "$MS" bench --steps many
usage_error "bench: dp not dividing" "dp" "$MS" bench --batch 5 --dp 2
usage_error "demo: unknown flag" "bogus" "$MS" demo --bogus
usage_error "no command" "command" "$MS"
usage_error "unknown command" "frob" "$MS" frob

finish
