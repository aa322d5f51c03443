#!/usr/bin/env bash
# Failures under `mpiexec ... sample --backend mpi`: exactly one line on stderr (from rank 0, or
# from the one rank that failed), nothing on stdout, exit status 2 on every rank, and no rank
# left waiting in a collective (every run is bounded by a timeout).
# Arguments: the usual three (cli_lib.sh), then MPIEXEC NUMPROC_FLAG.
. "$(dirname "$0")/cli_lib.sh"
MPIEXEC=$4
NPFLAG=$5

B=4
V=1000
"$H" gen-logits "$W/x.npy" $B $V f32 1 || exit 1
X=(sample --logits "$W/x.npy" --backend mpi --mesh 1x2 --temperature 0.8 --seed 1)

# ranked NP CMD...: every rank runs CMD and records its own exit status in $W/rank.<rank>.
ranked() {
  local np=$1
  shift
  rm -f "$W"/rank.*
  # shellcheck disable=SC2016
  timeout -k 5 60 "$MPIEXEC" "$NPFLAG" "$np" bash -c '"$@"; s=$?; echo $s >"'"$W"'/rank.$PMI_RANK"; exit $s' \
    rank "$@"
}

# every_rank_exited NP STATUS DESC
every_rank_exited() {
  local r s
  for r in $(seq 0 $(($1 - 1))); do
    s=$(cat "$W/rank.$r" 2>/dev/null) || s="none"
    [ "$s" = "$2" ] || fail "$3: rank $r exited with '$s', expected $2"
  done
}

# Sanity: the base command works under mpiexec.
run ranked 2 "$MS" "${X[@]}"
[ "$RC" -eq 0 ] && [ -s "$W/out" ] && [ ! -s "$W/err" ] || fail "base command: exit $RC: $(head -c 400 "$W/err")"
every_rank_exited 2 0 "base command"

# An argument the library rejects (on every rank alike).
usage_error "negative temperature" "temperature" ranked 2 "$MS" "${X[@]}" --temperature -1
every_rank_exited 2 2 "negative temperature"
usage_error "unknown option" "bogus" ranked 2 "$MS" "${X[@]}" --bogus 1
every_rank_exited 2 2 "unknown option"
usage_error "missing file" "nope.npy" ranked 2 "$MS" sample --logits "$W/nope.npy" --backend mpi --mesh 1x2
usage_error "vocabulary not divisible" "divisible|vocab" ranked 3 "$MS" "${X[@]}" --mesh 1x3

# The world size must be the mesh's device count.
usage_error "4 ranks for a 1x2 mesh" "1x2.*2 ranks.*has 4" ranked 4 "$MS" "${X[@]}"
every_rank_exited 4 2 "4 ranks for a 1x2 mesh"
usage_error "2 ranks for a 2x2 mesh" "2x2.*4 ranks.*has 2" ranked 2 "$MS" "${X[@]}" --mesh 2x2
# Outside mpiexec MPI starts as a singleton: one rank.
usage_error "no mpiexec, 1x2 mesh" "1x2.*2 ranks.*has 1" timeout -k 5 60 "$MS" "${X[@]}"

# Only one rank fails (each rank gets different arguments, MPMD style): that rank's line alone,
# exit 2 everywhere, nobody hangs.
mpmd() { # FILE0 FILE1: rank r reads FILE<r>
  timeout -k 5 60 "$MPIEXEC" "$NPFLAG" 1 "$MS" sample --logits "$1" --backend mpi --mesh 1x2 : \
    "$NPFLAG" 1 "$MS" sample --logits "$2" --backend mpi --mesh 1x2
}
usage_error "only rank 1 fails" "rank1-missing" mpmd "$W/x.npy" "$W/rank1-missing.npy"
usage_error "only rank 0 fails" "rank0-missing" mpmd "$W/rank0-missing.npy" "$W/x.npy"
usage_error "both fail: rank 0 speaks" "r0\.npy" mpmd "$W/r0.npy" "$W/r1.npy"

# --help under mpiexec: printed once.
run ranked 2 "$MS" sample --backend mpi --help
[ "$RC" -eq 0 ] && [ "$(grep -c '^usage: meshsample sample' "$W/out")" -eq 1 ] ||
  fail "--help under mpiexec: exit $RC, $(grep -c '^usage' "$W/out") usage lines"

finish
