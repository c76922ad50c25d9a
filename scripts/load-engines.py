#!/usr/bin/env python3
"""The load's own cost per engine (docs/STRESS.md, "events against completion").

The server (`serve --model epoll --workers 1`) on CPU 0, `stress --threads 1
--engine E` on CPU 1, each engine in turn, RUNS times per case; CPU per
verified message of each process (the server's utime + stime from /proc,
the load's from wait4), medians. Usage: scripts/load-engines.py BIN.
Knobs (environment): RUNS (3), SECS (5), ENGINES ("events completion"),
CASES (all, or a comma list of the first three words of a case name),
OUT (where the JSON reports go; default bench-results/load-engines).
Needs taskset and two CPUs.
"""
import json, os, statistics, subprocess, sys
BIN = sys.argv[1]
OUT = os.environ.get("OUT", "bench-results/load-engines")
os.makedirs(OUT, exist_ok=True)
RUNS = int(os.environ.get("RUNS", "3"))
SECS = os.environ.get("SECS", "5")
HZ = os.sysconf("SC_CLK_TCK")
ALL = {
    "paced 64 B x64 @20k/s": ["-c", "64", "--size", "64", "--rate", "20000"],
    "saturated 4 KiB x64": ["-c", "64", "--size", "4096"],
    "paced 64 KiB x64 @4k/s": ["-c", "64", "--size", "65536", "--rate", "4000"],
    "saturated 64 B x64": ["-c", "64", "--size", "64"],
    "saturated 64 KiB x64": ["-c", "64", "--size", "65536"],
}
CASES = {k: v for k, v in ALL.items() if os.environ.get("CASES", "all") == "all" or k.split()[0] + " " + k.split()[1] + " " + k.split()[2] in os.environ["CASES"].split(",")}
ENGINES = os.environ.get("ENGINES", "events completion").split()
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ
res = {}
for case, args in CASES.items():
    for run in range(RUNS):
        for eng in ENGINES:
            srv = subprocess.Popen(["taskset", "-c", "0", BIN, "serve", "--model", "epoll", "--workers", "1",
                                    "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            addr = srv.stdout.readline().split()[-1]
            rep = f"{OUT}/{eng}-{case.replace(' ', '_').replace('/', '')}-{run}.json"
            cmd = ["taskset", "-c", "1", BIN, "stress", addr, *args, "--threads", "1", "-d", f"{SECS}s",
                   "--no-progress", "--engine", eng, "--json", rep]
            s0 = cpu(srv.pid)
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, st, ru = os.wait4(p.pid, 0)
            s1 = cpu(srv.pid)
            srv.terminate(); srv.wait()
            r = json.load(open(rep))
            n = r["messages_verified"]
            if os.waitstatus_to_exitcode(st) != 0 or r["errors"]:
                print("FAILED", eng, case, rep); continue
            load = (ru.ru_utime + ru.ru_stime) / n * 1e6
            server = (s1 - s0) / n * 1e6
            res.setdefault((case, eng), []).append((load, server, n / float(r["elapsed_s"]), r["latency_us"]["p50"], r["latency_us"]["p99"]))
            print(f"{case:24} {eng:10} run {run}: load {load:6.2f} us/msg  server {server:6.2f} us/msg  ratio {load/server:5.2f}  {n/float(r['elapsed_s']):8.0f} msg/s p50 {r['latency_us']['p50']} p99 {r['latency_us']['p99']}", flush=True)
print()
print("| case | engine | load µs/msg | server µs/msg | ratio | msgs/s | p50 µs | p99 µs |")
print("|---|---|---|---|---|---|---|---|")
for (case, eng), v in res.items():
    med = lambda i: statistics.median(x[i] for x in v)
    ratios = [x[0] / x[1] for x in v]
    print(f"| {case} | {eng} | {med(0):.2f} | {med(1):.2f} | {statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f}) | {med(2):.0f} | {med(3):.0f} | {med(4):.0f} |")
