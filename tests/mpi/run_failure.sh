#!/bin/bash
# run_failure.sh LIMIT MPIEXEC [MPIEXEC ARGS...] -- the job, as one command line.
# Runs the job under `timeout 60`, prints the elapsed seconds, and passes only if the job
# ended with a non-zero status (not timeout's 124/137) within LIMIT seconds. Exit 42 from the
# job means rank 0 got an error status from ms_generator_sample (the library noticed).
limit=$1
shift
start=$(date +%s.%N)
timeout -k 5 60 "$@"
rc=$?
end=$(date +%s.%N)
elapsed=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')
echo "run_failure: exit status $rc after $elapsed s (limit $limit s)"
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "run_failure: FAIL: the job hung (killed by timeout)"
    exit 1
fi
if [ "$rc" -eq 0 ]; then
    echo "run_failure: FAIL: the job exited 0 although a rank died"
    exit 1
fi
if awk -v e="$elapsed" -v l="$limit" 'BEGIN { exit !(e > l) }'; then
    echo "run_failure: FAIL: took longer than $limit s"
    exit 1
fi
if [ "$rc" -eq 42 ]; then
    echo "run_failure: PASS: rank 0 got an error status from the library"
else
    echo "run_failure: PASS: the job was aborted (status $rc)"
fi
exit 0
