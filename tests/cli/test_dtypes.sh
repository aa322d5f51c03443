#!/usr/bin/env bash
# f16 and bf16 files holding the same values as an f32 file give the same tokens.
. "$(dirname "$0")/cli_lib.sh"

B=8
V=1000
for d in f32 f16 bf16; do
  "$H" gen-logits "$W/x_$d.npy" $B $V $d 21 || exit 1
done

for args in "--temperature 0" \
  "--temperature 0.8 --top-k 20 --top-p 0.9 --seed 11 --draws 4" \
  "--temperature 1.2 --top-k 0 --min-p 0.05 --seed 12 --draws 4" \
  "--temperature 0.7 --top-k 0 --top-p 0.8 --seed 13 --draws 4 --mesh 1x4"; do
  draws=$(echo "$args" | sed -n 's/.*--draws \([0-9]*\).*/\1/p')
  draws=${draws:-1}
  # shellcheck disable=SC2086
  ok "f32: $args" "$MS" sample --logits "$W/x_f32.npy" $args --logprobs 3 &&
    check "$W/out" $B "$draws" 3 $V "$W/t_f32"
  # shellcheck disable=SC2086
  ok "f16: $args" "$MS" sample --logits "$W/x_f16.npy" $args --logprobs 3 &&
    check "$W/out" $B "$draws" 3 $V "$W/t_f16"
  # shellcheck disable=SC2086
  ok "bf16: $args" "$MS" sample --logits "$W/x_bf16.npy" --dtype bf16 $args --logprobs 3 &&
    check "$W/out" $B "$draws" 3 $V "$W/t_bf16"
  same "f16 vs f32 ($args)" "$W/t_f32" "$W/t_f16"
  same "bf16 vs f32 ($args)" "$W/t_f32" "$W/t_bf16"
done

# --dtype matching the file is accepted.
ok "explicit --dtype f32" "$MS" sample --logits "$W/x_f32.npy" --dtype f32
ok "explicit --dtype f16" "$MS" sample --logits "$W/x_f16.npy" --dtype f16

finish
