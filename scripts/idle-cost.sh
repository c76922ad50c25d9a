#!/usr/bin/env bash
# The CPU an idle server spends on its open connections: hold CONNECTIONS
# (10,000) connections open with `ringport stress` at one message a second
# in all, and read the server's CPU time (user + system, /proc/PID/stat)
# over WINDOW (10 s) seconds once they are all open. A model that wakes per
# connection on a timer shows here; one that waits in the kernel reads ~0.
# Linux only.
#
#   scripts/idle-cost.sh [MODEL...]        (default: threaded epoll tokio completion)
#   RINGPORT=path/to/ringport CONNECTIONS=10000 WINDOW=10 scripts/idle-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RINGPORT=${RINGPORT:-${CARGO_TARGET_DIR:-target}/release/ringport}
CONNECTIONS=${CONNECTIONS:-10000}
WINDOW=${WINDOW:-10}
[ -x "$RINGPORT" ] || { echo "no $RINGPORT: run cargo build --release first" >&2; exit 2; }
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(threaded epoll tokio completion)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true; [ -n "${load:-}" ] && kill "$load" 2>/dev/null || true' EXIT
ticks() { awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for model in "${models[@]}"; do
    "$RINGPORT" serve --model "$model" --listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    for _ in $(seq 100); do grep -q '^listening on' "$tmp/out" && break; sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$tmp/out")
    [ -n "$addr" ] || { echo "$model: server did not start" >&2; cat "$tmp/err" >&2; exit 1; }
    "$RINGPORT" stress "$addr" --connections "$CONNECTIONS" --rate 1 \
        --duration "$((WINDOW + 10))s" --no-progress >/dev/null 2>"$tmp/stress.err" &
    load=$!
    # Wait until every connection is open (the server's thread or fd count
    # would tell too; the connect phase takes a few seconds).
    sleep 6
    t0=$(ticks "$pid"); sleep "$WINDOW"; t1=$(ticks "$pid")
    awk -v m="$model" -v n="$CONNECTIONS" -v d=$((t1 - t0)) -v hz="$hz" -v w="$WINDOW" \
        'BEGIN { printf "%-10s %6d idle connections: %.2f%% of a CPU\n", m, n, 100 * d / hz / w }'
    wait "$load" || echo "$model: the holding stress run failed: $(tail -1 "$tmp/stress.err")" >&2
    load=
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
