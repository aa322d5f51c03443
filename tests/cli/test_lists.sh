#!/usr/bin/env bash
# Comma-separated per-user values: value u goes to user u, and each user draws exactly what it
# draws when its values are given as scalars (batch mates never matter).
. "$(dirname "$0")/cli_lib.sh"

B=4
V=800
"$H" gen-logits "$W/x.npy" $B $V f32 13 || exit 1
T=(0 0.7 1.0 1.3)
K=(1 10 0 50)
P=(1 0.9 0.8 1)
M=(0 0 0.05 0)
SEED=(5 6 7 8)
join() { local IFS=,; echo "$*"; }

ok "lists" "$MS" sample --logits "$W/x.npy" --temperature "$(join "${T[@]}")" --top-k "$(join "${K[@]}")" \
  --top-p "$(join "${P[@]}")" --min-p "$(join "${M[@]}")" --seed "$(join "${SEED[@]}")" --draws 3 --logprobs 2 &&
  check "$W/out" $B 3 2 $V "$W/tl"
for u in 0 1 2 3; do
  ok "scalars of user $u" "$MS" sample --logits "$W/x.npy" --temperature "${T[$u]}" --top-k "${K[$u]}" \
    --top-p "${P[$u]}" --min-p "${M[$u]}" --seed "${SEED[$u]}" --draws 3 --logprobs 2 &&
    check "$W/out" $B 3 2 $V "$W/ts"
  a=$(awk -v u=$u '$2==u{print $3}' "$W/tl" | tr '\n' ' ')
  b=$(awk -v u=$u '$2==u{print $3}' "$W/ts" | tr '\n' ' ')
  [ "$a" = "$b" ] || fail "user $u: tokens '$a' from the lists, '$b' from scalars"
done
# User 0 is greedy through the list: its three draws are the argmax.
"$H" argmax "$W/x.npy" >"$W/am"
am0=$(head -1 "$W/am")
g=$(awk '$2==0{print $3}' "$W/tl" | sort -u)
[ "$g" = "$am0" ] || fail "greedy user 0 drew '$g', argmax is $am0"

# A one-element list is a scalar.
ok "one-element list" "$MS" sample --logits "$W/x.npy" --temperature 0.7 --top-k 10 --seed 6 && cp "$W/out" "$W/s1"
ok "lists of B equal values" "$MS" sample --logits "$W/x.npy" --temperature 0.7,0.7,0.7,0.7 --top-k 10,10,10,10 \
  --seed 6,6,6,6 && same "B equal values = scalar" "$W/s1" "$W/out"

finish
