#!/usr/bin/env bash
# The release leg: build the archives with scripts/release.sh, check their
# sums and contents, then run what is inside them as a user would.
#
# Linux: the musl binary must be static, and run with nothing around it: an
# empty environment (env -i) in an empty directory, inside a chroot holding
# only the binary where this runs as root. There it serves every model it
# offers (completion must hold io_uring instances) and passes a short
# `stress` from the same binary.
# Windows: ringport.exe must import only system DLLs; under Wine it prints
# its version and serves (completion, IOCP) a short stress from Linux.
# All traffic stays on 127.0.0.1; every wait has a timeout.
#
# Exit status: 0 passed; 1 failed; 3 a toolchain (musl, MinGW-w64, Wine)
# could not be installed, after one line "release leg skipped: <reason>"
# (.ci/run then keeps the other legs' result).
#
# Usage: scripts/test-release.sh        (from anywhere; installs what it needs)
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringport-release-test.XXXXXX")
SERVER_PID=

start=$(date +%s)
step() { echo "== release: $* ($(($(date +%s) - start))s)"; }
fail() {
    echo "release leg FAILED: $*" >&2
    exit 1
}
skip() {
    echo "release leg skipped: $*"
    exit 3
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

# --- build the archives ----------------------------------------------------
step "scripts/release.sh --out $WORK/dist"
status=0
bash scripts/release.sh --out "$WORK/dist" >"$WORK/release.log" 2>&1 || status=$?
case $status in
0) ;;
3) skip "$(sed -n 's/^release skipped: //p' "$WORK/release.log")" ;;
*)
    tail -n 40 "$WORK/release.log" >&2
    fail "scripts/release.sh exited with status $status"
    ;;
esac
DIST=$WORK/dist
VERSION=$(cargo pkgid --offline -p ringport)
VERSION=${VERSION##*[#@]}
LINUX=ringport-$VERSION-x86_64-unknown-linux-musl
WINDOWS=ringport-$VERSION-x86_64-pc-windows-gnu

step "SHA256SUMS"
(cd "$DIST" && sha256sum -c SHA256SUMS) || fail "sha256sum -c SHA256SUMS failed"
[ "$(wc -l <"$DIST/SHA256SUMS")" -eq 2 ] || fail "SHA256SUMS should name the two archives"

# `contents LISTING DIR EXE`: the archive holds exactly DIR/ with the binary,
# the README and both licences.
contents() {
    local want
    want=$(printf '%s\n' "$2/" "$2/LICENSE-APACHE" "$2/LICENSE-MIT" "$2/README.md" "$2/$3")
    [ "$(LC_ALL=C sort <<<"$1")" = "$want" ] || {
        printf 'got:\n%s\nwant:\n%s\n' "$1" "$want" >&2
        fail "$2: unexpected archive contents"
    }
}
contents "$(tar -tzf "$DIST/$LINUX.tar.gz")" "$LINUX" ringport
# (Python's zipfile, as unzip may be missing.)
unzip_py() { python3 -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print("\n".join(z.namelist())) if len(sys.argv) == 2 else z.extractall(sys.argv[2])' "$@"; }
contents "$(unzip_py "$DIST/$WINDOWS.zip")" "$WINDOWS" ringport.exe

# --- Linux -------------------------------------------------------------------
step "Linux: unpack, check that the binary is static"
mkdir "$WORK/linux"
tar -C "$WORK/linux" -xzf "$DIST/$LINUX.tar.gz"
BIN=$WORK/linux/$LINUX/ringport
# Static (or static-pie): no program interpreter, no shared library needed.
readelf -lW "$BIN" | grep -q 'INTERP' && fail "the musl binary asks for a program interpreter"
readelf -dW "$BIN" | grep -q '(NEEDED)' && fail "the musl binary needs shared libraries"
file "$BIN" 2>/dev/null || true

# Where chroot works (as root), a chroot holding the binary alone: no /lib,
# /etc, /proc or /dev. Elsewhere, an empty directory as the working directory.
ROOT=$WORK/root
mkdir "$ROOT"
cp "$BIN" "$ROOT/ringport"
if [ "$(id -u)" -eq 0 ] && command -v chroot >/dev/null &&
    timeout 30 env -i "$(command -v chroot)" "$ROOT" /ringport --version >/dev/null 2>&1; then
    BARE=(env -i "$(command -v chroot)" "$ROOT" /ringport)
    echo "running in a chroot of $ROOT, which holds /ringport alone, with env -i"
else
    # (A container may deny chroot even to root.)
    rm "$ROOT/ringport"
    BARE=(env -i "$BIN")
    echo "running $BIN with env -i in the empty directory $ROOT (no chroot here)"
fi
# `run_bare ARGS...` in a subshell keeps one process from the subshell to
# ringport (exec all the way), so `$!` of `run_bare ... &` is the server.
run_bare() { cd "$ROOT" && exec "${BARE[@]}" "$@"; }

out=$(cd "$ROOT" && timeout 30 "${BARE[@]}" --version) || fail "ringport --version failed"
[ "$out" = "ringport $VERSION" ] || fail "ringport --version printed '$out', not 'ringport $VERSION'"
echo "$out"

# `serve_bare MODEL`: start the bare server; sets SERVER_PID and ADDR.
serve_bare() {
    # Emptied here, not by the redirection below: that one runs in the child,
    # after the loop may have read the last model's address.
    : >"$WORK/serve.out"
    (run_bare serve --model "$1" --listen 127.0.0.1:0) </dev/null >"$WORK/serve.out" 2>"$WORK/serve.err" &
    SERVER_PID=$!
    await_listening 100 0.1 "$1: no 'listening on' line from the musl server within 10 s"
}

# `await_listening TRIES INTERVAL FAILURE`: wait for the server started as
# SERVER_PID to print "listening on ADDR" into serve.out, and set ADDR; stop
# early if it exits, and fail with FAILURE (after its output) when no
# address came.
await_listening() {
    ADDR=
    for _ in $(seq 1 "$1"); do
        # Wine's console output ends lines with CR LF.
        ADDR=$(sed -n 's/^listening on //p' "$WORK/serve.out" | tr -d '\r' | head -n 1)
        [ -n "$ADDR" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep "$2"
    done
    [ -n "$ADDR" ] || {
        cat "$WORK/serve.out" "$WORK/serve.err" >&2
        fail "$3"
    }
}

# `stress_bare MODEL CONNECTIONS COUNT SIZE`: the bare binary's stress; every
# message must come back verified (its exit status says so).
stress_bare() {
    (cd "$ROOT" && exec timeout 120 "${BARE[@]}" stress "$ADDR" -c "$2" -n "$3" --size "$4" --timeout 30s) \
        </dev/null >"$WORK/stress.out" 2>&1 || {
        cat "$WORK/stress.out" >&2
        fail "$1: stress $2 x $3 x $4 B failed"
    }
    echo "$1 $2 x $3 x $4 B: $(grep '^messages' "$WORK/stress.out")"
}

stop_bare() {
    kill -INT "$SERVER_PID"
    local status=0
    timeout 30 tail --pid="$SERVER_PID" -f /dev/null || fail "$1: the server did not stop within 30 s of SIGINT"
    wait "$SERVER_PID" || status=$?
    SERVER_PID=
    [ "$status" -eq 0 ] || fail "$1: the server exited with status $status"
    grep '^served ' "$WORK/serve.out" || fail "$1: no summary line after SIGINT"
}

models=$({ (run_bare serve --model '?') </dev/null 2>&1 || true; } |
    sed -n 's/.*valid models: //p' | sed 's/ (.*//' | tr -d ',')
[ -n "$models" ] || fail "the musl ringport did not list its models"
echo "models: $models"
case " $models " in
*" completion "*) ;;
*) fail "the musl ringport lacks the completion model" ;;
esac
for model in $models; do
    [ "$model" = auto ] && continue
    step "Linux: $model, served and stressed by the bare musl binary"
    serve_bare "$model"
    if [ "$model" = completion ]; then
        # Each worker of the completion model owns an io_uring instance.
        rings=$(find "/proc/$SERVER_PID/fd" -lname 'anon_inode:\[io_uring\]' 2>/dev/null | wc -l)
        [ "$rings" -gt 0 ] || fail "completion: the musl server holds no io_uring instance"
        echo "completion: the server holds $rings io_uring instances"
    fi
    conns=16
    [ "$model" = blocking ] && conns=1 # one client at a time, by design
    stress_bare "$model" "$conns" 500 64
    stress_bare "$model" "$conns" 20 65536
    stop_bare "$model"
done

# --- Windows -----------------------------------------------------------------
step "Windows: unpack, check the imports"
mkdir "$WORK/windows"
unzip_py "$DIST/$WINDOWS.zip" "$WORK/windows"
EXE_DIR=$WORK/windows/$WINDOWS
# Only DLLs every Windows has: no MinGW runtime (libgcc_s, libwinpthread).
dlls=$(x86_64-w64-mingw32-objdump -p "$EXE_DIR/ringport.exe" | sed -n 's/^\s*DLL Name: //p' | tr 'A-Z' 'a-z' | sort -u)
echo "imports:" $dlls
for dll in $dlls; do
    case $dll in
    kernel32.dll | ntdll.dll | ws2_32.dll | advapi32.dll | bcryptprimitives.dll | userenv.dll | \
        msvcrt.dll | api-ms-win-*.dll | mswsock.dll | user32.dll | shell32.dll | ole32.dll | \
        oleaut32.dll | secur32.dll | crypt32.dll | bcrypt.dll | iphlpapi.dll | synchronization.dll) ;;
    *) fail "ringport.exe imports $dll, which Windows does not ship" ;;
    esac
done

if ! command -v wine >/dev/null; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        skip "Wine is missing and apt-get cannot install it here (the archives were built and the Linux one passed)"
    fi
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wine64; } \
        >"$WORK/apt.log" 2>&1 ||
        skip "apt-get install wine64 failed: $(tail -n 1 "$WORK/apt.log") (the Linux archive passed)"
fi
command -v wine >/dev/null || skip "wine is not on PATH after installing wine64 (the Linux archive passed)"

# Wine 8 lacks ProcessPrng (scripts/wine/bcryptprimitives.c); the shim goes
# next to the unpacked .exe for this test only, never into the archive.
step "Windows: the Wine prefix and the bcryptprimitives.dll shim"
wine_shim "$EXE_DIR"
wine_prefix

step "Windows: ringport.exe --version under Wine"
out=$(cd "$EXE_DIR" && timeout 120 wine ./ringport.exe --version </dev/null 2>"$WORK/wine.err" | tr -d '\r') || {
    cat "$WORK/wine.err" >&2
    fail "ringport.exe --version failed under Wine"
}
[ "$out" = "ringport $VERSION" ] || fail "ringport.exe --version printed '$out'"
echo "$out"

step "Windows: ringport.exe serve --model completion (IOCP), stressed by the musl binary"
: >"$WORK/serve.out"
(cd "$EXE_DIR" && exec wine ./ringport.exe serve --model completion --listen 127.0.0.1:0) \
    </dev/null >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
await_listening 600 0.2 "no 'listening on' line from ringport.exe within 120 s"
stress_bare windows-completion 16 200 64
# Wine turns SIGINT into a console Ctrl-C event (see scripts/test-windows.sh).
kill -INT "$SERVER_PID"
timeout 30 tail --pid="$SERVER_PID" -f /dev/null || fail "ringport.exe did not stop within 30 s of Ctrl-C"
status=0
wait "$SERVER_PID" || status=$?
SERVER_PID=
[ "$status" -eq 0 ] || fail "ringport.exe exited with status $status"
tr -d '\r' <"$WORK/serve.out" | grep '^served ' || fail "ringport.exe printed no summary after Ctrl-C"

step "passed"
