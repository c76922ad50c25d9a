#!/usr/bin/env bash
# Hold 10,000 connections on the completion, epoll and tokio servers, each
# echoing one message every 5 s (2,000 echoes/s in all) for 20 s, and print
# the server's resident memory per connection (VmRSS with all of them
# connected and idle, minus VmRSS before, / 10,000). Linux only.
#
#   scripts/hold-10k.sh [MODEL...]        (default: completion epoll tokio)
#   RINGPORT=path/to/ringport CONNECTIONS=10000 DURATION=20 scripts/hold-10k.sh
#
# Needs a release build (cargo build --release) and ~20,000 open files for
# the client (the script raises its soft limit to the hard one).
set -euo pipefail
cd "$(dirname "$0")/.."
RINGPORT=${RINGPORT:-${CARGO_TARGET_DIR:-target}/release/ringport}
CONNECTIONS=${CONNECTIONS:-10000}
DURATION=${DURATION:-20}
[ -x "$RINGPORT" ] || { echo "no $RINGPORT: run cargo build --release first" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(completion epoll tokio)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
status=0
for model in "${models[@]}"; do
    "$RINGPORT" serve --model "$model" --listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    for _ in $(seq 100); do grep -q '^listening on' "$tmp/out" && break; sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$tmp/out")
    [ -n "$addr" ] || { echo "$model: server did not start" >&2; cat "$tmp/err" >&2; exit 1; }
    if result=$(python3 scripts/hold_conns.py "$addr" --pid "$pid" \
        --connections "$CONNECTIONS" --duration "$DURATION" --period 5); then
        echo "$model: $result"
    else
        echo "$model: FAILED: $result"
        status=1
    fi
    kill -TERM "$pid"
    code=0; wait "$pid" || code=$?
    echo "$model: exit $code; $(tail -1 "$tmp/out")"
    [ "$code" -eq 0 ] || status=1
    pid=
done
exit $status
