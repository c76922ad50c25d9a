#!/usr/bin/env bash
# Instructions a server build spends on a fixed load, counted by callgrind:
# how the release archives' allocator was chosen (musl's own malloc against
# mimalloc against a glibc build). Instruction counts repeat on a busy
# machine where times do not; they do not see cache misses or lock waits,
# so a quiet machine's `ringport bench` has the last word on time.
#
# For each build, model and size: the server runs under
# `valgrind --tool=callgrind`, one native glibc `ringport stress` drives it
# (fixed seed, one thread), then SIGINT; the server's instructions (start
# and load, plus shutdown where it ends within 5 s) are printed, once per
# repetition. How many events one wait returns still depends on timing, so
# repetitions of a busy row can differ by a few tens of percent: compare
# rows whose spread is smaller than their difference.
#
# Usage: scripts/alloc-instructions.sh STRESS_BIN NAME=SERVER_BIN...
#   e.g. SERVE_ARGS="--workers 1" scripts/alloc-instructions.sh target/release/ringport \
#          glibc=target/release/ringport musl=/tmp/musl-ringport mimalloc=/tmp/mi-ringport
# where /tmp/musl-ringport is a copy of the release build for
# x86_64-unknown-linux-musl and /tmp/mi-ringport the same built with
# `--features mimalloc`.
# Env: MODELS (epoll completion threaded tokio), REPS (2), CONNS (8),
#      SIZES (idle 64 65536 64/churn), SERVE_ARGS (more `serve` flags, such
#      as --workers 1: a completion server under valgrind needs it).
set -euo pipefail
STRESS=$1
shift
MODELS=${MODELS:-epoll completion threaded tokio}
REPS=${REPS:-2}
CONNS=${CONNS:-8}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ringport-alloc.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null; rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || {
    echo "alloc-instructions: valgrind is missing (apt-get install valgrind)" >&2
    exit 1
}

# `count BIN MODEL SIZE COUNT`: the server's instructions under that load.
count() {
    # Emptied here, not by the redirection below: that one runs in the child,
    # after the loop may have read the last run's address.
    : >"$WORK/serve.out"
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.%p" \
        "$1" serve --model "$2" --listen 127.0.0.1:0 $SERVE_ARGS </dev/null >"$WORK/serve.out" 2>"$WORK/serve.err" &
    PID=$!
    local addr=
    for _ in $(seq 1 300); do
        addr=$(sed -n 's/^listening on //p' "$WORK/serve.out" | head -n 1)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || {
        cat "$WORK/serve.err" >&2
        exit 1
    }
    if [ "$4" -gt 0 ]; then
        timeout 300 "$STRESS" stress "$addr" -c "$CONNS" -n "$4" --size "${3%/churn}" --seed 1 --threads 1 \
            $([ "${3%/churn}" != "$3" ] && echo --per-connection 1) \
            --timeout 60s --close-grace 0 --no-progress >"$WORK/stress.out" 2>&1 || {
            cat "$WORK/stress.out" >&2
            exit 1
        }
    fi
    # The load's instructions, dumped before shutdown: under valgrind a
    # completion server blocked in io_uring_enter may never see SIGINT.
    timeout 60 callgrind_control -d "$PID" >/dev/null 2>&1 || true
    kill -INT "$PID"
    timeout 5 tail --pid="$PID" -f /dev/null || kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    # The dump's and (where the server ended) the exit's counts add up.
    sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$WORK"/cg.* | awk '{ s += $1 } END { print s }'
    rm -f "$WORK"/cg.*
}

printf '%-10s %-11s %-7s %s\n' build model size "instructions (one column per repetition)"
for model in $MODELS; do
    for size in ${SIZES:-idle 64 65536 64/churn}; do
        case $size in
        idle) n=0 ;; # start and stop alone: the baseline to subtract
        64) n=1000 ;;
        64/churn) n=100 ;; # a new connection for each message
        *) n=50 ;;
        esac
        for spec in "$@"; do
            name=${spec%%=*}
            bin=${spec#*=}
            row=()
            for _ in $(seq 1 "$REPS"); do
                row+=("$(count "$bin" "$model" "$size" "$n")")
            done
            printf '%-10s %-11s %-7s %s\n' "$name" "$model" "$size" "${row[*]}"
        done
    done
done
