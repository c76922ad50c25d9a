# Wine for the Windows legs (scripts/test-windows.sh, scripts/test-release.sh):
# source it, after defining `fail MESSAGE` and setting WORK to a scratch
# directory. It sets Wine's environment, and defines:
#
#   wine_shim DIR    build the bcryptprimitives.dll shim into DIR. Rust's std
#                    for windows-gnu imports ProcessPrng, which Wine 8 lacks;
#                    Windows looks for DLLs next to the .exe first.
#   wine_prefix      prepare the Wine prefix and keep one wineserver for the
#                    whole leg.

export WINEDEBUG=-all
# No Wine dialogs or desktop integration on a headless machine.
export WINEDLLOVERRIDES="winemenubuilder.exe=d;mscoree=d;mshtml=d"

wine_shim() {
    x86_64-w64-mingw32-gcc -shared -O2 -s -o "$1/bcryptprimitives.dll" \
        "$(dirname "${BASH_SOURCE[0]}")/bcryptprimitives.c" -ladvapi32
}

# The first start creates the prefix (~/.wine), which takes a while. Then one
# wineserver is kept for the whole leg, lingering 60 s after its last client:
# a wine started just as a short-lived server shuts down (3 s after its last
# client, by default) fails with "wine client error: recvmsg: Connection
# reset by peer". `wineserver -p60` refuses if a server already runs: then
# either wineboot's (gone within 3 s, so wait for it and start ours) or a
# persistent one from an earlier run (which wineboot just renewed: keep it).
wine_prefix() {
    timeout 300 wineboot -i >"$WORK/wineboot.log" 2>&1 || {
        cat "$WORK/wineboot.log" >&2
        fail "wineboot could not prepare the Wine prefix"
    }
    if ! wineserver -p60 2>/dev/null; then
        timeout 10 wineserver -w || true
        wineserver -p60 2>/dev/null || true
    fi
}
