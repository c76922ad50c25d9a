#!/usr/bin/env python3
"""Slow readers against one server model: memory per connection, and whether
it is given back.

Starts `ringport serve --model MODEL --listen 127.0.0.1:0`, takes its VmRSS
after one echo, then runs ROUNDS rounds: CONNECTIONS connections each send up
to EACH MiB (non-blocking) and read one byte a second for ROUND_SECS, then all
close. VmRSS is sampled once a second during the rounds and every 0.5 s for
10 s after the last client left; then a new client must get its echo.
Loopback only. Prints one line per round and a summary line.

    scripts/slow-readers.py epoll
    scripts/slow-readers.py completion --connections 500 --rounds 8
    scripts/slow-readers.py epoll --binary /tmp/old-ringport -- --workers 2
"""
import argparse
import os
import socket
import subprocess
import sys
import time


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--binary", default=os.path.join(here, "..", "target", "release", "ringport"))
    p.add_argument("--connections", type=int, default=500)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--round-secs", type=float, default=3.0)
    p.add_argument("--each-mib", type=float, default=8.0)
    p.add_argument("serve_args", nargs="*", help="more `ringport serve` arguments, after --")
    a = p.parse_args()
    each = int(a.each_mib * (1 << 20))

    srv = subprocess.Popen(
        [a.binary, "serve", "--model", a.model, "--listen", "127.0.0.1:0", *a.serve_args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    addr = None
    for line in srv.stdout:
        if line.startswith("listening on "):
            host, port = line.split()[-1].rsplit(":", 1)
            addr = (host, int(port))
            break
    if addr is None:
        sys.exit(f"{a.model}: the server did not start")

    def rss_kib():
        with open(f"/proc/{srv.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def round_trip(msg):
        with socket.create_connection(addr, timeout=10) as s:
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = s.recv(len(msg) - len(got))
                if not d:
                    break
                got += d
        return got == msg

    try:
        assert round_trip(b"warm"), "no echo"
        time.sleep(0.5)
        before = rss_kib()
        peak = before
        chunk = bytes(range(256)) * 256  # 64 KiB
        for r in range(a.rounds):
            conns = []
            for _ in range(a.connections):
                s = socket.create_connection(addr, timeout=10)
                s.setblocking(False)
                conns.append(s)
            sent = [0] * len(conns)
            start = time.monotonic()
            next_read = start
            while time.monotonic() - start < a.round_secs:
                progressed = False
                for i, s in enumerate(conns):
                    if sent[i] >= each:
                        continue
                    try:
                        sent[i] += s.send(chunk[: min(len(chunk), each - sent[i])])
                        progressed = True
                    except BlockingIOError:
                        pass
                if time.monotonic() >= next_read:
                    next_read += 1.0
                    for s in conns:
                        try:
                            s.recv(1)
                        except BlockingIOError:
                            pass
                    peak = max(peak, rss_kib())
                if not progressed:
                    time.sleep(0.01)
            now = rss_kib()
            peak = max(peak, now)
            print(f"{a.model}: round {r + 1}: sent {sum(sent) >> 20} MiB, VmRSS {now / 1024:.1f} MiB",
                  flush=True)
            for s in conns:
                s.close()
        left = time.monotonic()
        samples = []
        while time.monotonic() - left < 10:
            time.sleep(0.5)
            samples.append((time.monotonic() - left, rss_kib()))
        after5 = [v for t, v in samples if t <= 5.2][-1]
        after10 = samples[-1][1]
        served = round_trip(b"still serving after the slow readers")
        print(f"{a.model}: before {before / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB "
              f"(+{(peak - before) / a.connections:.0f} KiB per connection), "
              f"5 s after {after5 / 1024:.1f} MiB, 10 s after {after10 / 1024:.1f} MiB, "
              f"new client served: {'yes' if served else 'NO'}", flush=True)
    finally:
        srv.kill()
        srv.wait()


if __name__ == "__main__":
    main()
