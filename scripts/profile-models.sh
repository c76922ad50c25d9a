#!/usr/bin/env bash
# Where each server model spends its CPU per message, and how many system
# calls it makes per message, at the same paced load.
#
# For every model: the server is pinned to CPU 0 (one worker), the load
# (`ringport stress --rate`) to CPU 1. Over one window the server's own CPU
# time (utime + stime from /proc, exact) and its system calls (perf stat,
# raw_syscalls:sys_enter) are counted; over a second window perf samples the
# server's threads with the software clock (`perf record -e cpu-clock -g`;
# this VM has no hardware counters) and every sample is put in one bucket by
# its call chain:
#
#   sleep/wake   under schedule(): going to sleep and being switched back in
#                (in a VM the halt and the wake-up interrupt land here)
#   tcp send     under tcp_sendmsg: building the segment, loopback delivery
#                into the peer's socket (softirq runs inline) and waking it
#   tcp receive  under tcp_recvmsg: taking the bytes off the socket (copy,
#                freeing the skb, window updates)
#   kernel loop  every other kernel sample: syscall entry and exit, epoll,
#                io_uring submission, task work and completion posting
#   user         the server's own code (and libc)
#
# The first two are the kernel's TCP work, which any server pays; the rest is
# the event loop's own cost. The CPU per message is split by the sample
# shares (sampling itself costs some CPU, so the shares, not the sampled
# times, are used).
#
# Needs: a release build, perf (linux-perf), taskset, python3; root or
# perf_event_paranoid <= 0 for perf on another process.
# Knobs (environment): BIN, MODELS (also LABEL:MODEL,ARG,... entries, such
# as coalesced:completion,--coalesce,100us), RATE (default 20000), CONNS (64; the
# blocking model serves one client at a time and gets 1 connection at
# BLOCKING_RATE, default 5000), SIZE (512), WINDOW (seconds, 3), FREQ (2000 Hz),
# OUT (directory for perf data and the table, default bench-results/profile),
# RUNS (3: the models run interleaved this many times; the table is of medians).
#
# On a VM, contention on the host shows up as spinlock slow paths (a lock
# holder's vCPU was preempted) and as steal time, which inflate every
# bucket. A window with more than MAX_STEAL % (default 5) of a CPU stolen is
# run again, up to TRIES (4) times; the steal is printed with every run, and
# taking the median run keeps one bad run out.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/ringport}
MODELS=${MODELS:-blocking threaded epoll tokio completion}
RATE=${RATE:-20000}
BLOCKING_RATE=${BLOCKING_RATE:-5000}
CONNS=${CONNS:-64}
SIZE=${SIZE:-512}
WINDOW=${WINDOW:-3}
FREQ=${FREQ:-2000}
OUT=${OUT:-bench-results/profile}
SERVE_EXTRA=${SERVE_EXTRA:-}
RUNS=${RUNS:-3}
MAX_STEAL=${MAX_STEAL:-5}
TRIES=${TRIES:-4}

command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release" >&2; exit 2; }
mkdir -p "$OUT"

cputime() { awk '{print $14 + $15}' "/proc/$1/stat"; }
steal() { awk '/^cpu[01] / {s += $9} END {print s}' /proc/stat; }
rm -f "$OUT/profile.tsv"

measure() {
    # An entry is a model, or LABEL:MODEL,ARG,ARG... for a variant, such as
    # coalesced:completion,--coalesce,100us.
    local model=${1%%:*} serve=${1#*:} rate=$RATE conns=$CONNS
    serve=${serve//,/ }
    if [ "$model" = blocking ]; then rate=$BLOCKING_RATE conns=1; fi
    log="$OUT/serve-$model.log"
    # shellcheck disable=SC2086
    taskset -c 0 "$BIN" serve --model $serve --workers 1 --listen 127.0.0.1:0 $SERVE_EXTRA >"$log" 2>&1 &
    server=$!
    addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$log" | head -1)
        [ -n "$addr" ] && break
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "$model: server did not start: $(cat "$log")" >&2; kill "$server"; exit 1; }
    run_for=$((2 * WINDOW + 3))
    taskset -c 1 "$BIN" stress "$addr" --threads 1 -c "$conns" --size "$SIZE" --rate "$rate" \
        --duration "${run_for}s" --warmup 1s --no-progress --json "$OUT/stress-$model.json" >/dev/null 2>&1 &
    load=$!
    sleep 2
    t0=$(cputime "$server") s0=$(steal)
    perf stat -e raw_syscalls:sys_enter -p "$server" -o "$OUT/syscalls-$model.txt" -- sleep "$WINDOW" >/dev/null 2>&1
    t1=$(cputime "$server") s1=$(steal)
    perf record -e cpu-clock -F "$FREQ" -g -p "$server" -o "$OUT/perf-$model.data" -- sleep "$WINDOW" >/dev/null 2>&1
    wait "$load" || true
    kill -INT "$server"; wait "$server" || true
    STEAL=$(( (s1 - s0) / WINDOW ))
    if [ "$STEAL" -gt "$MAX_STEAL" ] && [ "$try" -lt "$TRIES" ]; then
        echo "$model: host steal ${STEAL}% of a CPU during the window; run again" >&2
        return 1
    fi
    perf script -i "$OUT/perf-$model.data" -F ip,sym 2>/dev/null >"$OUT/stacks-$model.txt"
    python3 - "$model" "$rate" "$WINDOW" "$t0" "$t1" "$OUT" "$((s1 - s0))" <<'PY'
import sys
model, rate, secs, t0, t1, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
steal_pct = int(sys.argv[7]) / secs  # ticks of 10 ms over two CPUs: % of one CPU
import json
# Messages in the window: the rate the load actually achieved (a server that
# cannot keep up gets its own figure, not the asked-for rate).
achieved = json.load(open(f"{out}/stress-{model}.json")).get("msgs_per_sec") or rate
msgs = min(rate, achieved) * secs
hz = 100  # USER_HZ: /proc/<pid>/stat counts in clock ticks of 10 ms
cpu_us = (t1 - t0) / hz * 1e6 / msgs
sc = 0
for line in open(f"{out}/syscalls-{model}.txt"):
    if "sys_enter" in line:
        sc = int(line.split()[0].replace(",", ""))
buckets = dict.fromkeys(["tcp send", "tcp receive", "sleep/wake", "kernel loop", "user"], 0)
def classify(frames):
    syms = [f[1] for f in frames]
    # Sleeping first: a blocking read sleeps inside tcp_recvmsg.
    if any(s in ("__schedule", "schedule", "schedule_idle") for s in syms):
        return "sleep/wake"
    if any(s.startswith("tcp_sendmsg") for s in syms):
        return "tcp send"
    if any(s.startswith("tcp_recvmsg") for s in syms):
        return "tcp receive"
    leaf = frames[0][0] if frames else 0
    return "kernel loop" if leaf >= 0xffff800000000000 else "user"
frames = []
def flush():
    if frames:
        buckets[classify(frames)] += 1
        frames.clear()
for line in open(f"{out}/stacks-{model}.txt"):
    line = line.strip()
    if not line:
        flush()
        continue
    parts = line.split(None, 1)
    try:
        ip = int(parts[0], 16)
    except ValueError:
        continue
    frames.append((ip, parts[1].split("+")[0] if len(parts) > 1 else "?"))
flush()
total = sum(buckets.values()) or 1
row = {k: cpu_us * v / total for k, v in buckets.items()}
loop = row["sleep/wake"] + row["kernel loop"] + row["user"]
with open(f"{out}/profile.tsv", "a") as f:
    f.write("\t".join([model, f"{sc / msgs:.2f}", f"{cpu_us:.2f}"] + [f"{row[k]:.2f}" for k in buckets] + [f"{loop:.2f}", str(total)]) + "\n")
print(f"{model:10} syscalls/msg {sc / msgs:.2f}  cpu {cpu_us:5.2f} us/msg  " + "  ".join(f"{k} {row[k]:.2f}" for k in buckets) + f"  loop {loop:.2f}  ({total} samples, steal {steal_pct:.1f}%)")
PY
}

for run in $(seq "$RUNS"); do
    for entry in $MODELS; do
        for try in $(seq "$TRIES"); do
            measure "$entry" && break
            sleep 5
        done
    done
done

python3 - "$OUT/profile.tsv" <<'PY' | tee "$OUT/profile.md"
import sys
rows = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rows.setdefault(f[0], []).append([float(x) for x in f[1:9]])
print("| model | syscalls / msg | CPU µs / msg | tcp send | tcp receive | sleep/wake | kernel loop | user | loop (all but TCP) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for model, rs in rows.items():
    # The run with the median CPU per message, whole, so its parts add up.
    med = sorted(rs, key=lambda r: r[1])[(len(rs) - 1) // 2]
    print(f"| {model} | {med[0]:.2f} | " + " | ".join(f"{x:.2f}" for x in med[1:]) + " |")
print(f"\nEach row is the run with the median CPU per message, of {max(len(r) for r in rows.values())} per model.")
PY
