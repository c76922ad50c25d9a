#!/usr/bin/env bash
# The Windows leg: cross-build ringport for x86_64-pc-windows-gnu, run the
# completion port's contract tests on IOCP under Wine, then serve with the
# Windows build (completion model, IOCP) and drive it from the Linux build:
# 100 connections x 500 messages, a 1 MiB message, a half-close, resets,
# 60 peers stalled in three states (the server must not spin on them), the
# Windows client, and a Ctrl-C shutdown. Every other model the binary offers
# gets a shorter pass. All traffic stays on 127.0.0.1.
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
# Wine's environment, wine_shim and wine_prefix.
source scripts/wine/setup.sh

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

# The tests run from deps/, ringport.exe from its own directory.
step "building the bcryptprimitives.dll shim"
wine_shim "$WIN_DIR"
cp "$WIN_DIR/bcryptprimitives.dll" "$WIN_DIR/deps/"

step "preparing the Wine prefix"
wine_prefix

# --- unit and contract tests on IOCP ---------------------------------------
step "the completion port contract (crates/completion/tests/port.rs) and server unit tests under Wine"
CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine \
    timeout 600 cargo test --locked --target "$TARGET" -p ringport-completion -p ringport-server ||
    fail "the Windows build's tests failed under Wine"

# --- the Windows server, driven from Linux ---------------------------------
# Start `wine ringport.exe serve --model $1` and wait for its listening line;
# sets SERVER_PID and ADDR.
start_server() {
    wine "$WIN_DIR/ringport.exe" serve --model "$1" --listen 127.0.0.1:0 \
        </dev/null >"$WORK/serve.out" 2>"$WORK/serve.err" &
    SERVER_PID=$!
    ADDR=
    for _ in $(seq 1 600); do
        ADDR=$(sed -n 's/^listening on //p' "$WORK/serve.out" | tr -d '\r' | head -n 1)
        [ -n "$ADDR" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.2
    done
    [ -n "$ADDR" ] || {
        cat "$WORK/serve.out" "$WORK/serve.err" >&2
        fail "$1: no 'listening on' line from the Windows server within 120 s"
    }
    echo "Windows $1 server (pid $SERVER_PID) is listening on $ADDR"
}

# Wine turns SIGINT into a console Ctrl-C event, which the server handles
# like SIGINT on Linux: stop accepting, close every connection, print the
# summary, exit 0. (Wine then takes a second or two to end the process; the
# wait allows 30 s.)
stop_server() {
    kill -INT "$SERVER_PID"
    for _ in $(seq 1 300); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        cat "$WORK/serve.err" >&2
        fail "$1: the Windows server did not stop within 30 s of Ctrl-C"
    fi
    local status=0
    wait "$SERVER_PID" || status=$?
    SERVER_PID=
    grep -q '^served ' "$WORK/serve.out" || {
        cat "$WORK/serve.out" "$WORK/serve.err" >&2
        fail "$1: no summary line after Ctrl-C (exit status $status)"
    }
    [ "$status" -eq 0 ] || fail "$1: the Windows server exited with status $status"
    tr -d '\r' <"$WORK/serve.out" | grep '^served '
}

# `stress MODEL CONNECTIONS COUNT`: the Linux ringport stress; every message
# must come back verified.
stress() {
    timeout 300 "$LINUX_RINGPORT" stress "$ADDR" --connections "$2" --count "$3" \
        --timeout 60s --json "$WORK/stress.json" >"$WORK/stress.out" 2>&1 || {
        cat "$WORK/stress.out" >&2
        fail "$1: stress reported failures"
    }
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
want = int(sys.argv[2])
got = (r["messages_verified"], r["mismatches"], r["errors"])
print("stress: verified %d of %d, %d mismatched, %d errors" % (got[0], want, got[1], got[2]))
sys.exit(0 if got == (want, 0, 0) else 1)
' "$WORK/stress.json" "$(($2 * $3))" || fail "$1: stress counts are wrong"
}

# `edge MODEL CHECK...`: big (1 MiB), half (half-close), reset, slow (a
# client that never reads).
edge() {
    local model=$1
    shift
    SERVER_PID=$SERVER_PID timeout 300 python3 scripts/echo_edge_cases.py "$ADDR" "$@" ||
        fail "$model: an edge case failed"
}

step "completion (IOCP): Linux ringport stress, 100 connections x 500 messages"
start_server completion
stress completion 100 500
step "completion (IOCP): a 1 MiB message, a half-close, resets, a client that never reads, stalled peers"
edge completion big half reset slow stall
step "completion (IOCP): the Windows ringport client"
out=$(timeout 120 wine "$WIN_DIR/ringport.exe" client "$ADDR" --message "hello from Windows" \
    </dev/null 2>"$WORK/client.err") || {
    cat "$WORK/client.err" >&2
    fail "ringport.exe client failed"
}
[ "$(printf '%s' "$out" | tr -d '\r')" = "hello from Windows" ] || fail "ringport.exe client got '$out'"
echo "ringport.exe client: echoed"
step "completion (IOCP): Ctrl-C (SIGINT through Wine)"
stop_server completion

# Every other model the binary offers gets a shorter pass. The list is the
# binary's own, from its answer to an unknown model name.
# (It exits 2 for the unknown name, hence the `|| true`.)
models=$({ wine "$WIN_DIR/ringport.exe" serve --model '?' </dev/null 2>&1 || true; } |
    tr -d '\r' | sed -n 's/.*valid models: //p' | sed 's/ (.*//' | tr -d ',')
[ -n "$models" ] || fail "ringport.exe did not list its models"
for model in $models; do
    case $model in
    completion | auto) continue ;;
    blocking) conns=1 ;; # one client at a time, by design
    *) conns=20 ;;
    esac
    step "$model: stress $conns x 200, a half-close, resets, Ctrl-C"
    start_server "$model"
    stress "$model" "$conns" 200
    edge "$model" half reset
    stop_server "$model"
done

step "passed"
