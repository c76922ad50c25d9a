#!/usr/bin/env bash
# Connection churn with the SERVER as the limit: each model runs on CPU 0
# held to a share of it by a cgroup CPU quota, the load (`stress
# --per-connection 1`) runs on CPU 1, and connections/s is printed per
# round. Without the cap, one load CPU is slower than every server here
# (docs/BENCHMARKS.md, "Churn"). `ringport bench --per-connection 1
# --server-cpu-cap PERCENT` does the same with bench's repetitions,
# intervals and checks; this script is the quick manual version.
#
#   sudo scripts/churn-capped.sh [PERCENT] [ROUNDS]   (defaults: 25, 3)
#
# Needs root, 2+ CPUs, and the cgroup v1 `cpu` controller at
# /sys/fs/cgroup/cpu or cgroup v2 at /sys/fs/cgroup. Uses target/release/ringport.
set -euo pipefail
pct=${1:-25}
rounds=${2:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
ringport=$here/target/release/ringport
[ -x "$ringport" ] || { echo "build first: cargo build --release" >&2; exit 2; }
case "$pct" in ''|*[!0-9]*) echo "PERCENT must be 1-100" >&2; exit 2 ;; esac
[ "$pct" -ge 1 ] && [ "$pct" -le 100 ] || { echo "PERCENT must be 1-100" >&2; exit 2; }
period=10000
quota=$((period * pct / 100))
if [ -d /sys/fs/cgroup/cpu ] && [ -f /sys/fs/cgroup/cpu/cgroup.procs ]; then
    cg=/sys/fs/cgroup/cpu/ringport-churn-$$
    mkdir "$cg"
    echo $period > "$cg/cpu.cfs_period_us"
    echo $quota > "$cg/cpu.cfs_quota_us"
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cg=/sys/fs/cgroup/ringport-churn-$$
    mkdir "$cg"
    echo "$quota $period" > "$cg/cpu.max"
else
    echo "no cgroup cpu controller found" >&2
    exit 2
fi
srv=
log=$(mktemp)
cleanup() {
    rm -f "$log"
    [ -n "$srv" ] && kill -INT "$srv" 2>/dev/null && wait "$srv" 2>/dev/null
    # Move anything left back out, then remove the group.
    if [ -f "$cg/cgroup.procs" ]; then
        while read -r p; do echo "$p" > "$(dirname "$cg")/cgroup.procs" 2>/dev/null || true; done < "$cg/cgroup.procs"
    fi
    rmdir "$cg" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo "server on CPU 0 held to $pct% of it; load on CPU 1; 64 connections, 1 x 512 B each, from 16 fresh loopback addresses per run"
run=0
for round in $(seq 1 "$rounds"); do
    for model in threaded epoll tokio completion; do
        # 16 loopback source addresses no other run of this script used: the
        # client ends of closed connections stay in TIME_WAIT for a minute,
        # and from one address the load's port search, not the server, is
        # the limit, and a run would inherit the earlier runs' sockets.
        run=$((run + 1))
        sources=$(for h in $(seq 1 16); do printf '127.%d.%d.%d,' $(( (run / 250) % 250 + 2 )) $(( run % 250 + 1 )) "$h"; done)
        sources=${sources%,}
        coproc SRV { exec taskset -c 0 "$ringport" serve --model "$model" --workers 1 --listen 127.0.0.1:0; }
        srv=$SRV_PID
        read -r line <&"${SRV[0]}"
        addr=${line#listening on }
        echo "$srv" > "$cg/cgroup.procs"
        out=$(taskset -c 1 "$ringport" stress "$addr" --per-connection 1 -c 64 --size 512 -d 5s --warmup 1s --source-ips "$sources" --json - 2>"$log") || {
            echo "$model: the load failed:" >&2; cat "$log" >&2; exit 1; }
        kill -INT "$srv"; wait "$srv" 2>/dev/null || true; srv=
        rate=$(printf '%s' "$out" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["connections_per_sec"]))')
        echo "round $round  $model  $rate connections/s"
    done
done
