#!/usr/bin/env bash
# Greedy decoding picks the argmax with ties to the lowest id, whatever asks for it; bad rows
# give token -1 with the error field and leave the other users alone.
. "$(dirname "$0")/cli_lib.sh"

B=16
V=777
"$H" gen-logits "$W/x.npy" $B $V f32 3 ties || exit 1
"$H" argmax "$W/x.npy" >"$W/expect" || exit 1

greedy_case() { # N (top log-probs, -1 = none), description, options
  local n=$1 desc=$2
  shift 2
  ok "$desc" "$MS" sample --logits "$W/x.npy" "$@" || return
  check "$W/out" $B 1 "$n" $V "$W/t" || return
  tokens "$W/t" >"$W/got"
  same "$desc: argmax with ties to the lowest id" "$W/expect" "$W/got"
}
greedy_case -1 "default parameters (greedy)"
greedy_case -1 "temperature 0" --temperature 0 --seed 5
greedy_case -1 "temperature 0, other seed" --temperature 0 --seed 6 --top-k 40 --top-p 0.5
greedy_case -1 "top-k 1" --temperature 1.0 --top-k 1 --seed 5
greedy_case -1 "top-p 0" --temperature 1.0 --top-k 0 --top-p 0 --seed 5
greedy_case -1 "truncated mode" --temperature 0 --max-top-k 32
greedy_case -1 "two threads" --temperature 0 --threads 2
greedy_case -1 "mesh 1x7" --temperature 0 --mesh 1x7
greedy_case 3 "with log-probs" --temperature 0 --logprobs 3

# Bad rows: all -inf (row 2), all NaN (row 9), two +inf values (lowest wins, row 4).
"$H" gen-logits "$W/bad.npy" 12 500 f32 4 badrow:2 nanrow:9 infrow:4 || exit 1
"$H" argmax "$W/bad.npy" >"$W/expect_bad" || exit 1
ok "bad rows" "$MS" sample --logits "$W/bad.npy" --temperature 0 --logprobs 2 && check "$W/out" 12 1 2 500 "$W/t"
tokens "$W/t" >"$W/got"
same "bad rows: -1 there, argmax elsewhere" "$W/expect_bad" "$W/got"
grep -q '^{"draw":0,"user":2,"token":-1,"error":"no finite logit"}$' "$W/out" || fail "row 2 error line missing"
grep -q '^{"draw":0,"user":9,"token":-1,"error":"no finite logit"}$' "$W/out" || fail "row 9 error line missing"
# Sampling users with bad rows too.
ok "bad rows, sampling" "$MS" sample --logits "$W/bad.npy" --temperature 1 --top-k 0 --seed 3 --draws 3 &&
  check "$W/out" 12 3 -1 500 "$W/t"
n=$(awk '$3==-1' "$W/t" | wc -l)
[ "$n" -eq 6 ] || fail "expected 6 bad-row lines over 3 draws, got $n"

finish
