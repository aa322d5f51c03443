#!/usr/bin/env bash
# `meshsample demo`: the toy-model decode loop runs without input files, quickly for 5 steps,
# prints valid token ids, lets requests finish and new ones enter, keeps the traced twin equal to
# the eager generator, and is deterministic (across runs and thread counts) except its timing
# lines, which are exactly the lines with the word "ms".
. "$(dirname "$0")/cli_lib.sh"

V=128256
untimed() { grep -vw ms "$1"; }

start=$(date +%s%N)
ok "demo --steps 5" "$MS" demo --steps 5 || finish
end=$(date +%s%N)
ms=$(((end - start) / 1000000))
[ "$ms" -lt 15000 ] || fail "demo --steps 5 took $ms ms"
cp "$W/out" "$W/first"

grep -q '^meshsample demo [0-9.]*: a toy language model decodes 128 users for 5 steps$' "$W/first" ||
  fail "bad header: $(head -1 "$W/first")"
grep -q 'mesh 4x8 (32 devices), host backend' "$W/first" || fail "no mesh line"
grep -q 'all_gather_axis 1): 16032 ids each' "$W/first" || fail "no shard line"
grep -q '^  sampling_dp 4: ' "$W/first" || fail "no sampling_dp line"

# Lifecycle: 640 tokens, some requests finished and new ones entered before the last step.
grep -q '^lifecycle: 640 tokens sampled, 0 bad rows$' "$W/first" ||
  fail "bad lifecycle line: $(grep '^lifecycle' "$W/first")"
grep -qE '^  [1-9][0-9]* requests finished, [1-9][0-9]* entered mid-run \(first at step [1-4]\)$' \
  "$W/first" || fail "no request entered mid-run: $(grep -A1 '^lifecycle' "$W/first" | tail -1)"

# Streams: 4 users, 5 tokens per slot in all (whatever requests held it), every id valid.
[ "$(grep -c '^  slot [0-9]* (DP group [0-3])$' "$W/first")" -eq 4 ] || fail "expected 4 stream slots"
[ "$(grep -c '^    req [0-9]*, class [0-7]: ' "$W/first")" -ge 4 ] || fail "expected request lines"
grep -E '^      [0-9]' "$W/first" | sed -e 's/(finished)//' >"$W/streams"
[ "$(wc -w <"$W/streams")" -eq 20 ] || fail "expected 20 streamed tokens, got $(wc -w <"$W/streams")"
bad=$(tr -s ' ' '\n' <"$W/streams" | awk -v v=$V 'NF && !($1 ~ /^[0-9]+$/ && $1 + 0 < v)' | head -3)
[ -z "$bad" ] || fail "invalid token ids in the streams: $bad"

# Log-probs user: 5 lines, sampled token valid, log-probs <= 0, rank >= 1, 3 top entries.
grep '^  step ' "$W/first" >"$W/lp"
[ "$(wc -l <"$W/lp")" -eq 5 ] || fail "expected 5 log-prob lines, got $(wc -l <"$W/lp")"
bad=$(awk -v v=$V '{
  gsub(/,/, "")
  ok = NF == 15 && $3 == "token" && $4 ~ /^[0-9]+$/ && $4 < v && $6 <= 0 && $8 >= 1
  for (i = 10; i <= 14; i += 2) if ($i !~ /^[0-9]+$/ || $i >= v || $(i + 1) > 0) ok = 0
  if (!ok) print
}' "$W/lp" | head -2)
[ -z "$bad" ] || fail "bad log-prob lines: $bad"

# Timing: both rows present; the traced twin agrees with the eager generator.
grep -qE '^  eager \(ms\) +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$W/first" || fail "no eager timing row"
grep -qE '^  traced \(ms\) +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+$' "$W/first" || fail "no traced timing row"
grep -q '^  what tracing saves: -\?[0-9.]* ms per step (eager - traced median' "$W/first" ||
  fail "no trace saving line"
grep -q '^  traced twin: tokens, log-probs and ranks identical to eager at every step$' "$W/first" ||
  fail "traced twin differs: $(grep 'traced twin' "$W/first")"

# Deterministic except the timing lines: again, then with 1 and 3 threads (the header names
# the thread count, so it is left out of that comparison).
untimed "$W/first" >"$W/first.untimed"
ok "demo again" "$MS" demo --steps 5 && untimed "$W/out" >"$W/again.untimed"
same "demo is deterministic" "$W/first.untimed" "$W/again.untimed"
grep -v 'host backend' "$W/first.untimed" >"$W/first.nothreads"
for t in 1 3; do
  ok "demo --threads $t" "$MS" demo --steps 5 --threads $t &&
    untimed "$W/out" | grep -v 'host backend' >"$W/threads.untimed"
  same "demo --threads $t gives the same output" "$W/first.nothreads" "$W/threads.untimed"
done

# --json: one object on one line with the same digest as the text.
digest=$(sed -n 's/^  digest of every sampled token (FNV-1a): \([0-9a-f]*\)$/\1/p' "$W/first")
ok "demo --json" "$MS" demo --steps 5 --json
[ "$(wc -l <"$W/out")" -eq 1 ] || fail "--json printed $(wc -l <"$W/out") lines"
grep -qE '^\{"library":"[0-9.]+","mesh":"4x8","all_gather_axis":1,"sampling_dp":4,.*"users":128,"vocab":128256,' "$W/out" ||
  fail "bad --json object: $(head -c 200 "$W/out")"
grep -q "\"digest\":\"$digest\"" "$W/out" || fail "--json digest differs from the text's ($digest)"
grep -q '"traced_identical":true' "$W/out" || fail "--json: traced twin differs"

# --help and errors naming the argument.
ok "demo --help" "$MS" demo --help && grep -q '^usage: meshsample demo' "$W/out" || fail "no usage"
usage_error "steps 0" "--steps.*'0'" "$MS" demo --steps 0
usage_error "steps x" "--steps.*'x'" "$MS" demo --steps x
usage_error "threads missing" "--threads" "$MS" demo --threads
usage_error "unknown option" "--frobnicate" "$MS" demo --frobnicate
usage_error "json with a value" "--json" "$MS" demo --json=yes

finish
