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
# env (defaults): REQUESTS=3000 CONCURRENCY=4 SKIP_BUILD=0 TARGET_COST=0.05
#   RUN_TIMEOUT=600 (seconds an oha run may take before the run stops: a
#   levee whose upstream is gone holds requests up to its deadline)
# Needs valgrind and oha (bench/gateway.sh installs oha).
#
# The target: metrics and the access log cost at most 5 % of levee's
# instructions per request (TARGET_COST=0.05).
#
# Exit status:
#   0    every run happened, every request succeeded, the target was met;
#   1    something failed: a missing tool or binary (the message says what
#        to install or build), a process that did not start, an oha run
#        with errors or non-200 answers (it stops the run, named, with its
#        counts), or no instruction count read from callgrind;
#   3    every run succeeded but the cost was above TARGET_COST (by how
#        much is printed, after the report);
#   130  interrupted.
set -Eeuo pipefail

REQUESTS=${REQUESTS:-3000}
CONCURRENCY=${CONCURRENCY:-4}
SKIP_BUILD=${SKIP_BUILD:-0}
TARGET_COST=${TARGET_COST:-0.05}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
OHA=$(command -v oha || echo "${CARGO_HOME:-$HOME/.cargo}/bin/oha")

. "$BENCH/lib.sh"

[[ $TARGET_COST =~ ^-?[0-9]+([.][0-9]+)?$ ]] || die "TARGET_COST=$TARGET_COST: expected a number"
[[ $RUN_TIMEOUT =~ ^[0-9]+$ ]] || die "RUN_TIMEOUT=$RUN_TIMEOUT: expected a number of seconds"
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
command -v callgrind_annotate >/dev/null || die "callgrind_annotate is missing (apt-get install valgrind)"
[ -x "$OHA" ] || die "oha is missing (cargo install --locked --version 1.16.0 oha; bash bench/gateway.sh installs it)"
for tool in bc python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install $tool)"
done
if [ "$SKIP_BUILD" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p levee --bin levee \
        && cargo build --release -q -p levee-tests --bin mock-upstream)
fi
require_bins "$BIN" release levee mock-upstream

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
    MOCK=$(awk '/^listening on /{print $3}' "$WORK/mock.out" 2>/dev/null || true)
    [ -n "$MOCK" ] && break
    sleep 0.05
done
[ -n "$MOCK" ] || { cat "$WORK/mock.out" >&2; die "the mock did not start"; }

# load LABEL ADDR COUNT CONCURRENCY: COUNT requests with oha; stops the run,
# naming LABEL, unless every one was answered 200 (the instructions of the
# runs after it would count nothing worth a report).
load() {
    local label=$1 verdict status=0
    timeout "$RUN_TIMEOUT" "$OHA" -n "$3" -c "$4" --no-tui --output-format json -m POST \
        -H 'content-type: application/json' -d "$BODY" "http://$2/v1/messages" \
        >"$WORK/oha.json" 2>"$WORK/oha.err" || status=$?
    [ "$status" != 124 ] || die "$label: oha did not finish in $RUN_TIMEOUT s (requests hang)"
    [ "$status" = 0 ] || { cat "$WORK/oha.err" >&2; die "$label: oha failed (exit $status)"; }
    verdict=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
codes = r["statusCodeDistribution"]
failed = {"HTTP " + k: v for k, v in codes.items() if k != "200"}
failed.update(r.get("errorDistribution", {}))
ok = codes.get("200", 0)
if failed or ok != n:
    what = "; ".join(f"{v} {k}" for k, v in sorted(failed.items())) or "none answered otherwise"
    print(f"{n - ok} of {n} requests not answered 200 ({what})")' "$WORK/oha.json" "$3") \
        || die "$label: could not read oha's result"
    [ -z "$verdict" ] || die "$label: oha: $verdict"
}

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
        addr=$(awk '/^levee listening on /{print $4}' "$WORK/$on.out" 2>/dev/null || true)
        [ -n "$addr" ] && break
        sleep 0.1
    done
    [ -n "$addr" ] || { cat "$WORK/$on.err" >&2; die "levee did not start under valgrind"; }
    if [ "$count" -gt 0 ]; then
        load "metrics+log $on: warm-up" "$addr" 300 2
        load "metrics+log $on: $count requests" "$addr" "$count" "$CONCURRENCY"
    fi
    kill -TERM "$pid"
    wait "$pid" || true
    TOTAL=$(callgrind_annotate "$WORK/cg.$on.$count" 2>/dev/null \
        | sed -n 's/^ *\([0-9,]*\) .*PROGRAM TOTALS.*/\1/p' | tr -d ,) || true
    [ -n "$TOTAL" ] || die "no instruction total from callgrind for levee (metrics+log $on, $count requests)"
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
cost=$(echo "scale=2; ($per_on - $per_off) * 100 / $per_off" | bc)
want=$(echo "scale=2; $TARGET_COST * 100 / 1" | bc)
echo "cost of metrics+access log:    $cost % (target <= $want)"

if [ "$(echo "$cost > $want" | bc)" = 1 ]; then
    say "MISSED cost of metrics+access log $cost % > $want %: over by $(echo "$cost - $want" | bc) points"
    exit 3
fi
say "every request succeeded; target met"
