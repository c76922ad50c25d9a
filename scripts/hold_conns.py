#!/usr/bin/env python3
"""Hold N connections open on an echo server, each echoing one short message
every PERIOD seconds, and report the server's resident memory per connection.

Used by hold-10k.sh. `ringport stress` drives every connection as fast as it
can; this holds many mostly-idle connections at a fixed, low total rate,
which is what "memory per idle connection" needs. Every echo is checked.

Prints one JSON object: rss_before_kib, rss_held_kib (all connected, each
echoed once, idle), rss_end_kib, per_conn_kib, echoes, mismatches, errors.
"""
import argparse
import json
import selectors
import socket
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--pid", type=int, required=True, help="server pid, for VmRSS")
    p.add_argument("--connections", type=int, default=10000)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--period", type=float, default=5.0, help="seconds between echoes per connection")
    p.add_argument("--settle", type=float, default=2.0, help="idle seconds before the memory sample")
    a = p.parse_args()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)

    before = rss_kib(a.pid)
    sel = selectors.DefaultSelector()
    conns = []
    for i in range(a.connections):
        s = socket.create_connection((host, port), timeout=30)
        s.setblocking(False)
        conns.append(s)
    # state per connection: expected bytes outstanding, buffer read so far
    pending = [b""] * len(conns)
    got = [b""] * len(conns)
    for i, s in enumerate(conns):
        sel.register(s, selectors.EVENT_READ, i)
    stats = {"echoes": 0, "mismatches": 0, "errors": 0}

    def send(i, k):
        msg = f"{k}. conn {i} - hold\n".encode()
        try:
            conns[i].sendall(msg)  # short: always fits the socket buffer
        except OSError:
            stats["errors"] += 1
            return
        pending[i] += msg

    def pump(deadline):
        while time.monotonic() < deadline:
            events = sel.select(timeout=max(0.0, min(0.05, deadline - time.monotonic())))
            if not events:
                return
            for key, _ in events:
                i = key.data
                try:
                    data = conns[i].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    stats["errors"] += 1
                    sel.unregister(conns[i])
                    continue
                if not data:
                    stats["errors"] += 1
                    sel.unregister(conns[i])
                    continue
                got[i] += data
                while pending[i] and len(got[i]) >= len(pending[i].split(b"\n", 1)[0]) + 1:
                    want = pending[i].split(b"\n", 1)[0] + b"\n"
                    have, got[i] = got[i][: len(want)], got[i][len(want):]
                    pending[i] = pending[i][len(want):]
                    stats["echoes"] += 1
                    if have != want:
                        stats["mismatches"] += 1

    # Every connection echoes once, then all sit idle for the sample.
    for i in range(len(conns)):
        send(i, 0)
    end = time.monotonic() + 60
    while any(pending) and time.monotonic() < end:
        pump(time.monotonic() + 0.5)
    time.sleep(a.settle)
    held = rss_kib(a.pid)

    # Then each echoes one message every PERIOD seconds, spread evenly.
    n = len(conns)
    start = time.monotonic()
    k = 1
    next_i = 0
    while time.monotonic() - start < a.duration:
        elapsed = time.monotonic() - start
        due = int(elapsed / a.period * n)  # messages due so far in total
        while next_i < due:
            send(next_i % n, k + next_i // n)
            next_i += 1
        pump(time.monotonic() + 0.01)
    end = time.monotonic() + 30
    while any(pending) and time.monotonic() < end:
        pump(time.monotonic() + 0.5)
    unanswered = sum(1 for x in pending if x)
    result = {
        "connections": n,
        "rss_before_kib": before,
        "rss_held_kib": held,
        "rss_end_kib": rss_kib(a.pid),
        "per_conn_kib": round((held - before) / n, 2),
        "echoes": stats["echoes"],
        "mismatches": stats["mismatches"],
        "errors": stats["errors"] + unanswered,
    }
    print(json.dumps(result))
    for s in conns:
        s.close()
    ok = result["mismatches"] == 0 and result["errors"] == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
