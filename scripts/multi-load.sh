#!/usr/bin/env bash
# Two load generators on one machine, as if on two: a tested recipe for
# docs/SCALE.md.
#
#   * two network namespaces, each with its own veth pair to the root
#     namespace, addressed in 10.213.141.0/29 (a private test subnet that
#     exists only on these veths; the script refuses to run if any of it is
#     in use):
#         root side A 10.213.141.1/30  <->  namespace A 10.213.141.2/30
#         root side B 10.213.141.5/30  <->  namespace B 10.213.141.6/30
#     each namespace's only route leads to its root-side address, so the
#     traffic stays between these namespaces on this machine;
#   * one `ringport serve` in the root namespace, bound to 10.213.141.1
#     (namespace B reaches it through its own veth: the root namespace
#     delivers to any of its addresses);
#   * one `ringport stress --start-at T --hdr-log …` per namespace, both
#     given the same T a few seconds ahead;
#   * `ringport merge` of the two logs, and a check that the merged totals
#     equal the sum of the two reports (and that the two starts agree).
#
# Needs root, iproute2 and python3 (to read the JSON). Cleans up on any
# exit, Ctrl-C included: processes, namespaces, veths. Every step is
# bounded with `timeout`.
#
#   sudo scripts/multi-load.sh
#   sudo RINGPORT=path/to/ringport RATE=2000 DURATION=3 scripts/multi-load.sh
#   KEEP=1 …   keeps the logs and reports (their directory is printed)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "multi-load.sh: needs root (it creates network namespaces and veth pairs); run it with sudo" >&2
    exit 1
fi
for tool in ip timeout python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "multi-load.sh: $tool is missing" >&2; exit 1; }
done
RINGPORT=${RINGPORT:-${CARGO_TARGET_DIR:-target}/release/ringport}
if [ ! -x "$RINGPORT" ] && [ -x "${CARGO_TARGET_DIR:-target}/debug/ringport" ]; then
    RINGPORT=${CARGO_TARGET_DIR:-target}/debug/ringport
fi
[ -x "$RINGPORT" ] || { echo "multi-load.sh: no $RINGPORT: run cargo build --release first" >&2; exit 1; }
RINGPORT=$(cd "$(dirname "$RINGPORT")" && pwd)/$(basename "$RINGPORT")
RATE=${RATE:-2000}           # messages per second, per generator
DURATION=${DURATION:-3}      # measured seconds
CONNECTIONS=${CONNECTIONS:-8}
AHEAD=${AHEAD:-3}            # seconds from now to the common start
PORT=5150
SERVER=10.213.141.1

if ip -4 addr show | grep -q ' 10\.213\.141\.'; then
    echo "multi-load.sh: 10.213.141.0/29 is already in use on this machine; not touching it" >&2
    exit 1
fi

tag=rp$$
ns_a=$tag-a ns_b=$tag-b
out=$(mktemp -d)
pids=()
ok=0
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    for ns in "$ns_a" "$ns_b"; do timeout 10 ip netns del "$ns" 2>/dev/null || true; done
    # Deleting a namespace deletes its end of the pair, and so the pair;
    # the root ends go too, unless a step failed half-way.
    for link in "${tag}a0" "${tag}b0"; do timeout 10 ip link del "$link" 2>/dev/null || true; done
    if [ "$ok" -eq 1 ] && [ -z "${KEEP:-}" ]; then
        rm -rf "$out"
    else
        echo "logs and reports kept in $out" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One namespace with a veth pair: root end $1 (root address $2), namespace
# end (address $3), a default route to the root end.
make_ns() {
    local ns=$1 root_addr=$2 ns_addr=$3 side=$4
    timeout 10 ip netns add "$ns"
    timeout 10 ip link add "${tag}${side}0" type veth peer name "${tag}${side}1"
    timeout 10 ip link set "${tag}${side}1" netns "$ns"
    timeout 10 ip addr add "$root_addr/30" dev "${tag}${side}0"
    timeout 10 ip link set "${tag}${side}0" up
    timeout 10 ip -n "$ns" addr add "$ns_addr/30" dev "${tag}${side}1"
    timeout 10 ip -n "$ns" link set "${tag}${side}1" up
    timeout 10 ip -n "$ns" link set lo up
    timeout 10 ip -n "$ns" route add default via "$root_addr"
}

echo "== namespaces $ns_a and $ns_b"
make_ns "$ns_a" 10.213.141.1 10.213.141.2 a
make_ns "$ns_b" 10.213.141.5 10.213.141.6 b

echo "== ringport serve on $SERVER:$PORT (root namespace)"
limit=$((AHEAD + DURATION + 90))
timeout "$limit" "$RINGPORT" serve --model epoll --listen "$SERVER:$PORT" >"$out/serve.out" 2>"$out/serve.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on' "$out/serve.out" && break; sleep 0.1; done
grep -q '^listening on' "$out/serve.out" || { echo "the server did not start:" >&2; cat "$out/serve.err" >&2; exit 1; }

start_at=$(python3 -c "import time; print(f'{time.time() + $AHEAD:.3f}')")
echo "== two generators, starting together at $start_at (Unix seconds)"
for side in a b; do
    ns=$tag-$side
    timeout $((AHEAD + DURATION + 60)) ip netns exec "$ns" "$RINGPORT" stress "$SERVER:$PORT" \
        --connections "$CONNECTIONS" --rate "$RATE" --duration "${DURATION}s" --warmup 500ms \
        --interval 1s --start-at "$start_at" --no-progress \
        --hdr-log "$out/$side.hdrlog" --json "$out/$side.json" >"$out/$side.out" 2>&1 &
    pids+=($!)
done
status=0
wait "${pids[1]}" || status=$?
wait "${pids[2]}" || status=$((status | $?))
if [ "$status" -ne 0 ]; then
    echo "a generator failed:" >&2
    cat "$out/a.out" "$out/b.out" >&2
    exit 1
fi
for side in a b; do
    echo "-- generator $side ($tag-$side, from 10.213.141.$([ $side = a ] && echo 2 || echo 6))"
    cat "$out/$side.out"
done

echo "== ringport merge a.hdrlog b.hdrlog"
timeout 30 "$RINGPORT" merge "$out/a.hdrlog" "$out/b.hdrlog" --json "$out/merged.json"

echo "== check: the merged totals are the sum of the two reports"
python3 - "$out" <<'EOF'
import json, sys
out = sys.argv[1]
a, b, m = (json.load(open(f"{out}/{n}.json")) for n in ("a", "b", "merged"))
def check(what, got, want):
    print(f"{what:<46} {got} == {want}: {'ok' if got == want else 'MISMATCH'}")
    return got == want
good = all([
    check("merged messages_verified = a + b", m["messages_verified"],
          a["messages_verified"] + b["messages_verified"]),
    check("merged latency_us.count = a + b", m["latency_us"]["count"],
          a["latency_us"]["count"] + b["latency_us"]["count"]),
    check("merged latency_corrected_us.count = a + b", m["latency_corrected_us"]["count"],
          a["latency_corrected_us"]["count"] + b["latency_corrected_us"]["count"]),
    check("log a's messages = report a's", m["logs"][0]["messages_verified"], a["messages_verified"]),
    check("log b's messages = report b's", m["logs"][1]["messages_verified"], b["messages_verified"]),
    check("merged max = max(a, b)", m["latency_us"]["max"],
          max(a["latency_us"]["max"], b["latency_us"]["max"])),
    check("series messages add up", sum(r["messages"] for r in m["series"]), m["messages_verified"]),
])
skew = abs(a["measure_start_unix_s"] - b["measure_start_unix_s"])
print(f"the two starts differ by {skew * 1000:.1f} ms (same clock, so only the process wake-ups)")
good = good and skew < 0.5
both = sum(1 for r in m["series"] if r["logs"] == 2)
print(f"{both} of {len(m['series'])} buckets hold both generators")
sys.exit(0 if good else 1)
EOF
ok=1
echo "== multi-load: ok"
