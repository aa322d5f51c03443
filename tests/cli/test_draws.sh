#!/usr/bin/env bash
# --draws N: N*B lines, draw-major; draw d is the draw at counter d (draw 0 = a single draw).
. "$(dirname "$0")/cli_lib.sh"

B=4
V=600
"$H" gen-logits "$W/x.npy" $B $V f32 8 || exit 1
S=(sample --logits "$W/x.npy" --temperature 1 --top-k 0 --seed 99)

ok "5 draws" "$MS" "${S[@]}" --draws 5 && check "$W/out" $B 5 -1 $V "$W/t5"
[ "$(wc -l <"$W/out")" -eq 20 ] || fail "5 draws x 4 users: $(wc -l <"$W/out") lines"
ok "1 draw" "$MS" "${S[@]}" && check "$W/out" $B 1 -1 $V "$W/t1"
awk '$1==0' "$W/t5" >"$W/t5d0"
same "draw 0 of 5 equals the single draw" "$W/t1" "$W/t5d0"
ok "3 draws" "$MS" "${S[@]}" --draws 3 && check "$W/out" $B 3 -1 $V "$W/t3"
awk '$1<3' "$W/t5" >"$W/t5d3"
same "first 3 draws of 5 equal 3 draws" "$W/t3" "$W/t5d3"
# 20 draws at T=1 over 600 near-flat tokens cannot all be the same token.
distinct=$(awk '{print $3}' "$W/t5" | sort -u | wc -l)
[ "$distinct" -gt 2 ] || fail "only $distinct distinct tokens in 20 draws"
ok "100 draws" "$MS" "${S[@]}" --draws 100 --logprobs 1 && check "$W/out" $B 100 1 $V "$W/t100"

finish
