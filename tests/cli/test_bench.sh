#!/usr/bin/env bash
# `meshsample bench` on small shapes: JSON and table outputs, every feature flag.
. "$(dirname "$0")/cli_lib.sh"

num='[0-9]+(\.[0-9]+)?'
ok "bench --json" "$MS" bench --batch 4 --vocab 4096 --steps 5 --json &&
  grep -qE "^\{\"median_ms\":$num,\"p10_ms\":$num,\"p90_ms\":$num,\"floor_ms\":$num,\"ratio\":$num,\"config\":\{\"batch\":4,\"vocab\":4096,\"dtype\":\"f32\",.*\}\}$" "$W/out" ||
  fail "bad bench JSON: $(cat "$W/out")"
[ "$(wc -l <"$W/out")" -eq 1 ] || fail "bench --json printed $(wc -l <"$W/out") lines"
# p10 <= median <= p90
awk -F'[:,]' '{ if (!($4 <= $2 && $2 <= $6)) exit 1 }' "$W/out" || fail "quantiles out of order: $(cat "$W/out")"

ok "bench table" "$MS" bench --batch 4 --vocab 4096 --steps 5 &&
  grep -q 'sample step (ms)' "$W/out" && grep -q 'floor read' "$W/out" && grep -q 'ratio' "$W/out" ||
  fail "bad bench table: $(cat "$W/out")"

for args in "--greedy" "--penalties --logprobs 5" "--dtype bf16 --top-k 0 --top-p 0.9" "--dtype f16 --min-p 0.1" \
  "--trace on --penalties" "--mesh 1x4 --threads 2" "--mesh 2x2 --axis 1 --dp 2"; do
  # shellcheck disable=SC2086
  ok "bench $args" "$MS" bench --batch 4 --vocab 4096 --steps 3 --json $args &&
    grep -q '"median_ms"' "$W/out" || fail "bench $args: no result"
done

finish
