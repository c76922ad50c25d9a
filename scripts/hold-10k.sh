#!/usr/bin/env bash
# Hold 10,000 connections on the completion, epoll and tokio servers with
# `ringport stress`, each echoing one message every 5 s (2,000 echoes/s in
# all) for 20 s, every echo checked, and print the server's resident memory
# per connection: VmRSS halfway through the run (all connections open, each
# idle between its echoes) minus VmRSS before, / 10,000. Linux only.
#
#   scripts/hold-10k.sh [MODEL...]        (default: completion epoll tokio)
#   RINGPORT=path/to/ringport CONNECTIONS=10000 DURATION=20 scripts/hold-10k.sh
#
# Needs a release build (cargo build --release) and ~20,000 open files for
# the client (stress raises its soft limit to the hard one).
set -euo pipefail
cd "$(dirname "$0")/.."
RINGPORT=${RINGPORT:-${CARGO_TARGET_DIR:-target}/release/ringport}
CONNECTIONS=${CONNECTIONS:-10000}
DURATION=${DURATION:-20}
[ -x "$RINGPORT" ] || { echo "no $RINGPORT: run cargo build --release first" >&2; exit 2; }
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(completion epoll tokio)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
rss() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
status=0
for model in "${models[@]}"; do
    "$RINGPORT" serve --model "$model" --listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    for _ in $(seq 100); do grep -q '^listening on' "$tmp/out" && break; sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$tmp/out")
    [ -n "$addr" ] || { echo "$model: server did not start" >&2; cat "$tmp/err" >&2; exit 1; }
    before=$(rss "$pid")
    "$RINGPORT" stress "$addr" --connections "$CONNECTIONS" --rate $((CONNECTIONS / 5)) \
        --duration "${DURATION}s" --no-progress --json "$tmp/report.json" >/dev/null 2>"$tmp/stress.err" &
    load=$!
    # Sample once every connection is open and has echoed: the connect phase
    # takes a few seconds, the measured run starts after it.
    sleep $((DURATION / 2 + 5))
    held=$(rss "$pid")
    lcode=0; wait "$load" || lcode=$?
    if [ "$lcode" -eq 0 ]; then
        printf "%s: " "$model"
        python3 - "$tmp/report.json" "$before" "$held" "$CONNECTIONS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); before, held, n = map(int, sys.argv[2:5])
print(f"rss_before_kib {before}, rss_held_kib {held}, per_conn_kib {(held - before) / n:.2f}, "
      f"connect_s {r['connect_s']:.1f}, echoes {r['messages_verified']}, "
      f"mismatches {r['mismatches']}, errors {r['errors']}")
PY
    else
        echo "$model: stress FAILED (exit $lcode)"; tail -3 "$tmp/stress.err"
        status=1
    fi
    kill -TERM "$pid"
    code=0; wait "$pid" || code=$?
    echo "$model: exit $code; $(tail -1 "$tmp/out")"
    [ "$code" -eq 0 ] || status=1
    pid=
done
exit $status
