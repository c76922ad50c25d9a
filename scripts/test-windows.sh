#!/usr/bin/env bash
# The Windows leg: cross-build ringport for x86_64-pc-windows-gnu, run the
# completion port's contract tests on IOCP under Wine, then serve with the
# Windows build (completion model, IOCP) and drive it from the Linux build:
# 100 connections x 500 messages, a 1 MiB message, a half-close and a reset.
# All traffic stays on 127.0.0.1.
#
# Exit status: 0 passed; 1 failed; 3 the Windows toolchain (rustup target,
# MinGW-w64, Wine) could not be installed, after one line
# "windows leg skipped: <reason>" (.ci/run then keeps the Linux result).
#
# Usage: scripts/test-windows.sh        (from anywhere; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET=x86_64-pc-windows-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
WIN_DIR="$TARGET_DIR/$TARGET/debug"
LINUX_RINGPORT="$TARGET_DIR/debug/ringport"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringport-windows.XXXXXX")
export WINEDEBUG=-all
# No Wine dialogs or desktop integration on a headless machine.
export WINEDLLOVERRIDES="winemenubuilder.exe=d;mscoree=d;mshtml=d"
SERVER_PID=

start=$(date +%s)
step() { echo "== windows: $* ($(($(date +%s) - start))s)"; }
fail() {
    echo "windows leg FAILED: $*" >&2
    exit 1
}
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

skip() {
    echo "windows leg skipped: $*"
    exit 3
}

# --- toolchain -------------------------------------------------------------
if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    rustup target add "$TARGET" >"$WORK/rustup.log" 2>&1 ||
        skip "rustup target add $TARGET failed: $(tail -n 1 "$WORK/rustup.log")"
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null || ! command -v wine >/dev/null ||
    ! command -v python3 >/dev/null; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        skip "MinGW-w64 or Wine is missing and apt-get cannot install them here"
    fi
    { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            gcc-mingw-w64-x86-64 wine64 python3; } >"$WORK/apt.log" 2>&1 ||
        skip "apt-get install gcc-mingw-w64-x86-64 wine64 failed: $(tail -n 1 "$WORK/apt.log")"
fi
command -v wine >/dev/null || skip "wine is not on PATH after installing wine64"

# --- build -----------------------------------------------------------------
step "cross-building ringport and the completion tests for $TARGET (debug)"
cargo build --locked --target "$TARGET" --bin ringport
cargo test --locked --target "$TARGET" -p ringport-completion -p ringport-server --no-run
step "building the Linux ringport (the load side)"
cargo build --locked --bin ringport

# Rust's std for windows-gnu imports ProcessPrng, which Wine 8 lacks: our
# shim provides it, and Windows looks for DLLs next to the .exe first.
step "building the bcryptprimitives.dll shim"
x86_64-w64-mingw32-gcc -shared -O2 -s -o "$WIN_DIR/bcryptprimitives.dll" \
    scripts/wine/bcryptprimitives.c -ladvapi32
cp "$WIN_DIR/bcryptprimitives.dll" "$WIN_DIR/deps/"

# --- Wine --------------------------------------------------------------------
# The first start creates the prefix (~/.wine), which takes a while. Then one
# wineserver is kept for the whole leg (it lingers 60 s after the last Wine
# process): a wine started just as a lingering server shuts down fails with
# "wine client error: recvmsg: Connection reset by peer".
step "preparing the Wine prefix"
timeout 300 wineboot -i >"$WORK/wineboot.log" 2>&1 || {
    cat "$WORK/wineboot.log" >&2
    fail "wineboot could not prepare the Wine prefix"
}
timeout 60 wineserver -w || true
wineserver -p60 || true

# --- unit and contract tests on IOCP ---------------------------------------
step "the completion port contract (crates/completion/tests/port.rs) and server unit tests under Wine"
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine \
    timeout 600 cargo test --locked --target "$TARGET" -p ringport-completion -p ringport-server ||
    fail "the Windows build's tests failed under Wine"

# --- the Windows server, driven from Linux ---------------------------------
step "starting wine ringport.exe serve --model completion"
wine "$WIN_DIR/ringport.exe" serve --model completion --listen 127.0.0.1:0 \
    </dev/null >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
ADDR=
for _ in $(seq 1 600); do
    ADDR=$(sed -n 's/^listening on //p' "$WORK/serve.out" | head -n 1)
    [ -n "$ADDR" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.2
done
[ -n "$ADDR" ] || {
    cat "$WORK/serve.out" "$WORK/serve.err" >&2
    fail "no 'listening on' line from the Windows server within 120 s"
}
echo "Windows server (pid $SERVER_PID) is listening on $ADDR"

step "Linux ringport stress: 100 connections x 500 messages"
timeout 300 "$LINUX_RINGPORT" stress "$ADDR" --connections 100 --count 500 \
    --timeout 60s --json "$WORK/stress.json" || fail "stress reported failures"
python3 - "$WORK/stress.json" <<'EOF' || fail "stress counts are wrong"
import json, sys
r = json.load(open(sys.argv[1]))
want = 100 * 500
ok = r["messages_verified"] == want and r["mismatches"] == 0 and r["errors"] == 0
print(f"verified {r['messages_verified']} of {want}, {r['mismatches']} mismatched, {r['errors']} errors")
sys.exit(0 if ok else 1)
EOF

step "a 1 MiB message, a half-close, a reset"
timeout 300 python3 - "$ADDR" <<'EOF' || fail "an edge case failed"
import os, socket, struct, sys, threading

host, port = sys.argv[1].rsplit(":", 1)
addr = (host, int(port))
TIMEOUT = 60

def connect():
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

# 1 MiB in one message: sent from a thread while this one reads, since the
# server stops reading once it holds 256 KiB the client has not taken back.
data = os.urandom(1 << 20)
s = connect()
sender = threading.Thread(target=s.sendall, args=(data,))
sender.start()
back = recv_exactly(s, len(data))
sender.join()
s.close()
assert back == data, "the 1 MiB echo differs"
print("1 MiB message: echoed intact")

# Half-close: everything sent before our FIN comes back, then the server's FIN.
s = connect()
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

# Reset: a client that vanishes with data in flight (SO_LINGER 0 sends RST).
# It reads a little first, so the server has surely accepted it and is echoing.
for _ in range(5):
    s = connect()
    s.sendall(b"x" * 65536)
    recv_exactly(s, 1024)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
s = connect()
s.sendall(b"still serving after resets")
assert recv_exactly(s, 26) == b"still serving after resets"
s.close()
print("reset: 5 clients reset mid-echo, the next client is still served")
EOF

step "Windows ringport client against the Windows server"
out=$(timeout 120 wine "$WIN_DIR/ringport.exe" client "$ADDR" --message "hello from Windows" \
    </dev/null 2>"$WORK/client.err") ||
    { cat "$WORK/client.err" >&2; fail "ringport.exe client failed"; }
[ "$(printf '%s' "$out" | tr -d '\r')" = "hello from Windows" ] || fail "ringport.exe client got '$out'"
echo "ringport.exe client: echoed"

# Wine turns SIGINT into a console Ctrl-C event, which the server handles
# like SIGINT on Linux: stop accepting, close every connection, print the summary.
step "stopping the server with Ctrl-C (SIGINT through Wine)"
kill -INT "$SERVER_PID"
for _ in $(seq 1 300); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    cat "$WORK/serve.err" >&2
    fail "the Windows server did not stop within 30 s of Ctrl-C"
fi
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
grep -q '^served ' "$WORK/serve.out" || {
    cat "$WORK/serve.out" "$WORK/serve.err" >&2
    fail "no summary line after Ctrl-C (exit status $status)"
}
[ "$status" -eq 0 ] || fail "the Windows server exited with status $status"
tr -d '\r' <"$WORK/serve.out" | grep '^served '

step "passed"
