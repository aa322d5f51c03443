#!/usr/bin/env bash
# bench/peer_torch.py still runs and prints the bench's JSON shape. Skipped (exit 77) where no
# python3 can import torch: the build never installs it.
. "$(dirname "$0")/cli_lib.sh"
PEER=$(cd "$(dirname "$0")/../../bench" && pwd)/peer_torch.py

py=""
for cand in python3 /usr/bin/python3; do
  if command -v "$cand" >/dev/null && "$cand" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is None)' 2>/dev/null; then
    py=$cand
    break
  fi
done
if [ -z "$py" ]; then
  echo "no python3 with torch: skipped"
  exit 77
fi

num='[0-9]+(\.[0-9]+)?(e-?[0-9]+)?'
for args in "--penalties --logprobs 3 --min-p 0.05" "--greedy --dtype bf16"; do
  # shellcheck disable=SC2086
  ok "peer_torch $args" "$py" "$PEER" --batch 8 --vocab 32768 --steps 3 --json $args &&
    grep -qE "^\{\"median_ms\":$num,\"p10_ms\":$num,\"p90_ms\":$num,\"floor_ms\":$num,\"ratio\":$num,\"config\":\{\"peer\":\"torch\"," "$W/out" ||
    fail "peer_torch $args: bad JSON: $(cat "$W/out")"
done
finish
