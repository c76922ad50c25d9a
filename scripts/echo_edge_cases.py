#!/usr/bin/env python3
"""Edge cases of an echo server at ADDR, checked from a plain socket client.

Used by scripts/test-windows.sh to drive the Windows build (under Wine) from
Linux, where `ringport stress` cannot express them: one message larger than
any buffer, a half-close, and clients that reset mid-echo.

Usage: echo_edge_cases.py HOST:PORT CHECK...   with CHECK among big, half,
reset, slow, stall. With SERVER_PID set in the environment, `slow` also
checks the server's resident memory (/proc/PID/status; a Wine process is a
Linux one), and `stall` its CPU time (and wineserver's, where one runs).
Exits non-zero on the first failure. Talks to ADDR only (give it loopback).
"""
import os
import socket
import struct
import sys
import threading
import time

TIMEOUT = 60


def connect(addr):
    s = socket.create_connection(addr, timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exactly(s, n):
    got = bytearray()
    while len(got) < n:
        chunk = s.recv(min(1 << 16, n - len(got)))
        if not chunk:
            raise SystemExit(f"EOF after {len(got)} of {n} bytes")
        got += chunk
    return bytes(got)


def big(addr):
    # 1 MiB in one message, sent from a thread while this one reads: the
    # server stops reading once it holds 256 KiB the client has not taken
    # back, so sending everything first would deadlock.
    data = os.urandom(1 << 20)
    s = connect(addr)
    sender = threading.Thread(target=s.sendall, args=(data,))
    sender.start()
    back = recv_exactly(s, len(data))
    sender.join()
    s.close()
    assert back == data, "the 1 MiB echo differs"
    print("1 MiB message: echoed intact")


def half(addr):
    # Everything sent before our FIN comes back, then the server's FIN.
    s = connect(addr)
    msg = b"half-close: all of this must come back before EOF\n" * 2000
    s.sendall(msg)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        got += chunk
    s.close()
    assert bytes(got) == msg, f"half-close: got {len(got)} of {len(msg)} bytes"
    print(f"half-close: {len(msg)} bytes back, then EOF")


def reset(addr):
    # Clients that vanish with data in flight (SO_LINGER 0 sends RST). Each
    # reads a little first, so the server has surely accepted it and is
    # echoing when the reset lands.
    for _ in range(5):
        s = connect(addr)
        s.sendall(b"x" * 65536)
        recv_exactly(s, 1024)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    s = connect(addr)
    msg = b"still serving after resets"
    s.sendall(msg)
    assert recv_exactly(s, len(msg)) == msg
    s.close()
    print("reset: 5 clients reset mid-echo, the next client is still served")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit(f"no VmRSS for pid {pid}")


def slow(addr):
    # A client that sends and never reads: the server must stop reading it
    # at its cap (256 KiB held) instead of buffering without bound, and keep
    # serving everyone else.
    pid = os.environ.get("SERVER_PID")
    warm = connect(addr)
    warm.sendall(b"warm")
    recv_exactly(warm, 4)
    before = rss_kib(pid) if pid else 0
    hog = connect(addr)
    hog.setblocking(False)
    chunk = b"Z" * (1 << 20)
    sent, stalled, deadline = 0, None, time.time() + 30
    while sent < 64 << 20 and time.time() < deadline:
        try:
            sent += hog.send(chunk)
            stalled = None
        except BlockingIOError:
            stalled = stalled or time.time()
            if time.time() - stalled > 1:
                break
            time.sleep(0.005)
    other = connect(addr)
    other.sendall(b"still serving")
    assert recv_exactly(other, 13) == b"still serving"
    other.close()
    grew = (rss_kib(pid) - before) >> 10 if pid else None
    if grew is not None:
        assert grew < 64, f"the server grew by {grew} MiB holding unread bytes"
    hog.close()
    warm.close()
    memory = f", server memory grew {grew} MiB" if grew is not None else ""
    print(f"slow reader: stalled after {sent >> 20} MiB{memory}; others still served")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stall_pattern(i, start, n):
    # Each connection's own stream: a byte sent to the wrong one is caught.
    block = bytes((j * 131 + i * 7) & 0xFF for j in range(251))
    rot = block[start % 251:] + block[:start % 251]
    reps = n // 251 + 2
    return (rot * reps)[:n]


def stall(addr, per_state=20, flood=4 << 20, window=2.0):
    # Peers that stop moving must cost the server nothing: PER_STATE peers
    # flood up to 4 MiB and half-close without reading, as many flood and
    # stay open, as many half-close at once and never read. The server's
    # (and wineserver's) CPU is read over WINDOW seconds, then every peer
    # reads and must get back every byte it sent, then end of stream.
    pid = os.environ.get("SERVER_PID")
    peers = []
    for i, state in enumerate(["half"] * per_state + ["paused"] * per_state + ["finned"] * per_state):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.settimeout(TIMEOUT)
        s.connect(addr)
        s.setblocking(False)
        if state == "finned":
            s.shutdown(socket.SHUT_WR)
        peers.append({"s": s, "state": state, "i": i, "sent": 0, "read": 0, "eof": False})
    floods = [p for p in peers if p["state"] != "finned"]
    still, deadline = time.time(), time.time() + TIMEOUT
    while time.time() - still < 0.5 and time.time() < deadline:
        moved = False
        for p in floods:
            want = min(flood - p["sent"], 1 << 16)
            if want <= 0:
                continue
            try:
                n = p["s"].send(stall_pattern(p["i"], p["sent"], want))
                p["sent"] += n
                moved = moved or n > 0
            except BlockingIOError:
                pass
        if moved:
            still = time.time()
        else:
            time.sleep(0.02)
    for p in peers:
        if p["state"] == "half":
            p["s"].shutdown(socket.SHUT_WR)
    time.sleep(1)
    pids = [pid] if pid else []
    try:
        pids += os.popen("pgrep wineserver").read().split()
    except OSError:
        pass
    before = {q: cpu_seconds(q) for q in pids}
    t0 = time.time()
    time.sleep(window)
    busy = {q: (cpu_seconds(q) - before[q]) / (time.time() - t0) for q in pids}
    for q, b in busy.items():
        assert b <= 0.05, f"process {q} used {b:.1%} of a core while no peer could move"
    for p in peers:
        if p["state"] == "paused":
            p["s"].shutdown(socket.SHUT_WR)
    deadline = time.time() + 2 * TIMEOUT
    while any(not p["eof"] for p in peers):
        assert time.time() < deadline, "stall: peers still owed bytes after reading for 120 s"
        moved = False
        for p in peers:
            if p["eof"]:
                continue
            try:
                chunk = p["s"].recv(1 << 18)
            except BlockingIOError:
                continue
            if not chunk:
                assert p["read"] == p["sent"], f"stall: peer {p['i']} ({p['state']}) got EOF after {p['read']} of {p['sent']} bytes"
                p["eof"] = True
                p["s"].close()
                continue
            assert chunk == stall_pattern(p["i"], p["read"], len(chunk)), f"stall: peer {p['i']} got wrong bytes at {p['read']}"
            p["read"] += len(chunk)
            moved = True
        if not moved:
            time.sleep(0.005)
    sent = sum(p["sent"] for p in peers) >> 20
    cpu = ", ".join(f"pid {q} {b:.1%}" for q, b in busy.items()) or "not measured (no SERVER_PID)"
    print(f"stall: {len(peers)} stalled peers ({sent} MiB sent): CPU {cpu}; then every byte came back")


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    host, port = sys.argv[1].rsplit(":", 1)
    addr = (host.strip("[]"), int(port))
    checks = {"big": big, "half": half, "reset": reset, "slow": slow, "stall": stall}
    for name in sys.argv[2:]:
        checks[name](addr)


if __name__ == "__main__":
    main()
