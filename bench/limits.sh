#!/usr/bin/env bash
# Client-side retrying vs levee's pacing, on the same burst, in one run.
#
#   bash bench/limits.sh
#
# The upstream is the fast mock (tests/src/bin/mock-upstream.rs) with a rate
# limit of its own, like the API's: RPM requests a minute, a continuously
# refilling bucket, anthropic-ratelimit-* headers, and 429 rate_limit_error
# with retry-after when a request does not fit. Every scenario gets a fresh
# mock (a full bucket) and sends the same burst of N requests, CONCURRENCY at
# a time, with the official Anthropic SDK (.venv, see the Makefile) through
# bench/limits_burst.py:
#   direct        the SDK with its default retries, straight at the mock;
#   direct-r0     the same with max_retries=0 (what the burst alone provokes);
#   levee         the SDK (default retries) through levee configured with
#                 requests_per_minute = RPM;
#   levee-learn   the same through levee with no limit configured: it learns
#                 the limit from the mock's headers (the first burst is sent
#                 before any header has arrived);
#   levee-short   through levee configured with RPM, the SDK with a TIMEOUT s
#                 timeout (levee refuses locally, with retry-after, what
#                 cannot be sent before the client's deadline; the SDK
#                 retries those with its default retries).
# For each: the requests that reached the mock and the 429s it answered (its
# GET /stats), the batch's wall time, and what the client saw fail.
# Loopback only; every process started here is stopped by its PID on exit.
#
# env (defaults): N=100 CONCURRENCY=100 RPM=50 TIMEOUT=10 SKIP_BUILD=0
#   SCENARIOS="direct direct-r0 levee levee-learn levee-short"
#
# What a scenario provokes by design is not a failure: the mock's 429s,
# which reach the client straight at it (direct, direct-r0), and levee's own
# 429 refusals, which the client gives up on after its retries (levee-short).
# Any other failure the client sees is. The target (docs/limits.md, where
# the suite holds it for a burst of 200): with the limit configured
# (levee), the burst provokes no upstream 429.
#
# Exit status (for failures and a missed target, after the report):
#   0    every scenario ran, no request failed but by design, target met;
#   1    something failed: a missing .venv or binary (the message says what
#        to set up or build), a process that did not start or died, a burst
#        that did not run or did not account for every request, a mock that
#        received nothing, or client failures other than the above (each
#        named, with its counts);
#   3    every scenario ran cleanly but levee provoked upstream 429s;
#   130  interrupted.
set -Eeuo pipefail

N=${N:-100}
CONCURRENCY=${CONCURRENCY:-100}
RPM=${RPM:-50}
TIMEOUT=${TIMEOUT:-10}
SKIP_BUILD=${SKIP_BUILD:-0}
SCENARIOS=${SCENARIOS:-direct direct-r0 levee levee-learn levee-short}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
PY=$ROOT/.venv/bin/python

. "$BENCH/lib.sh"

[ -x "$PY" ] && "$PY" -c 'import anthropic' 2>/dev/null \
    || die "no .venv with the anthropic SDK: run make setup"
if [ "$SKIP_BUILD" != 1 ]; then
    say "building levee and mock-upstream (release)"
    (cd "$ROOT" && cargo build --release -q -p levee --bin levee \
        && cargo build --release -q -p levee-tests --bin mock-upstream)
fi
require_bins "$BIN" release levee mock-upstream

WORK=$(mktemp -d /tmp/levee-limits-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
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
    cat "$file" "$file.err" >&2 2>/dev/null
    die "no line matching '$regex' in $file"
}

# start NAME CMD...: runs CMD in the background; sets LAST_PID.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.out.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# stop PID: stops a process started here.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

stats() { # ADDR -> "requests rate_limited"
    "$PY" -c '
import json, sys, urllib.request
s = json.load(urllib.request.urlopen("http://%s/stats" % sys.argv[1]))
print(s["requests"], s["rate_limited"])' "$1"
}

levee_config() { # FILE MOCK_ADDR LIMITS_TOML
    cat >"$1" <<EOF
listen = "127.0.0.1:0"
[[upstreams]]
name = "mock"
url = "http://$2"
$3
[admin]
listen = "off"
[log]
level = "warn"
EOF
}

declare -A ROW
for scenario in $SCENARIOS; do
    start "mock-$scenario" "$BIN/mock-upstream" --listen 127.0.0.1:0 --rpm "$RPM"
    mock_pid=$LAST_PID
    mock=$(wait_line "$WORK/mock-$scenario.out" '^listening on ' "$mock_pid" | awk '{print $3}')
    sdk_args=()
    levee_pid=
    case $scenario in
    direct) url=http://$mock ;;
    direct-r0) url=http://$mock sdk_args=(--max-retries 0) ;;
    levee | levee-learn | levee-short)
        limits=$'[upstreams.limits]\nrequests_per_minute = '"$RPM"
        [ "$scenario" != levee-learn ] || limits=
        [ "$scenario" != levee-short ] || sdk_args=(--timeout "$TIMEOUT")
        levee_config "$WORK/levee-$scenario.toml" "$mock" "$limits"
        start "levee-$scenario" "$BIN/levee" serve --config "$WORK/levee-$scenario.toml"
        levee_pid=$LAST_PID
        url=http://$(wait_line "$WORK/levee-$scenario.out" '^levee listening on ' "$levee_pid" | awk '{print $4}')
        ;;
    *) die "unknown scenario $scenario" ;;
    esac
    say "$scenario: $N requests, $CONCURRENCY at a time, upstream $RPM/min"
    result=$("$PY" "$BENCH/limits_burst.py" --base-url "$url" --n "$N" \
        --concurrency "$CONCURRENCY" ${sdk_args[@]+"${sdk_args[@]}"}) \
        || die "$scenario: the burst did not run (its error is above)"
    counts=$(stats "$mock") || die "$scenario: the mock's GET /stats failed"
    read -r sent limited <<<"$counts"
    ROW[$scenario]="$sent $limited $result"
    say "$scenario: upstream requests $sent, upstream 429s $limited, client: $result"
    verdict=$("$PY" -c '
import json, sys
name, n, sent, limited = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = json.loads(sys.argv[5])
total = r["ok"] + r["failed"]
if total != n:
    print(f"FAIL {name}: the client accounts for {total} of {n} requests")
if sent == 0:
    print(f"FAIL {name}: the mock received no request")
# By design: 429s straight from the mock, and the 429s levee refuses with in levee-short.
allowed = ("429",) if name in ("direct", "direct-r0", "levee-short") else ()
bad = {k: v for k, v in r["failures"].items() if k.split()[0] not in allowed}
if bad:
    what = ", ".join(f"{v} {k}" for k, v in sorted(bad.items()))
    print(f"FAIL {name}: {sum(bad.values())} of {n} requests failed ({what})")
if name == "levee" and limited:
    print(f"MISS {name}: {limited} upstream 429s with the limit configured (the target is none)")
' "$scenario" "$N" "$sent" "$limited" "$result") || die "$scenario: could not judge the result: $result"
    while IFS= read -r line; do
        case $line in
        FAIL\ *) fail "${line#FAIL }" ;;
        MISS\ *) say "MISSED: ${line#MISS }" && MISSED+=("${line#MISS }") ;;
        esac
    done <<<"$verdict"
    [ -z "$levee_pid" ] || stop "$levee_pid"
    stop "$mock_pid"
done

echo
echo "burst of $N (concurrency $CONCURRENCY) against an upstream allowing $RPM/min"
printf '%-12s %9s %9s %8s %6s %7s  %s\n' scenario upstream upstr-429 wall-s ok failed "client failures"
for scenario in $SCENARIOS; do
    read -r sent limited result <<<"${ROW[$scenario]}"
    "$PY" -c '
import json, sys
name, sent, limited, r = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
print("%-12s %9s %9s %8.2f %6d %7d  %s" % (name, sent, limited, r["wall_s"], r["ok"], r["failed"], r["failures"] or "-"))
' "$scenario" "$sent" "$limited" "$result"
done

if [ "${#FAILURES[@]}" -gt 0 ]; then
    say "${#FAILURES[@]} scenarios failed:"
    for f in "${FAILURES[@]}"; do say "  $f"; done
    exit 1
fi
if [ "${#MISSED[@]}" -gt 0 ]; then
    for m in "${MISSED[@]}"; do say "MISSED $m"; done
    exit 3
fi
say "every scenario ran; no request failed but by design; target met"
