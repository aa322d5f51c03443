# Shared helpers of the CLI test scripts (sourced). Arguments of every script:
#   $1 the meshsample binary, $2 ms_cli_helper, $3 a scratch directory (recreated).
# Each check that fails prints why and counts; `finish` exits 1 if any failed.
set -u
MS=$1
H=$2
W=$3
rm -rf "$W"
mkdir -p "$W"
fails=0

fail() {
  echo "FAIL: $*" >&2
  fails=$((fails + 1))
}

# run CMD...: runs it with stdout in $W/out, stderr in $W/err, status in RC.
run() {
  "$@" >"$W/out" 2>"$W/err"
  RC=$?
}

# ok DESC CMD...: expects exit 0 and an empty stderr; leaves stdout in $W/out.
ok() {
  local desc=$1
  shift
  run "$@"
  if [ "$RC" -ne 0 ]; then
    fail "$desc: exit $RC ($*): $(head -c 400 "$W/err")"
    return 1
  fi
  if [ -s "$W/err" ]; then
    fail "$desc: unexpected stderr: $(head -c 400 "$W/err")"
    return 1
  fi
  return 0
}

# usage_error DESC REGEX CMD...: expects exit 2, nothing on stdout, and exactly one line on
# stderr (newline-terminated) matching REGEX (case-insensitive extended regex).
usage_error() {
  local desc=$1 pat=$2
  shift 2
  run "$@"
  local lines
  lines=$(wc -l <"$W/err")
  if [ "$RC" -ne 2 ]; then
    fail "$desc: exit $RC, expected 2 ($*): $(head -c 400 "$W/err")"
  elif [ -s "$W/out" ]; then
    fail "$desc: stdout not empty: $(head -c 200 "$W/out")"
  elif [ "$lines" -ne 1 ] || [ -n "$(tail -c 1 "$W/err")" ]; then
    fail "$desc: stderr is not exactly one line: $(head -c 400 "$W/err")"
  elif ! grep -qiE -- "$pat" "$W/err"; then
    fail "$desc: stderr does not match /$pat/: $(cat "$W/err")"
  fi
}

# tokens FILE: the token column of `ms_cli_helper check` output ("draw user token" lines).
tokens() {
  awk '{print $3}' "$1"
}

# check OUTFILE B DRAWS N V DEST: validate sample output into DEST ("draw user token" lines).
check() {
  local out=$1 b=$2 d=$3 n=$4 v=$5 dest=$6
  if ! "$H" check "$out" "$b" "$d" "$n" "$v" >"$dest" 2>"$W/check.err"; then
    fail "output check ($out): $(cat "$W/check.err")"
    return 1
  fi
  return 0
}

# same DESC A B: files must be identical.
same() {
  cmp -s "$2" "$3" || fail "$1: $(diff "$2" "$3" | head -5 | tr '\n' ' ')"
}

finish() {
  if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
  fi
  echo "all checks passed"
  exit 0
}
