#!/usr/bin/env bash
# `mpiexec -n R meshsample sample --backend mpi --mesh ...` (one rank per device, each reading its
# own shard of the file): rank 0 prints byte for byte what the host backend prints for the same
# arguments and mesh, and the tokens are those of a 1x1 mesh.
# Arguments: the usual three (cli_lib.sh), then MPIEXEC NUMPROC_FLAG N MESH-OPTIONS...
. "$(dirname "$0")/cli_lib.sh"
MPIEXEC=$4
NPFLAG=$5
NP=$6
shift 6
MESH=("$@")

# mpi_run CMD...: like run, under mpiexec with NP ranks; a hang fails after 60 s.
mpi_run() {
  timeout -k 5 60 "$MPIEXEC" "$NPFLAG" "$NP" "$@" >"$W/out" 2>"$W/err"
  RC=$?
}

B=8
V=1024
"$H" gen-logits "$W/x.npy" $B $V f32 41 ties || exit 1
"$H" gen-logits "$W/x16.npy" $B $V bf16 41 ties || exit 1
"$H" gen-tokens "$W/prompt.npy" $B 12 i4 7 $V || exit 1
"$H" gen-tokens "$W/outputs.npy" $B 6 i8 8 $V || exit 1

# Mixed per-user lists: greedy, top-k, top-p, min-p and an exact nucleus much larger than the
# candidates gathered (user 7: hot temperature, top-p 0.99, so the fallback round runs).
LISTS=(--temperature 0,0.7,1.0,1.3,0.9,0.8,1.1,3.0 --top-k 1,10,0,50,0,5,20,0
  --top-p 1,0.9,0.8,1,0.95,1,0.7,0.99 --min-p 0,0,0.05,0,0,0.1,0,0
  --seed 5,6,7,8,9,10,11,12)
SCENARIOS=(
  "penalties+lists|--logits $W/x.npy ${LISTS[*]} --prompt $W/prompt.npy --output-tokens $W/outputs.npy --repetition 1.3 --frequency 0.4,0,0.2,0,1,0,0.5,0 --presence 0.3 --logprobs 3 --draws 3"
  "bf16|--logits $W/x16.npy --dtype bf16 --temperature 0.8 --top-k 0 --top-p 0.9 --seed 3 --logprobs 3 --draws 3"
  "truncated, tt order|--logits $W/x.npy --temperature 0.9 --top-k 0 --top-p 0.95 --max-top-k 32 --prompt $W/prompt.npy --presence 0.5 --repetition 1.1 --penalty-order tt --seed 4 --logprobs 3 --logprobs-mode penalized --draws 3"
)

for sc in "${SCENARIOS[@]}"; do
  name=${sc%%|*}
  read -r -a A <<<"${sc#*|}"
  desc="$name (${MESH[*]})"
  ok "host 1x1: $desc" "$MS" sample "${A[@]}" && check "$W/out" $B 3 3 $V "$W/ref" || continue
  ok "host: $desc" "$MS" sample "${A[@]}" "${MESH[@]}" && cp "$W/out" "$W/host" || continue
  mpi_run "$MS" sample "${A[@]}" "${MESH[@]}" --backend mpi
  if [ "$RC" -ne 0 ]; then
    fail "mpi: $desc: exit $RC: $(head -c 400 "$W/err")"
    continue
  fi
  [ -s "$W/err" ] && fail "mpi: $desc: unexpected stderr: $(head -c 400 "$W/err")"
  same "mpi vs host output, $desc" "$W/host" "$W/out"
  check "$W/out" $B 3 3 $V "$W/t" && same "mpi tokens vs 1x1, $desc" "$W/ref" "$W/t"
done

# --threads applies per rank.
A=(--logits "$W/x.npy" "${LISTS[@]}" --logprobs 2)
ok "host, threads" "$MS" sample "${A[@]}" "${MESH[@]}" && cp "$W/out" "$W/host"
mpi_run "$MS" sample "${A[@]}" "${MESH[@]}" --backend mpi --threads 2
[ "$RC" -eq 0 ] && same "mpi --threads 2 vs host" "$W/host" "$W/out" || fail "mpi --threads 2: exit $RC: $(head -c 400 "$W/err")"

finish
