#!/usr/bin/env bash
# `meshsample demo`: runs without input files in well under 5 s, prints 8 well-formed JSON
# lines (with 3 top log-probs each) and a summary, and is deterministic.
. "$(dirname "$0")/cli_lib.sh"

start=$(date +%s%N)
ok "demo" "$MS" demo || finish
end=$(date +%s%N)
ms=$(((end - start) / 1000000))
[ "$ms" -lt 5000 ] || fail "demo took $ms ms"
[ "$(wc -l <"$W/out")" -eq 9 ] || fail "demo printed $(wc -l <"$W/out") lines, expected 9"
head -8 "$W/out" >"$W/lines"
check "$W/lines" 8 1 3 1000 "$W/t"
tail -1 "$W/out" | grep -qE '^\{"summary":\{"library":"[0-9.]+","users":8,"vocab":1000,"step_ms":[0-9.]+,"argmax_picks":[0-8],' ||
  fail "bad summary: $(tail -1 "$W/out")"
# Greedy user 0 takes the argmax: rank 1 and the top entry.
head -1 "$W/out" | grep -qE '^\{"draw":0,"user":0,"token":([0-9]+),"logprob":[^,]+,"rank":1,"top_logprobs":\[\[\1,' ||
  fail "greedy user 0 is not rank 1: $(head -1 "$W/out")"
cp "$W/lines" "$W/first"
ok "demo again" "$MS" demo && head -8 "$W/out" >"$W/lines"
same "demo is deterministic" "$W/first" "$W/lines"

finish
