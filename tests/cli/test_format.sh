#!/usr/bin/env bash
# Output format and determinism of `meshsample sample` with --seed.
. "$(dirname "$0")/cli_lib.sh"

"$H" gen-logits "$W/x.npy" 6 1000 f32 1 || exit 1
S=(sample --logits "$W/x.npy" --temperature 0.9 --top-k 50 --top-p 0.95)

# Full format with log-probs, strictly checked (order, fields, sorted top lists).
ok "logprobs run" "$MS" "${S[@]}" --seed 7 --logprobs 5 --draws 3 && cp "$W/out" "$W/a1"
check "$W/a1" 6 3 5 1000 "$W/t1"
ok "same command again" "$MS" "${S[@]}" --seed 7 --logprobs 5 --draws 3 && cp "$W/out" "$W/a2"
same "same seed, same output" "$W/a1" "$W/a2"
# Every top list is full (1000 candidates >= 5) and the sampled token's fields are there.
n5=$(grep -c '"top_logprobs":\[\[[0-9]*,[-0-9.e]*\],\[[0-9]*,[-0-9.e]*\],\[[0-9]*,[-0-9.e]*\],\[[0-9]*,[-0-9.e]*\],\[[0-9]*,[-0-9.e]*\]\]}$' "$W/a1")
[ "$n5" -eq 18 ] || fail "expected 18 lines with 5 top entries, got $n5"

# A different seed changes some token over 6 users x 3 draws.
ok "other seed" "$MS" "${S[@]}" --seed 8 --logprobs 5 --draws 3 && check "$W/out" 6 3 5 1000 "$W/t3"
cmp -s "$W/t1" "$W/t3" && fail "seeds 7 and 8 gave identical tokens for 18 draws"

# Draws are independent: the three draws do not all agree.
d0=$(awk '$1==0{print $3}' "$W/t1" | tr '\n' ,)
d1=$(awk '$1==1{print $3}' "$W/t1" | tr '\n' ,)
d2=$(awk '$1==2{print $3}' "$W/t1" | tr '\n' ,)
[ "$d0" = "$d1" ] && [ "$d1" = "$d2" ] && fail "draws 0,1,2 identical: $d0"

# Without --logprobs: no log-prob fields at all, exact layout.
ok "plain run" "$MS" "${S[@]}" --seed 7 && cp "$W/out" "$W/p1" && check "$W/p1" 6 1 -1 1000 "$W/t4"
grep -q logprob "$W/out" && fail "log-prob fields without --logprobs"
grep -vqE '^\{"draw":0,"user":[0-5],"token":[0-9]+\}$' "$W/out" && fail "unexpected line: $(grep -vE '^\{"draw":0,"user":[0-5],"token":[0-9]+\}$' "$W/out" | head -1)"
# Log-probs do not change the draw.
awk '$1==0' "$W/t1" >"$W/t1d0"
same "tokens with and without --logprobs" "$W/t1d0" "$W/t4"

# --logprobs 0: fields present, empty top list.
ok "logprobs 0" "$MS" "${S[@]}" --seed 7 --logprobs 0 && check "$W/out" 6 1 0 1000 "$W/t5"
n0=$(grep -c '"rank":[0-9]*,"top_logprobs":\[\]}$' "$W/out")
[ "$n0" -eq 6 ] || fail "--logprobs 0: expected 6 empty top lists, got $n0"

# Per-user seed lists: user u with seed list value s draws what it draws with --seed s
# (the noise depends on seed, counter and token id only, never on batch mates).
ok "seed list" "$MS" "${S[@]}" --seed 11,12,13,14,15,16 && check "$W/out" 6 1 -1 1000 "$W/tl"
for u in 0 3 5; do
  ok "scalar seed $((11 + u))" "$MS" "${S[@]}" --seed $((11 + u)) && check "$W/out" 6 1 -1 1000 "$W/ts"
  a=$(awk -v u=$u '$2==u{print $3}' "$W/tl")
  b=$(awk -v u=$u '$2==u{print $3}' "$W/ts")
  [ "$a" = "$b" ] || fail "user $u: token $a with the seed list, $b with --seed $((11 + u))"
done

# Options also work as --name=value.
ok "name=value" "$MS" sample --logits="$W/x.npy" --temperature=0.9 --top-k=50 --top-p=0.95 --seed=7
same "--name=value form" "$W/out" "$W/p1"

# Unseeded runs work (entropy seeds) and are well-formed.
ok "unseeded" "$MS" "${S[@]}" --draws 2 && check "$W/out" 6 2 -1 1000 "$W/tu"

finish
