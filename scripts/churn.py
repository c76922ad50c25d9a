#!/usr/bin/env python3
"""Connection churn for soak.sh: for DURATION seconds, open a connection,
echo one message (checked), and close it, over and over; every tenth one is
reset (SO_LINGER 0) right after sending instead, and every tenth one leaves
its echo unread. Prints one JSON object: connections, echoes, mismatches,
errors.
"""
import argparse
import json
import socket
import struct
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--duration", type=float, default=60.0)
    a = p.parse_args()
    host, port = a.addr.rsplit(":", 1)
    port = int(port)
    stats = {"connections": 0, "echoes": 0, "mismatches": 0, "errors": 0}
    end = time.monotonic() + a.duration
    i = 0
    while time.monotonic() < end:
        i += 1
        msg = f"churn {i} ".encode() * (1 + i % 50)
        try:
            s = socket.create_connection((host, port), timeout=30)
            stats["connections"] += 1
            s.sendall(msg)
            if i % 10 == 3:
                # Reset in the middle: the server must not mind.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                continue
            if i % 10 == 7:
                # Vanish with the echo unread.
                s.close()
                continue
            back = b""
            while len(back) < len(msg):
                chunk = s.recv(65536)
                if not chunk:
                    break
                back += chunk
            stats["echoes"] += 1
            if back != msg:
                stats["mismatches"] += 1
            s.close()
        except OSError:
            stats["errors"] += 1
    print(json.dumps(stats))
    sys.exit(0 if stats["mismatches"] == 0 and stats["errors"] == 0 else 1)


if __name__ == "__main__":
    main()
