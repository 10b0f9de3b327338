#!/usr/bin/env bash
# What metrics and the access log cost, in instructions: the same requests
# through levee under `valgrind --tool=callgrind` with `[admin] metrics` and
# `[log] access` on, then off. Instruction counts do not depend on what
# else the machine is doing, so unlike bench/overhead.sh (throughput) this
# resolves a few percent on a shared machine. Start-up is measured alone and
# taken off both, so the ratio is per request.
#
#   bash bench/overhead-instructions.sh
#
# env (defaults): REQUESTS=3000 CONCURRENCY=4 SKIP_BUILD=0
# Needs valgrind and oha (bench/gateway.sh installs oha).
set -euo pipefail

REQUESTS=${REQUESTS:-3000}
CONCURRENCY=${CONCURRENCY:-4}
SKIP_BUILD=${SKIP_BUILD:-0}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
OHA=$(command -v oha || echo "${CARGO_HOME:-$HOME/.cargo}/bin/oha")

say() { printf '[overhead-instructions.sh] %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
[ -x "$OHA" ] || die "oha is missing (bash bench/gateway.sh installs it)"
if [ "$SKIP_BUILD" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p levee --bin levee \
        && cargo build --release -q -p levee-tests --bin mock-upstream)
fi

WORK=$(mktemp -d /tmp/levee-instructions.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$BIN/mock-upstream" --listen 127.0.0.1:0 >"$WORK/mock.out" 2>&1 &
PIDS+=("$!")
for ((i = 0; i < 200; i++)); do
    MOCK=$(awk '/^listening on /{print $3}' "$WORK/mock.out")
    [ -n "$MOCK" ] && break
    sleep 0.05
done
[ -n "$MOCK" ] || die "the mock did not start"

BODY='{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'

# instructions MODE COUNT: sets TOTAL to levee's instructions for COUNT
# requests (after a warm-up of 300 when COUNT > 0) with metrics and access
# MODE. Not run in a subshell, so that levee's PID reaches the cleanup.
instructions() {
    local on=$1 count=$2 pid addr i
    cat >"$WORK/$on.toml" <<EOF
listen = "127.0.0.1:0"
[[upstreams]]
name = "mock"
url = "http://$MOCK"
[admin]
listen = "127.0.0.1:0"
metrics = $on
[log]
level = "info"
format = "json"
access = $on
EOF
    valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.$on.$count" \
        "$BIN/levee" serve --config "$WORK/$on.toml" >"$WORK/$on.out" 2>"$WORK/$on.err" &
    pid=$!
    PIDS+=("$pid")
    addr=""
    for ((i = 0; i < 600; i++)); do
        addr=$(awk '/^levee listening on /{print $4}' "$WORK/$on.out")
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || die "levee did not start under valgrind"
    if [ "$count" -gt 0 ]; then
        "$OHA" -n 300 -c 2 --no-tui -m POST -H 'content-type: application/json' -d "$BODY" \
            "http://$addr/v1/messages" >/dev/null
        "$OHA" -n "$count" -c "$CONCURRENCY" --no-tui -m POST -H 'content-type: application/json' \
            -d "$BODY" "http://$addr/v1/messages" >"$WORK/oha.out"
        grep -q 'Success rate:.*100.00%' "$WORK/oha.out" || die "not every request succeeded"
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    TOTAL=$(callgrind_annotate "$WORK/cg.$on.$count" 2>/dev/null \
        | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,)
}

say "start-up alone, then $REQUESTS requests with metrics and access log off, then on"
instructions false 0
startup=$TOTAL
instructions false "$REQUESTS"
off=$TOTAL
instructions true "$REQUESTS"
on=$TOTAL
n=$((REQUESTS + 300))
per_off=$(((off - startup) / n))
per_on=$(((on - startup) / n))
echo "start-up:                      $startup instructions"
echo "per request, metrics+log off:  $per_off instructions"
echo "per request, metrics+log on:   $per_on instructions"
echo "cost of metrics+access log:    $(echo "scale=2; ($per_on - $per_off) * 100 / $per_off" | bc) % (target <= 5)"
