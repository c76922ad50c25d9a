#!/usr/bin/env bash
# Interleaved, pinned comparison of server models under `ringport stress`,
# reporting msgs/s and server CPU per message (utime+stime from /proc).
#   scripts/pinned-compare.sh "threaded completion" 64 512 5s 3 [extra stress args...]
# Server on CPU 0 (--workers 1), load on CPU 1 (--threads 1).
set -euo pipefail
models=${1:-"threaded completion"}; conns=${2:-64}; size=${3:-512}; dur=${4:-5s}; reps=${5:-3}
shift $(( $# < 5 ? $# : 5 )) || true
bin=${RINGPORT:-target/release/ringport}
hz=$(getconf CLK_TCK)
text=$(head -c "$size" /dev/zero | tr '\0' 'x')
for rep in $(seq 1 "$reps"); do
  for m in $models; do
    out=$(mktemp)
    taskset -c 0 "$bin" serve --model "$m" --workers 1 --listen 127.0.0.1:0 >"$out" 2>/dev/null &
    pid=$!
    for _ in $(seq 1 100); do grep -q "listening on" "$out" && break; sleep 0.05; done
    addr=$(sed -n 's/^listening on //p' "$out")
    t0=$(awk '{print $14+$15}' /proc/$pid/stat)
    json=$(taskset -c 1 "$bin" stress "$addr" --threads 1 -c "$conns" --duration "$dur" --message "$text" --json - "$@" 2>/dev/null)
    t1=$(awk '{print $14+$15}' /proc/$pid/stat)
    kill -TERM $pid; wait $pid 2>/dev/null || true
    rm -f "$out"
    echo "$json" | python3 -c "
import json,sys
j=json.load(sys.stdin); cpu=($t1-$t0)/$hz
n=j['messages_verified']
print(f\"rep=$rep model=$m conns=$conns msgs/s={j['msgs_per_sec']:.0f} p50={j['latency_us']['p50']} p99={j['latency_us']['p99']} server_cpu_us_per_msg={cpu*1e6/max(n,1):.2f} errors={j['errors']}\")"
  done
done
