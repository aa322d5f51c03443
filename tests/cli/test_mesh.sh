#!/usr/bin/env bash
# The same tokens for every mesh shape, gather axis, DP split and thread count (DESIGN 2.4), and
# truncated mode equals exact mode when top-k fits under the cap.
. "$(dirname "$0")/cli_lib.sh"

B=8
V=1024
"$H" gen-logits "$W/x.npy" $B $V f32 31 || exit 1
S=(sample --logits "$W/x.npy" --temperature 0.8 --top-k 0 --top-p 0.9 --seed 3 --draws 4 --logprobs 3)
ok "reference 1x1" "$MS" "${S[@]}" && check "$W/out" $B 4 3 $V "$W/ref"

for m in "--mesh 1x2" "--mesh 1x8" "--mesh 8x1" "--mesh 2x4 --axis 1" "--mesh 2x4 --axis 0" \
  "--mesh 2x4 --axis 1 --dp 2" "--mesh 4x2 --axis 0 --dp 2" "--mesh 2x4 --axis 0 --dp 4" "--threads 2" \
  "--mesh 1x4 --threads 2"; do
  # shellcheck disable=SC2086
  ok "$m" "$MS" "${S[@]}" $m && check "$W/out" $B 4 3 $V "$W/t" && same "tokens with $m" "$W/ref" "$W/t"
done

# Truncated mode (TT): with k <= max_top_k the candidates are the same as in exact mode.
S2=(sample --logits "$W/x.npy" --temperature 0.8 --top-k 10 --top-p 0.9 --seed 3 --draws 4)
ok "exact, k=10" "$MS" "${S2[@]}" && check "$W/out" $B 4 -1 $V "$W/e"
ok "truncated, k=10" "$MS" "${S2[@]}" --max-top-k 32 && check "$W/out" $B 4 -1 $V "$W/t"
same "truncated vs exact at k=10" "$W/e" "$W/t"
ok "truncated, k=10, 1x4" "$MS" "${S2[@]}" --max-top-k 32 --mesh 1x4 && check "$W/out" $B 4 -1 $V "$W/t"
same "truncated 1x4 vs exact" "$W/e" "$W/t"

finish
