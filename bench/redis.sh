#!/usr/bin/env bash
# Shared limits benchmark, in one run:
#   - req/s through one and three levee replicas that share their limits in a real
#     redis-server, against one levee keeping its limits in memory (both
#     in front of the fast mock, with limits high enough never to bind, so
#     only the cost of admission differs);
#   - Redis calls per admitted request, read from Redis's own
#     `INFO commandstats` (EVALSHA + EVAL), to show one round trip each.
# Rounds are interleaved (memory, redis, memory, ...); ratios are taken
# within the run, since this machine is shared and noisy. Loopback only;
# every process started here is stopped by its PID on exit.
#
#   bash bench/redis.sh
#
# env (defaults): ROUNDS=3 DURATION=8 CONNECTIONS=48 SKIP_BUILD=0
#
# There is no target: the figures are reported. Exit status:
#   0    every run happened and every request succeeded;
#   1    something failed: a missing tool or binary (the message says what
#        to install or build), a process that did not start or died, a wrk
#        run with socket errors or non-2xx answers, or none completed (each
#        named, with its counts, after the report), or no Redis script call
#        seen (the limits did not go through Redis);
#   130  interrupted.
set -Eeuo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CONNECTIONS=${CONNECTIONS:-48}
SKIP_BUILD=${SKIP_BUILD:-0}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

. "$BENCH/lib.sh"

command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
[ -x /usr/bin/redis-server ] || die "redis-server is missing (make setup installs it)"
command -v redis-cli >/dev/null || die "redis-cli is missing (apt-get install redis-tools)"
for tool in bc curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install $tool)"
done
if [ "$SKIP_BUILD" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p levee --bin levee \
        && cargo build --release -q -p levee-tests --bin mock-upstream)
fi
require_bins "$BIN" release levee mock-upstream

WORK=$(mktemp -d /tmp/levee-redis-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() { # NAME CMD...: in the background, stdout to $WORK/NAME.out
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}
wait_line() { # FILE REGEX PID
    local i line
    for ((i = 0; i < 200; i++)); do
        line=$(grep -m1 -E "$2" "$1" 2>/dev/null || true)
        if [ -n "$line" ]; then echo "$line"; return 0; fi
        kill -0 "$3" 2>/dev/null || { cat "$1" "${1%.out}.err" >&2; die "process $3 exited early"; }
        sleep 0.05
    done
    die "no line matching '$2' in $1"
}
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start mock "$BIN/mock-upstream" --listen 127.0.0.1:0
MOCK=$(wait_line "$WORK/mock.out" '^listening on ' "$LAST_PID" | awk '{print $3}')
REDIS_PORT=$(free_port)
start redis /usr/bin/redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir "$WORK"
REDIS_PID=$LAST_PID
for ((i = 0; i < 200; i++)); do
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] && break
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$WORK/redis.out" "$WORK/redis.err" >&2; die "redis-server exited early"; }
    sleep 0.05
done
[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ] || die "redis-server does not answer PING on $REDIS_PORT"

levee() { # NAME [SHARED]: starts a levee; sets ADDR to its address (not in a
    # subshell, so that its PID reaches the cleanup)
    local shared=""
    [ -z "${2:-}" ] || shared=$'[limits.redis]\nurl = "redis://127.0.0.1:'"$REDIS_PORT"$'/0"\nreplicas = 3\ntimeout_ms = 1000'
    cat >"$WORK/$1.toml" <<EOF
listen = "127.0.0.1:0"
$shared
[[upstreams]]
name = "mock"
url = "http://$MOCK"
[upstreams.limits]
requests_per_minute = 1000000000
input_tokens_per_minute = 1000000000000
output_tokens_per_minute = 1000000000000
[admin]
listen = "off"
[log]
level = "warn"
EOF
    start "$1" "$BIN/levee" serve --config "$WORK/$1.toml"
    ADDR=$(wait_line "$WORK/$1.out" '^levee listening on ' "$LAST_PID" | awk '{print $4}')
}
levee memory
MEMORY=$ADDR
SHARED=()
for n in 1 2 3; do
    levee "shared$n" yes
    SHARED+=("$ADDR")
done

BODY='{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"hi"}]}'
for addr in "$MEMORY" "${SHARED[@]}"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
        -d "$BODY" "http://$addr/v1/messages" || true)
    [ "$code" = 200 ] || die "http://$addr answers $code"
done

# wrk_to FILE ADDR CONNECTIONS: one wrk run, its output in FILE.
wrk_to() {
    wrk -t1 -c"$3" -d"${DURATION}s" -s "$BENCH/post.lua" "http://$2/v1/messages" >"$1" 2>&1
}
# wrk_read LABEL FILE: sets RPS and REQS from a wrk run's output; records a
# failure for LABEL when a request failed or none completed.
wrk_read() {
    local label=$1 file=$2 non2xx errors
    RPS=$(awk '/^Requests\/sec:/ {print $2}' "$file")
    REQS=$(awk '/ requests in / {print $1}' "$file")
    [ -n "$RPS" ] && [ -n "$REQS" ] || { cat "$file" >&2; die "$label: wrk printed no result"; }
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$file")
    errors=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1+\2+\3+\4/p' "$file")
    errors=$((${errors:-0}))
    if [ "$errors" != 0 ] || [ "${non2xx:-0}" != 0 ]; then
        fail "$label: wrk: $errors socket errors and ${non2xx:-0} non-2xx answers in $REQS requests"
    elif [ "$REQS" = 0 ]; then
        fail "$label: wrk: no request completed"
    fi
}
# run_wrk LABEL ADDR CONNECTIONS: one wrk run in the foreground; sets RPS, REQS.
run_wrk() {
    wrk_to "$WORK/wrk.out" "$2" "$3" || { cat "$WORK/wrk.out" >&2; die "$1: wrk failed"; }
    wrk_read "$1" "$WORK/wrk.out"
}

calls() {
    local c
    c=$(redis-cli -p "$REDIS_PORT" info commandstats \
        | sed -n 's/^cmdstat_\(evalsha\|eval\):calls=\([0-9]*\),.*/\2/p' | paste -sd+ | bc)
    [ -n "$c" ] || die "Redis saw no script call: levee's limits did not go through it"
    echo "$c"
}

MEM_RPS=()
ONE_RPS=()
RED_RPS=()
PER=()
USEC=()
for ((round = 1; round <= ROUNDS; round++)); do
    run_wrk "round $round: one in-memory replica" "$MEMORY" "$CONNECTIONS"
    MEM_RPS+=("$RPS")
    say "round $round: one in-memory replica: $RPS req/s"
    run_wrk "round $round: one Redis replica" "${SHARED[0]}" "$CONNECTIONS"
    ONE_RPS+=("$RPS")
    say "round $round: one Redis replica: $RPS req/s"
    redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
    per=$((CONNECTIONS / 3))
    loads=()
    for n in 0 1 2; do
        wrk_to "$WORK/wrk$n" "${SHARED[$n]}" "$per" &
        loads+=("$!")
        PIDS+=("$!")
    done
    total_rps=0
    total_req=0
    for n in 0 1 2; do
        label="round $round: Redis replica $((n + 1)) of three"
        wait "${loads[$n]}" || { cat "$WORK/wrk$n" >&2; die "$label: wrk failed"; }
        wrk_read "$label" "$WORK/wrk$n"
        total_rps=$(echo "$total_rps + $RPS" | bc)
        total_req=$((total_req + REQS))
    done
    c=$(calls)
    usec=$(redis-cli -p "$REDIS_PORT" info commandstats \
        | sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')
    USEC+=("$usec")
    RED_RPS+=("$total_rps")
    [ "$total_req" = 0 ] || PER+=("$(echo "scale=3; $c / $total_req" | bc)")
    say "round $round: three Redis replicas: $total_rps req/s; $c script calls for $total_req requests"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m=$(median "${MEM_RPS[@]}")
o=$(median "${ONE_RPS[@]}")
r=$(median "${RED_RPS[@]}")
p=$(median "${PER[@]}")
echo "one replica, in-memory limits:   $m req/s (median of $ROUNDS)"
echo "one replica, limits in Redis:    $o req/s (median of $ROUNDS)"
echo "three replicas, limits in Redis: $r req/s (median of $ROUNDS)"
echo "ratio one-redis / one-memory:    $(echo "scale=3; $o / $m" | bc)"
echo "ratio three-redis / one-memory:  $(echo "scale=3; $r / $m" | bc)"
echo "Redis script calls per request:  $p (admission plus idle flushes)"
echo "Redis time per script call:      $(median "${USEC[@]}") us (INFO commandstats)"

if [ "${#FAILURES[@]}" -gt 0 ]; then
    say "${#FAILURES[@]} runs failed:"
    for f in "${FAILURES[@]}"; do say "  $f"; done
    exit 1
fi
say "every request succeeded"
