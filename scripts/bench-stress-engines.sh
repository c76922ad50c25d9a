#!/usr/bin/env bash
# Measure the stress client itself: the event-driven engine (`--engine events`,
# the default) against the blocking thread-per-connection baseline
# (`--engine threads`), both loading the same threaded server on loopback.
#
# Server pinned to CPU 0, client to CPU 1, runs interleaved (events, threads,
# events, ...) so that drift in the machine's load hits both alike. Prints
# each run and the medians; docs/BENCHMARKS.md records the figures.
#
# Needs: a release build (cargo build --release), taskset, /usr/bin/time, python3.
# Knobs (environment): MODEL (server model, default threaded), BIN, PORT, CONNS, DURATION, WARMUP, RUNS, OUT, EXTRA,
# NICE (e.g. -10, as root: both server and client get the same priority over
# whatever else the machine runs; the scheduler shares CPU per thread, so
# without it a one-thread client loses far more to other load than a client
# with 64 threads does, and the comparison measures the neighbours),
# QUIET (CPU pressure, % of time some task waited for a CPU over the last
# 10 s, from /proc/pressure/cpu: before each run wait until it is at most
# this, for at most QUIET_WAIT seconds, then run anyway; every run's
# pressure is printed, so contended runs are visible; empty = never wait).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/ringport}
PORT=${PORT:-5300}
CONNS=${CONNS:-64}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
RUNS=${RUNS:-5}
OUT=${OUT:-bench-results/stress-engines}
EXTRA=${EXTRA:-}
NICE=${NICE:-0}
QUIET=${QUIET:-}
QUIET_WAIT=${QUIET_WAIT:-120}

pressure() { awk '/^some/ {split($2, a, "="); print a[2]}' /proc/pressure/cpu 2>/dev/null || echo "n/a"; }
wait_quiet() {
    [ -n "$QUIET" ] && [ -r /proc/pressure/cpu ] || return 0
    local deadline=$((SECONDS + QUIET_WAIT))
    while [ "$SECONDS" -lt "$deadline" ]; do
        awk -v p="$(pressure)" -v q="$QUIET" 'BEGIN { exit !(p <= q) }' && return 0
        sleep 1
    done
}
mkdir -p "$OUT"

# setsid: the server gets its own session, so its own scheduling group under
# autogroup (on by default), as a separately started service would. In one
# group with the client, the group's weight is split across the two CPUs by
# load: 64 server threads on CPU 0 would leave a one-thread client almost
# none of CPU 1 against any outside work, while 64 client threads would keep
# half; the comparison would measure that, not the engines.
# (No fork: in a script the job is not a group leader, so $! is the server.)
nice -n "$NICE" setsid taskset -c 0 "$BIN" serve --model "${MODEL:-threaded}" --workers 1 --listen "127.0.0.1:$PORT" >"$OUT/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    grep -q "listening on" "$OUT/server.log" && break
    sleep 0.05
done
grep -q "listening on" "$OUT/server.log" || { echo "server did not start" >&2; exit 1; }
[ "$(cat "/proc/$server/comm" 2>/dev/null)" = ringport ] || { echo "server pid $server is not ringport" >&2; exit 1; }

for i in $(seq "$RUNS"); do
    for engine in events threads; do
        wait_quiet
        echo "$engine $i $(pressure)" >>"$OUT/pressure.log"
        # shellcheck disable=SC2086 # EXTRA is a list of flags
        /usr/bin/time -v -o "$OUT/$engine-$i.time" \
            nice -n "$NICE" taskset -c 1 "$BIN" stress "127.0.0.1:$PORT" -c "$CONNS" \
            --duration "$DURATION" --warmup "$WARMUP" --engine "$engine" \
            --no-progress --json "$OUT/$engine-$i.json" $EXTRA >/dev/null
    done
done

python3 - "$OUT" "$RUNS" <<'PY'
import json, re, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
def time_v(path):
    t = open(path).read()
    get = lambda label: float(re.search(re.escape(label) + r":\s*([\d.]+)", t).group(1))
    return (get("User time (seconds)") + get("System time (seconds)"),
            get("Voluntary context switches") + get("Involuntary context switches"))
psi = {}
for line in open(f"{out}/pressure.log"):
    e, i, p = line.split()
    psi[(e, int(i))] = p
rows = {}
for engine in ("events", "threads"):
    rows[engine] = []
    for i in range(1, runs + 1):
        r = json.load(open(f"{out}/{engine}-{i}.json"))
        cpu, switches = time_v(f"{out}/{engine}-{i}.time")
        # CPU covers the whole process: connect, warm-up and measured part.
        msgs = r["messages_verified"] + r["warmup_messages"]
        row = dict(msgs_per_sec=r["msgs_per_sec"], p50=r["latency_us"]["p50"], p99=r["latency_us"]["p99"],
                   cpu_s=cpu, cpu_us_per_msg=cpu * 1e6 / max(msgs, 1), switches_per_msg=switches / max(msgs, 1),
                   errors=r["errors"], psi=psi.get((engine, i), "n/a"))
        rows[engine].append(row)
        print(f"{engine:8} run {i}: {row['msgs_per_sec']:10.0f} msgs/s  p50 {row['p50']:6} us  p99 {row['p99']:6} us  "
              f"client CPU {row['cpu_s']:.2f} s = {row['cpu_us_per_msg']:.2f} us/msg  "
              f"{row['switches_per_msg']:.3f} ctx switches/msg  errors {row['errors']}  cpu pressure {row['psi']}%")
med = {e: {k: statistics.median(r[k] for r in rs) for k in rs[0] if k != "psi"} for e, rs in rows.items()}
print()
print("| engine | msgs/s (median) | p50 us | p99 us | client CPU us/msg | ctx switches/msg |")
print("|---|---:|---:|---:|---:|---:|")
for e, m in med.items():
    print(f"| {e} | {m['msgs_per_sec']:.0f} | {m['p50']:.0f} | {m['p99']:.0f} | {m['cpu_us_per_msg']:.2f} | {m['switches_per_msg']:.3f} |")
e, t = med["events"], med["threads"]
print()
print(f"throughput ratio events/threads: {e['msgs_per_sec'] / t['msgs_per_sec']:.2f}x")
print(f"CPU per message ratio threads/events: {t['cpu_us_per_msg'] / e['cpu_us_per_msg']:.2f}x")
PY
