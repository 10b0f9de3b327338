#!/usr/bin/env bash
# The cost of observability: levee's throughput with metrics and the access
# log ON against OFF, in one run.
#
#   bash bench/overhead.sh
#
# Two levees in front of the same fast mock upstream
# (tests/src/bin/mock-upstream.rs), identical but for `[admin] metrics` and
# `[log] access`; both log at `info` to a file and serve the admin API. wrk
# (the same script and settings as bench/gateway.sh) loads them in turn,
# interleaved on, off | off, on | … for ROUNDS rounds after a warm-up of
# each;
# the summary shows the median throughput of each, the ratio off/on and
# the cost 1 - on/off, and levee's own CPU time per request in each mode
# (from /proc/PID/stat: less sensitive than throughput to other load on a
# shared machine). The target is a cost of at most 5 % (TARGET_COST=0.05)
# in throughput. Only loopback addresses are used; every process started
# here is stopped by its PID.
#
# env (defaults): ROUNDS=5 DURATION=10 WARMUP=2 THREADS=2 CONNECTIONS=64
#   LOG_FORMAT=json SKIP_BUILD=0 TARGET_COST=0.05; ON_METRICS=true
#   ON_ACCESS=true (what the "on" levee turns on: set one to false to
#   measure the other alone, both to false for an A/A run that shows the
#   machine's noise floor)
#
# Exit status (for failed requests and a missed target, after the report):
#   0    every run happened, every request succeeded, the target was met;
#   1    something failed: a missing tool or binary (the message says what
#        to install or build), a levee that did not start or died, a wrk
#        run with socket errors or non-2xx answers (named, with its counts)
#        or with no request completed, or an "on" levee with the access log
#        on that wrote no access line (or an "off" one that wrote some);
#   3    every run succeeded but the cost was above TARGET_COST (by how
#        much is printed);
#   130  interrupted.
set -Eeuo pipefail

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
LOG_FORMAT=${LOG_FORMAT:-json}
SKIP_BUILD=${SKIP_BUILD:-0}
ON_METRICS=${ON_METRICS:-true}
ON_ACCESS=${ON_ACCESS:-true}
TARGET_COST=${TARGET_COST:-0.05}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

. "$BENCH/lib.sh"

[[ $TARGET_COST =~ ^-?[0-9]+([.][0-9]+)?$ ]] || die "TARGET_COST=$TARGET_COST: expected a number"
if ! command -v wrk >/dev/null; then
    say "installing wrk (apt)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
for tool in curl python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install $tool)"
done
if [ "$SKIP_BUILD" != 1 ]; then
    say "building levee and mock-upstream (release)"
    (cd "$ROOT" && cargo build --release -q -p levee --bin levee \
        && cargo build --release -q -p levee-tests --bin mock-upstream)
fi
require_bins "$BIN" release levee mock-upstream

WORK=$(mktemp -d /tmp/levee-overhead-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_line FILE REGEX PID: the first line of FILE matching REGEX (10 s).
wait_line() {
    local file=$1 regex=$2 pid=$3 i line
    for ((i = 0; i < 200; i++)); do
        line=$(grep -m1 -E "$regex" "$file" 2>/dev/null || true)
        if [ -n "$line" ]; then echo "$line"; return 0; fi
        kill -0 "$pid" 2>/dev/null || { cat "$file" "$file.err" >&2 2>/dev/null; die "process $pid exited early"; }
        sleep 0.05
    done
    die "no line matching '$regex' in $file"
}

start() { # NAME CMD...: in the background, stdout to $WORK/NAME.out; sets LAST_PID
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.out.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

start mock "$BIN/mock-upstream" --listen 127.0.0.1:0
MOCK=$(wait_line "$WORK/mock.out" '^listening on ' "$LAST_PID" | awk '{print $3}')

declare -A ADDR LPID
for mode in on off; do
    if [ "$mode" = on ]; then metrics=$ON_METRICS access=$ON_ACCESS; else metrics=false access=false; fi
    cat >"$WORK/levee-$mode.toml" <<EOF
listen = "127.0.0.1:0"
[[upstreams]]
name = "mock"
url = "http://$MOCK"
max_connections = 512
[admin]
listen = "127.0.0.1:0"
metrics = $metrics
[log]
format = "$LOG_FORMAT"
level = "info"
access = $access
EOF
    start "levee-$mode" "$BIN/levee" serve --config "$WORK/levee-$mode.toml"
    LPID[$mode]=$LAST_PID
    ADDR[$mode]=$(wait_line "$WORK/levee-$mode.out" '^levee listening on ' "$LAST_PID" | awk '{print $4}')
done

BODY='{"model":"claude-mock-1","max_tokens":256,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
for mode in on off; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
        -d "$BODY" "http://${ADDR[$mode]}/v1/messages" || true)
    [ "$code" = 200 ] || die "levee ($mode) does not answer 200 (got $code)"
done
say "mock $MOCK; levee on ${ADDR[on]}, off ${ADDR[off]}"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
# run LABEL MODE SECONDS: one wrk run; sets WRK_OUT to its WRK line
# (bench/messages.lua), and records a failure for LABEL when a request
# failed or none completed.
run() {
    local label=$1 errors non2xx requests
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${3}s" -s "$BENCH/messages.lua" "http://${ADDR[$2]}" \
        >"$WORK/wrk.out" 2>&1 || { cat "$WORK/wrk.out" >&2; die "$label: wrk failed"; }
    WRK_OUT=$(grep '^WRK ' "$WORK/wrk.out") \
        || { cat "$WORK/wrk.out" >&2; die "$label: wrk printed no result line"; }
    errors=$(field errors "$WRK_OUT") non2xx=$(field non2xx "$WRK_OUT")
    requests=$(field requests "$WRK_OUT")
    if [ "$errors" != 0 ] || [ "$non2xx" != 0 ]; then
        fail "$label: wrk: $errors socket errors and $non2xx non-2xx answers in $requests requests"
    elif [ "$requests" = 0 ]; then
        fail "$label: wrk: no request completed"
    fi
}
for mode in on off; do
    say "$mode: wrk warm-up ${WARMUP}s"
    run "warm-up $mode" "$mode" "$WARMUP"
done

cpu_ticks() { # PID
    awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || die "levee (pid $1) is gone"
}
CLK_TCK=$(getconf CLK_TCK)
declare -A RPS CPU ERRORS=([on]=0 [off]=0)
for ((round = 1; round <= ROUNDS; round++)); do
    # on, off | off, on | …: neither mode always goes first.
    if ((round % 2)); then modes="on off"; else modes="off on"; fi
    for mode in $modes; do
        before=$(cpu_ticks "${LPID[$mode]}")
        run "round $round/$ROUNDS $mode" "$mode" "$DURATION"
        out=$WRK_OUT
        after=$(cpu_ticks "${LPID[$mode]}")
        n=$(field requests "$out")
        cpu_us=$(((after - before) * 1000000 / CLK_TCK / (n > 0 ? n : 1)))
        RPS[$mode]+=" $(field rps "$out")"
        CPU[$mode]+=" $cpu_us"
        ERRORS[$mode]=$((ERRORS[$mode] + $(field errors "$out") + $(field non2xx "$out")))
        say "round $round/$ROUNDS $mode: $(field rps "$out") req/s, levee CPU ${cpu_us} us/req"
    done
done
LINES=$(grep -c '"levee::access"' "$WORK/levee-on.out.err" || true)
[ "$LOG_FORMAT" = json ] || LINES=$(grep -c 'levee::access' "$WORK/levee-on.out.err" || true)
OFF_LINES=$(grep -c 'levee::access' "$WORK/levee-off.out.err" || true)
# The "on" levee must have written what it was meant to cost, the "off" one
# nothing: else the run did not measure the access log.
if [ "$ON_ACCESS" = true ] && [ "$LINES" = 0 ]; then
    fail "the \"on\" levee has the access log on but wrote no access line"
fi
[ "$OFF_LINES" = 0 ] || fail "the \"off\" levee wrote $OFF_LINES access lines"

summary=0
B_TARGET_COST=$TARGET_COST B_ON=${RPS[on]} B_OFF=${RPS[off]} B_CPU_ON=${CPU[on]} B_CPU_OFF=${CPU[off]} B_ROUNDS=$ROUNDS B_LINES=$LINES B_OFF_LINES=$OFF_LINES \
    B_ERRORS="${ERRORS[on]} ${ERRORS[off]}" B_DESC="wrk ${THREADS}t/${CONNECTIONS}c ${DURATION}s, log $LOG_FORMAT; on = metrics $ON_METRICS, access $ON_ACCESS" \
    python3 - <<'EOF' || summary=$?
import os
import sys
from statistics import median
E = os.environ
on = [float(x) for x in E["B_ON"].split()]
off = [float(x) for x in E["B_OFF"].split()]
m_on, m_off = median(on), median(off)
if not (m_on > 0 and m_off > 0):
    print(f"no throughput measured (on {m_on:.0f} req/s, off {m_off:.0f}): no report")
    sys.exit(1)
ratio = m_off / m_on
cost = 1 - m_on / m_off
print()
print(f"levee observability overhead: medians of {E['B_ROUNDS']} interleaved rounds; {E['B_DESC']}")
print(f"metrics + access log ON    {m_on:9.0f} req/s   rounds: {' '.join(f'{x:.0f}' for x in on)}")
print(f"metrics + access log OFF   {m_off:9.0f} req/s   rounds: {' '.join(f'{x:.0f}' for x in off)}")
rounds = " ".join(f"{1 - a / b:+.3f}" for a, b in zip(on, off))
want = float(E["B_TARGET_COST"])
print(f"off/on {ratio:.3f}; cost {cost * 100:+.1f} %   target <= {want * 100:g} %  {'ok' if cost <= want else 'MISSED'}"
      f"   per round: {rounds}")
c_on = [float(x) for x in E["B_CPU_ON"].split()]
c_off = [float(x) for x in E["B_CPU_OFF"].split()]
cm_on, cm_off = median(c_on), median(c_off)
print(f"levee CPU per request: on {cm_on:.0f} us, off {cm_off:.0f} us; cost {(cm_on / cm_off - 1) * 100:+.1f} %"
      f"   per round: {' '.join(f'{a / b - 1:+.3f}' for a, b in zip(c_on, c_off))}")
print(f"access lines written: on {E['B_LINES']}, off {E['B_OFF_LINES']}; errors (on off): {E['B_ERRORS']}")
if cost > want:
    print(f"MISSED observability cost {cost * 100:+.1f} % > {want * 100:g} %: over by "
          f"{(cost - want) * 100:.1f} points ({m_on:.0f} req/s on against {m_off:.0f} off)")
    sys.exit(3)
EOF

finish "$summary"
