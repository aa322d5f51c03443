#!/usr/bin/env bash
# --help on the tool and on each subcommand: usage on stdout, exit 0, nothing on stderr.
. "$(dirname "$0")/cli_lib.sh"

for cmd in "--help" "-h" "help" "sample --help" "sample -h" "demo --help" "bench --help" \
  "sample --logits x.npy --help"; do
  # shellcheck disable=SC2086
  ok "meshsample $cmd" "$MS" $cmd && grep -q '^usage: meshsample' "$W/out" || fail "$cmd: no usage line"
done
# Every option of the sample contract is documented.
"$MS" sample --help >"$W/h"
for o in logits dtype vocab-size mesh axis dp max-top-k threads backend temperature top-k top-p min-p \
  presence frequency repetition penalty-order prompt output-tokens seed logprobs logprobs-mode draws; do
  grep -q -- "--$o" "$W/h" || fail "sample --help does not mention --$o"
done
"$MS" bench --help >"$W/h"
for o in batch vocab dtype mesh axis dp threads temperature top-k top-p min-p penalties logprobs greedy \
  trace steps json; do
  grep -q -- "--$o" "$W/h" || fail "bench --help does not mention --$o"
done
ok "--version" "$MS" --version && grep -qE '^meshsample [0-9]+\.[0-9]+\.[0-9]+$' "$W/out" || fail "bad --version"

finish
