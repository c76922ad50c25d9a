#!/usr/bin/env bash
# The load generator's own cost: stress's CPU per verified message against the
# server's, in the same run, over the same interval.
#
# For every server model, connection count, message size and mode: the server
# (`serve --model M --workers 1`) is pinned to CPU 0, the load (`stress
# --threads 1`) to CPU 1. Both processes' CPU time (utime + stime from /proc,
# exact) is read around the whole stress run, which has no warm-up, so both
# cover the same connects, messages and closes; each is divided by the
# messages stress verified. Modes: `paced` (open loop at RATE_<size>
# messages/s in total) and `saturated` (closed loop, one message in flight per
# connection). Each cell runs RUNS times, interleaved with the other servers;
# the table gives medians and the min-max of the ratio.
#
# tcpkali (satori-com/tcpkali, built outside the repository, see
# docs/BENCHMARKS.md) is a reference where its work is comparable: paced, at
# TCPKALI=/path/to/tcpkali; it sends the same bytes at the same rate and
# verifies nothing. Its CPU is divided by the messages it says it sent.
#
# Knobs (environment): BIN, SERVERS (epoll completion), SIZES (64 512 4096
# 65536 1048576), CONNS (64 1000), MODES (paced saturated), SECS (5), RUNS (3),
# RATE_<size> (paced total rate per size), TCPKALI, OUT (a directory for the
# JSON reports and the table; default bench-results/load-cost).
# Needs: a release build, taskset, python3, two CPUs. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
export BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release/ringport}
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release" >&2; exit 2; }
command -v taskset >/dev/null || { echo "needs taskset (apt-get install util-linux)" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "needs two CPUs: the server on one, the load on the other" >&2; exit 2; }
exec python3 - "$@" <<'PYTHON'
import json, os, statistics, subprocess, sys, tempfile

BIN = os.environ["BIN"]
SERVERS = os.environ.get("SERVERS", "epoll completion").split()
SIZES = [int(s) for s in os.environ.get("SIZES", "64 512 4096 65536 1048576").split()]
CONNS = [int(c) for c in os.environ.get("CONNS", "64 1000").split()]
MODES = os.environ.get("MODES", "paced saturated").split()
SECS = float(os.environ.get("SECS", "5"))
RUNS = int(os.environ.get("RUNS", "3"))
TCPKALI = os.environ.get("TCPKALI")
OUT = os.environ.get("OUT", "bench-results/load-cost")
DEFAULT_RATE = {64: 50000, 512: 50000, 4096: 30000, 65536: 4000, 1048576: 200}
HZ = os.sysconf("SC_CLK_TCK")
os.makedirs(OUT, exist_ok=True)


def rate(size):
    return int(os.environ.get(f"RATE_{size}", DEFAULT_RATE.get(size, 1000)))


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def steal():
    with open("/proc/stat") as f:
        return int(f.readline().split()[8]) / HZ


def start_server(model):
    p = subprocess.Popen(["taskset", "-c", "0", BIN, "serve", "--model", model, "--workers", "1",
                          "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        p.kill()
        sys.exit(f"{model}: no 'listening on' line")
    return p, line.split()[-1]


def stop(p):
    p.terminate()
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def one(model, conns, size, mode, run):
    srv, addr = start_server(model)
    report = os.path.join(OUT, f"{model}-{conns}-{size}-{mode}-{run}.json")
    cmd = ["taskset", "-c", "1", BIN, "stress", addr, "-c", str(conns), "--size", str(size),
           "--threads", "1", "-d", f"{SECS}s", "--no-progress", "--json", report]
    if mode == "paced":
        cmd += ["--rate", str(rate(size))]
    s0, st0 = cpu(srv.pid), steal()
    used, code = run_child(cmd)
    s1, st1 = cpu(srv.pid), steal()
    stop(srv)
    r = json.load(open(report))
    n = r["messages_verified"]
    if code != 0 or n == 0 or r["mismatches"] or r["errors"]:
        sys.exit(f"{model} {conns}x{size} {mode}: stress failed (exit {code}); see {report}")
    return {"load_us": used / n * 1e6, "server_us": (s1 - s0) / n * 1e6, "msgs": n,
            "steal_s": st1 - st0}


def run_child(cmd):
    # The child's own CPU time, exact, from wait4's rusage (taskset execs
    # the command, so it is the same process).
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return ru.ru_utime + ru.ru_stime, p.returncode


def tcpkali_one(conns, size, run):
    # Same bytes, same total rate, no verification: a reference, not a rival.
    srv, addr = start_server("epoll")
    msg = tempfile.NamedTemporaryFile(delete=False)
    # Letters only: tcpkali reads escapes (\\, \\{...}) in a message file.
    msg.write(bytes(97 + b % 26 for b in os.urandom(size)))
    msg.close()
    per_conn = max(1, rate(size) // conns)
    # Its default connect rate (100/s) would spend the run connecting.
    cmd = ["taskset", "-c", "1", TCPKALI, "-c", str(conns), "-w", "1", "-r", str(per_conn),
           "--connect-rate", "100000", "-f", msg.name, "-T", f"{SECS}s", addr]
    out = tempfile.TemporaryFile()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    _, _, ru = os.wait4(p.pid, 0)
    stop(srv)
    os.unlink(msg.name)
    out.seek(0)
    # The messages it really sent: "Total data sent: ... (N bytes)".
    sent = 0
    for line in out.read().decode(errors="replace").splitlines():
        if line.startswith("Total data sent:") and "(" in line:
            sent = int(line.rsplit("(", 1)[1].split()[0])
    msgs = sent / size
    return (ru.ru_utime + ru.ru_stime) / msgs * 1e6 if msgs else float("nan")


rows = []
for conns in CONNS:
    for size in SIZES:
        for mode in MODES:
            runs = {m: [] for m in SERVERS}
            kali = []
            for run in range(RUNS):
                for model in SERVERS:
                    runs[model].append(one(model, conns, size, mode, run))
                if TCPKALI and mode == "paced":
                    kali.append(tcpkali_one(conns, size, run))
            for model in SERVERS:
                rs = runs[model]
                ratios = [r["load_us"] / r["server_us"] for r in rs if r["server_us"] > 0]
                row = {"server": model, "conns": conns, "size": size, "mode": mode,
                       "load_us": statistics.median(r["load_us"] for r in rs),
                       "server_us": statistics.median(r["server_us"] for r in rs),
                       "ratio": statistics.median(ratios) if ratios else float("nan"),
                       "ratio_min": min(ratios, default=float("nan")),
                       "ratio_max": max(ratios, default=float("nan")),
                       "msgs_per_s": statistics.median(r["msgs"] for r in rs) / SECS,
                       "steal_s": max(r["steal_s"] for r in rs),
                       "tcpkali_us": statistics.median(kali) if kali else None}
                rows.append(row)
                print(f"{model:10} {conns:5} x {size:>7} B {mode:9} load {row['load_us']:8.2f} µs/msg"
                      f"  server {row['server_us']:8.2f}  ratio {row['ratio']:.2f}"
                      f" ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})  {row['msgs_per_s']:9.0f} msgs/s"
                      f"  steal {row['steal_s']:.2f}s"
                      + (f"  tcpkali {row['tcpkali_us']:.2f}" if row["tcpkali_us"] else ""), flush=True)

with open(os.path.join(OUT, "load-cost.json"), "w") as f:
    json.dump({"bin": BIN, "secs": SECS, "runs": RUNS, "rows": rows}, f, indent=1)
with open(os.path.join(OUT, "load-cost.md"), "w") as f:
    f.write("| server | conns | size | mode | load µs/msg | server µs/msg | ratio (min-max) | msgs/s |\n")
    f.write("|---|---:|---:|---|---:|---:|---|---:|\n")
    for r in rows:
        f.write(f"| {r['server']} | {r['conns']} | {r['size']} | {r['mode']} | {r['load_us']:.2f} | "
                f"{r['server_us']:.2f} | {r['ratio']:.2f} ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | "
                f"{r['msgs_per_s']:.0f} |\n")
print(f"table: {OUT}/load-cost.md")
PYTHON
