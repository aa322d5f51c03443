#!/usr/bin/env bash
# Penalty state from --prompt and --output-tokens reaches the library: a huge penalty on each
# row's argmax moves greedy decoding off it; int32 and int64 token files agree.
. "$(dirname "$0")/cli_lib.sh"

B=6
V=500
"$H" gen-logits "$W/x.npy" $B $V f32 17 || exit 1
"$H" argmax "$W/x.npy" >"$W/am" || exit 1
mapfile -t AM <"$W/am"
# [B, 3] histories: the row's argmax, then padding (-1) and one unrelated id.
args=()
for u in $(seq 0 $((B - 1))); do args+=("${AM[$u]}" -1 $(((AM[u] + 7) % V))); done
"$H" tokens "$W/h4.npy" i4 $B 3 "${args[@]}" || exit 1
"$H" tokens "$W/h8.npy" i8 $B 3 "${args[@]}" || exit 1

moved() { # desc, then options: every user's greedy token must differ from its argmax
  local desc=$1
  shift
  ok "$desc" "$MS" sample --logits "$W/x.npy" --temperature 0 "$@" || return
  check "$W/out" $B 1 -1 $V "$W/t" || return
  tokens "$W/t" >"$W/got"
  local same_count
  same_count=$(paste "$W/am" "$W/got" | awk '$1==$2' | wc -l)
  [ "$same_count" -eq 0 ] || fail "$desc: $same_count users still took their argmax"
}
moved "repetition on the prompt" --prompt "$W/h4.npy" --repetition 100
moved "repetition on the prompt (int64)" --prompt "$W/h8.npy" --repetition 100
moved "repetition on outputs" --output-tokens "$W/h4.npy" --repetition 100
moved "presence on outputs" --output-tokens "$W/h8.npy" --presence 100
moved "frequency on outputs" --output-tokens "$W/h4.npy" --frequency 100
moved "tt order" --output-tokens "$W/h4.npy" --presence 100 --penalty-order tt
moved "per-user lists" --output-tokens "$W/h4.npy" --presence 100,100,100,100,100,100 --frequency 0,1,2,3,4,5

# Presence on the *prompt* does nothing (OpenAI accounting: outputs only).
ok "presence ignores the prompt" "$MS" sample --logits "$W/x.npy" --temperature 0 --prompt "$W/h4.npy" --presence 100 &&
  check "$W/out" $B 1 -1 $V "$W/t" && tokens "$W/t" >"$W/got" && same "presence on prompt only" "$W/am" "$W/got"

# int32 and int64 histories give identical sampled output.
S=(sample --logits "$W/x.npy" --temperature 0.9 --top-k 30 --seed 4 --draws 4 --repetition 1.3 --frequency 0.4 --presence 0.2)
ok "int32 history" "$MS" "${S[@]}" --prompt "$W/h4.npy" --output-tokens "$W/h4.npy" --logprobs 3 && cp "$W/out" "$W/o4"
ok "int64 history" "$MS" "${S[@]}" --prompt "$W/h8.npy" --output-tokens "$W/h8.npy" --logprobs 3 && cp "$W/out" "$W/o8"
same "int32 vs int64 histories" "$W/o4" "$W/o8"
for mode in raw penalized processed; do
  ok "logprobs-mode $mode" "$MS" "${S[@]}" --prompt "$W/h4.npy" --logprobs 4 --logprobs-mode $mode &&
    check "$W/out" $B 4 4 $V "$W/t"
done
# An empty history ([B, 0]) is fine.
"$H" tokens "$W/h0.npy" i4 $B 0 || exit 1
ok "empty history" "$MS" sample --logits "$W/x.npy" --temperature 0 --prompt "$W/h0.npy" --output-tokens "$W/h0.npy" --repetition 100 &&
  check "$W/out" $B 1 -1 $V "$W/t" && tokens "$W/t" >"$W/got" && same "empty history changes nothing" "$W/am" "$W/got"
# Random histories over the vocabulary, all users, penalties on.
"$H" gen-tokens "$W/r.npy" $B 40 i8 3 $V || exit 1
ok "random histories" "$MS" "${S[@]}" --prompt "$W/r.npy" --output-tokens "$W/r.npy" && check "$W/out" $B 4 -1 $V "$W/t"

finish
