#!/usr/bin/env bash
# Hunt for flaky tests: run the integration suite N times (default 20) with
# two busy loops spinning on the CPUs, the way a loaded 2-core CI machine
# runs it, and print every failure with its output. A test that fails here
# even once is a bug to fix at its cause, not to retry.
#
#   scripts/flake-hunt.sh [N] [-- extra cargo test args, such as a filter]
#   BUSY=0 scripts/flake-hunt.sh 5      # no busy loops
#
# Prints "N of N passed" at the end and exits 1 if any run failed. The
# failures' full output is kept in target/flake-hunt/run-K.log.
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
shift || true
[ "${1:-}" = "--" ] && shift
busy=${BUSY:-2}
logs=target/flake-hunt
mkdir -p "$logs"
rm -f "$logs"/run-*.log

echo "building the suite once"
cargo test --test tests --no-run --locked -q 2>&1 | tail -3

spinners=()
stop_spinners() { for p in "${spinners[@]}"; do kill "$p" 2>/dev/null; done; }
trap stop_spinners EXIT
for _ in $(seq "$busy"); do
    sh -c 'while :; do :; done' &
    spinners+=($!)
done
[ "$busy" -gt 0 ] && echo "$busy busy loops spinning (pids ${spinners[*]})"

passed=0
failed_runs=()
for k in $(seq "$runs"); do
    log="$logs/run-$k.log"
    start=$(date +%s)
    if cargo test --test tests --locked -q "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "run $k: passed in $(( $(date +%s) - start )) s"
        rm -f "$log"
    else
        failed_runs+=("$k")
        echo "run $k: FAILED in $(( $(date +%s) - start )) s; failures:"
        # The names of the failed tests, then each one's output.
        sed -n '/^failures:$/,/^test result/p' "$log" | sed 's/^/    /'
    fi
done
echo
echo "$passed of $runs passed"
if [ "${#failed_runs[@]}" -gt 0 ]; then
    echo "failed runs: ${failed_runs[*]} (logs in $logs/)"
    exit 1
fi
