#!/usr/bin/env bash
# --vocab-size N: columns N.. are padding and never sampled, even when they hold the largest
# values of the row, in any mode, on any mesh; they never appear in top log-prob lists.
. "$(dirname "$0")/cli_lib.sh"

B=8
V=1024
N=900
"$H" gen-logits "$W/x.npy" $B $V f32 5 padhot:$N || exit 1
"$H" argmax "$W/x.npy" $N >"$W/expect" || exit 1

# Greedy: the argmax over the real vocabulary.
for mesh in 1x1 1x4 2x2; do
  ok "greedy, mesh $mesh" "$MS" sample --logits "$W/x.npy" --vocab-size $N --mesh $mesh --temperature 0 &&
    check "$W/out" $B 1 -1 $N "$W/t" && tokens "$W/t" >"$W/got" &&
    same "greedy argmax below the padding, mesh $mesh" "$W/expect" "$W/got"
done

# Hot sampling over everything: tokens and top ids must stay below N (check's V is N).
ok "hot sampling" "$MS" sample --logits "$W/x.npy" --vocab-size $N --temperature 5 --top-k 0 --top-p 1 \
  --seed 1 --draws 20 --logprobs 20 && check "$W/out" $B 20 20 $N "$W/t"
ok "hot sampling, mesh 1x4" "$MS" sample --logits "$W/x.npy" --vocab-size $N --mesh 1x4 --temperature 5 \
  --top-k 0 --seed 1 --draws 20 --logprobs 20 && check "$W/out" $B 20 20 $N "$W/t4"
ok "truncated mode" "$MS" sample --logits "$W/x.npy" --vocab-size $N --max-top-k 32 --temperature 5 \
  --top-k 0 --seed 2 --draws 10 --logprobs 5 && check "$W/out" $B 10 5 $N "$W/t"
ok "min-p" "$MS" sample --logits "$W/x.npy" --vocab-size $N --temperature 3 --top-k 0 --min-p 0.01 \
  --seed 3 --draws 10 --logprobs 5 --logprobs-mode processed && check "$W/out" $B 10 5 $N "$W/t"

# Raw log-probs are log_softmax over the real vocabulary only (the padding never enters the
# normaliser): compare with float64, on one device and sharded.
for mesh in 1x1 1x4; do
  ok "raw log-probs, mesh $mesh" "$MS" sample --logits "$W/x.npy" --vocab-size $N --mesh $mesh --temperature 1 \
    --top-k 0 --seed 4 --draws 3 --logprobs 8 && check "$W/out" $B 3 8 $N "$W/t" &&
    { "$H" raw-logprobs "$W/out" "$W/x.npy" $N 2>"$W/lp.err" || fail "raw log-probs, mesh $mesh: $(cat "$W/lp.err")"; }
done

# Control: without --vocab-size the hot columns win, so the checks above can fail.
ok "control" "$MS" sample --logits "$W/x.npy" --temperature 0 && check "$W/out" $B 1 -1 $V "$W/t"
hot=$(awk -v n=$N '$3 >= n' "$W/t" | wc -l)
[ "$hot" -eq $B ] || fail "control: expected all $B greedy tokens in the hot padding, got $hot"

finish
