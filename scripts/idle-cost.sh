#!/usr/bin/env bash
# The CPU an idle server spends on its open connections: open CONNECTIONS
# (10,000) connections, echo one message on each so that every one is being
# served, then send nothing and read the server's CPU time (user + system,
# /proc/PID/stat) over WINDOW (10 s) seconds. A model that wakes per
# connection on a timer shows here; one that waits in the kernel reads ~0.
# The connections are held by a few lines of Python: `ringport stress`
# always sends. Linux only; needs python3 and ~CONNECTIONS open files.
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
trap 'rm -rf "$tmp"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
hz=$(getconf CLK_TCK)
for model in "${models[@]}"; do
    "$RINGPORT" serve --model "$model" --listen 127.0.0.1:0 >"$tmp/out" 2>"$tmp/err" &
    pid=$!
    for _ in $(seq 100); do grep -q '^listening on' "$tmp/out" && break; sleep 0.1; done
    addr=$(sed -n 's/^listening on //p' "$tmp/out")
    [ -n "$addr" ] || { echo "$model: server did not start" >&2; cat "$tmp/err" >&2; exit 1; }
    python3 - "$addr" "$CONNECTIONS" "$WINDOW" "$pid" "$model" "$hz" <<'PY'
import os, resource, socket, sys, time
addr, n, window, pid, model, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], int(sys.argv[6])
host, port = addr.rsplit(":", 1)
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for i in range(n):
    s = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
    s.sendall(b"ping")
    if s.recv(4) != b"ping":
        sys.exit(f"{model}: connection {i} was not echoed")
    socks.append(s)
def ticks():
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
time.sleep(1)
t0, c0 = time.time(), ticks()
time.sleep(window)
used = (ticks() - c0) / hz / (time.time() - t0)
print(f"{model:<10} {n:6d} idle connections: {100 * used:.2f}% of a CPU")
PY
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
