#!/usr/bin/env bash
# Soak one server model for 60 s of mixed load and check that it loses
# nothing and does not grow:
#   * `ringport stress`: 50 connections, 8 messages in flight each, for the
#     whole run, every echo verified;
#   * scripts/churn.py: connections opening, echoing, closing (some reset,
#     some leaving their echo unread), one after another;
#   * VmRSS of the server every 5 s. After a 15 s warm-up, the largest
#     sample may exceed the one at 15 s by at most 2 MiB.
# Linux only; needs a release build.
#
#   scripts/soak.sh [MODEL]        (default: completion)
#   RINGPORT=path/to/ringport DURATION=60 scripts/soak.sh epoll
set -euo pipefail
cd "$(dirname "$0")/.."
RINGPORT=${RINGPORT:-${CARGO_TARGET_DIR:-target}/release/ringport}
DURATION=${DURATION:-60}
WARMUP=${WARMUP:-15}
model=${1:-completion}
[ -x "$RINGPORT" ] || { echo "no $RINGPORT: run cargo build --release first" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
"$RINGPORT" serve --model "$model" --listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 100); do grep -q '^listening on' "$tmp/out" && break; sleep 0.1; done
addr=$(sed -n 's/^listening on //p' "$tmp/out")
[ -n "$addr" ] || { echo "server did not start" >&2; cat "$tmp/err" >&2; exit 1; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }

"$RINGPORT" stress "$addr" --connections 50 --pipeline 8 --duration "${DURATION}s" \
    --timeout 30s --json "$tmp/stress.json" >"$tmp/stress.out" 2>&1 &
stress=$!
python3 scripts/churn.py "$addr" --duration "$DURATION" >"$tmp/churn.json" &
churn=$!

samples=()
for ((t = 0; t <= DURATION; t += 5)); do
    samples+=("$t:$(rss)")
    echo "t=${t}s VmRSS $(rss) KiB"
    [ "$t" -lt "$DURATION" ] && sleep 5
done
status=0
wait "$stress" || status=1
wait "$churn" || status=1
kill -TERM "$pid"
code=0; wait "$pid" || code=$?
pid=
echo "stress: $(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print({k: j[k] for k in ("messages_verified","mismatches","errors")})' "$tmp/stress.json")"
echo "churn: $(cat "$tmp/churn.json")"
echo "server: exit $code; $(tail -1 "$tmp/out")"
[ "$code" -eq 0 ] || status=1
python3 - "$WARMUP" "${samples[@]}" <<'PY' || status=1
import sys
warm = int(sys.argv[1])
s = [tuple(map(int, x.split(":"))) for x in sys.argv[2:]]
base = next(r for t, r in s if t >= warm)
peak = max(r for t, r in s if t >= warm)
print(f"VmRSS at {warm}s: {base} KiB; largest after: {peak} KiB; growth {peak - base} KiB")
sys.exit(0 if peak - base <= 2048 else 1)
PY
grep -q '"mismatches": *0' "$tmp/stress.json" || status=1
echo "soak $model: $([ $status -eq 0 ] && echo PASS || echo FAIL)"
exit $status
