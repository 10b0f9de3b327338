#!/usr/bin/env bash
# The edge on every runtime against the bundled host, in the same run, on
# the same mock: requests per second, average and p99 latency through
# `levee serve`, `wasmtime serve` (the composed edge), `spin up` (spin.toml,
# the pre-composed wiring) and `jco serve` (Node.js), each against the Rust
# mock upstream, and the mock alone as the baseline. Then what each
# request costs before any upstream: one client at a time asks for a path
# the gateway refuses itself (a dot segment, 400), so the latency is the
# runtime's instantiation of the component for the request, plus reading
# the settings and configuring the policy (the bundled host does neither
# per request). Prints the composed size too.
#
# Needs `make edge`, `make setup` (Spin in target/tools/spin, jco in
# hosts/node), `cargo build --release -p levee -p levee-tests`, and wrk
# (`apt-get install wrk`). Usage: bench/edge.sh [SECONDS] [CONNECTIONS]
# The binaries are read from ${CARGO_TARGET_DIR:-target}/release; the edge
# from target/edge (where `make edge` writes it).
#
# The target: the composed edge is at most 2 MB (TARGET_EDGE_BYTES=2000000).
# Throughput and latency are reported, with no target.
#
# Exit status (for failed requests and a missed target, after the report):
#   0    every run happened, every request succeeded, the target was met;
#   1    something failed: a missing tool, binary or edge build (the message
#        says what to install or build), a server that did not start, or a
#        wrk run with socket errors or unexpected answers, or none completed
#        (each named, with its counts);
#   3    every run succeeded but the edge is larger than the target;
#   130  interrupted.
set -Eeuo pipefail
BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$BENCH/.."
secs=${1:-10}
conns=${2:-16}
TARGET_EDGE_BYTES=${TARGET_EDGE_BYTES:-2000000}
bin=${CARGO_TARGET_DIR:-target}/release
edge_wasm=target/edge/levee-edge.wasm

. "$BENCH/lib.sh"

[[ $TARGET_EDGE_BYTES =~ ^[0-9]+$ ]] || die "TARGET_EDGE_BYTES=$TARGET_EDGE_BYTES: expected a number of bytes"
command -v wrk >/dev/null || die "wrk is missing: apt-get install wrk"
command -v python3 >/dev/null || die "python3 is missing: apt-get install python3"
wasmtime=$(ls .venv/lib/python3*/site-packages/wasmtime_cli/wasmtime 2>/dev/null | head -1 || true)
[ -n "$wasmtime" ] && [ -x "$wasmtime" ] || die "the wasmtime CLI is missing from .venv: run make setup"
require_bins "$bin" release levee mock-upstream
[ -f "$edge_wasm" ] || die "$edge_wasm is missing: build it with make edge"
spin=${LEVEE_SPIN:-target/tools/spin}
[ -x "$spin" ] || die "Spin is missing at $spin: run make setup"
jco=hosts/node/node_modules/.bin/jco
[ -x "$jco" ] || die "jco is missing at $jco: run make setup"

work=$(mktemp -d)
pids=()
groups=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for g in "${groups[@]}"; do kill -- "-$g" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { # PORT PID NAME
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { cat "$work/$3.log" >&2; die "$3 exited before listening on $1"; }
    sleep 0.1
  done
  die "$3: nothing listens on $1"
}

mock=$(port); levee=$(port); edge=$(port); spin_port=$(port); jco_port=$(port)
upstream="mock=http://127.0.0.1:$mock"
"$bin/mock-upstream" --listen "127.0.0.1:$mock" >"$work/mock.log" 2>&1 & pids+=($!)
wait_port "$mock" "$!" mock
printf 'listen = "127.0.0.1:%s"\n[[upstreams]]\nname = "mock"\nurl = "http://127.0.0.1:%s"\n' \
  "$levee" "$mock" >"$work/levee.toml"
RUST_LOG=warn "$bin/levee" serve --config "$work/levee.toml" >"$work/levee.log" 2>&1 & pids+=($!)
levee_pid=$!
"$wasmtime" serve -Scli --addr "127.0.0.1:$edge" --env "LEVEE_UPSTREAMS=$upstream" \
  "$edge_wasm" >"$work/edge.log" 2>&1 & pids+=($!)
edge_pid=$!
SPIN_VARIABLE_UPSTREAMS=$upstream SPIN_VARIABLE_ALLOWED_HOST_B="http://127.0.0.1:$mock" \
  "$spin" up --from spin.toml --listen "127.0.0.1:$spin_port" --state-dir "$work/spin" --temp "$work/spin/tmp" --quiet \
  >"$work/spin.log" 2>&1 & pids+=($!)
spin_pid=$!
# jco runs the component in a child Node.js process: stopped as a group.
LEVEE_UPSTREAMS=$upstream setsid "$jco" serve "$edge_wasm" --host 127.0.0.1 --port "$jco_port" \
  --jco-dir "$work/jco" >"$work/jco.log" 2>&1 & groups+=($!)
jco_pid=$!
wait_port "$levee" "$levee_pid" levee; wait_port "$edge" "$edge_pid" edge
wait_port "$spin_port" "$spin_pid" spin; wait_port "$jco_port" "$jco_pid" jco

run() { # NAME PORT [CONNECTIONS] [PATH] [STATUS]: one wrk run; sets RPS,
  # AVG_MS and P99_MS, and records a failure for NAME when a request failed
  # (an answer other than STATUS, 200 by default) or none completed
  local out non2xx errors requests c=${3:-$conns} path=${4:-/v1/messages} want=${5:-200}
  out=$(wrk -t"$(( c < 2 ? c : 2 ))" -c"$c" -d"${secs}s" --latency -s bench/post.lua "http://127.0.0.1:$2$path" 2>&1) \
    || { printf '%s\n' "$out" >&2; die "$1: wrk failed"; }
  ms() { awk -v k="$1" '$1 == k {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v; exit}'; }
  RPS=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  AVG_MS=$(ms Latency <<<"$out")
  P99_MS=$(ms 99% <<<"$out")
  requests=$(awk '/ requests in / {print $1}' <<<"$out")
  [ -n "$RPS" ] && [ -n "$AVG_MS" ] && [ -n "$P99_MS" ] && [ -n "$requests" ] \
    || { printf '%s\n' "$out" >&2; die "$1: wrk printed no result"; }
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  [ "$want" = 200 ] || non2xx=$((requests - ${non2xx:-0}))
  errors=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1+\2+\3+\4/p' <<<"$out")
  errors=$((${errors:-0}))
  if [ "$errors" != 0 ] || [ "${non2xx:-0}" != 0 ]; then
    fail "$1: wrk: $errors socket errors and ${non2xx:-0} answers other than $want in $requests requests"
  elif [ "$requests" = 0 ]; then
    fail "$1: wrk: no request completed"
  fi
}

names=(levee wasmtime spin jco)
ports=("$levee" "$edge" "$spin_port" "$jco_port")
results=()
run mock "$mock"; results+=("mock $RPS $AVG_MS $P99_MS")
for i in "${!names[@]}"; do
  run "${names[$i]}" "${ports[$i]}"; results+=("${names[$i]} $RPS $AVG_MS $P99_MS")
done
# One client, a dot segment: answered by the gateway itself, with 400.
for i in "${!names[@]}"; do
  run "${names[$i]} (local 400)" "${ports[$i]}" 1 /v1/./messages 400
  results+=("${names[$i]}-local $RPS $AVG_MS $P99_MS")
done
size=$(stat -c %s "$edge_wasm")
python3 - "$size" "$conns" "$secs" "$TARGET_EDGE_BYTES" "${results[@]}" <<'PY'
import sys
size, conns, secs, want = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
r = {}
for line in sys.argv[5:]:
    name, rps, avg, p99 = line.split()
    r[name] = (float(rps), float(avg), float(p99))
print(f"composed edge: {size} bytes ({size/1e6:.2f} MB; target <= {want/1e6:g} MB: {'ok' if size <= want else 'MISSED'})")
print(f"wrk: {conns} connections, {secs} s each, same mock, same run")
m = r["mock"]
print(f"  {'':22} {'req/s':>9} {'avg ms':>8} {'p99 ms':>8} {'thr/levee':>10} {'p99/levee':>10}")
print(f"  {'mock alone':22} {m[0]:9.0f} {m[1]:8.3f} {m[2]:8.3f}")
l = r["levee"]
for name, label in [("levee", "levee serve"), ("wasmtime", "edge, wasmtime serve"),
                    ("spin", "edge, spin up"), ("jco", "edge, jco serve")]:
    x = r[name]
    print(f"  {label:22} {x[0]:9.0f} {x[1]:8.3f} {x[2]:8.3f} {x[0]/l[0]:10.3f} {x[2]/l[2]:10.2f}")
print("per request before any upstream (one client, a local 400):")
base = r["levee-local"][1]
for name, label in [("levee", "levee serve"), ("wasmtime", "edge, wasmtime serve"),
                    ("spin", "edge, spin up"), ("jco", "edge, jco serve")]:
    x = r[name + "-local"]
    print(f"  {label:22} avg {x[1]:7.3f} ms  p99 {x[2]:7.3f} ms  (instantiation and setup: +{x[1]-base:.3f} ms over levee)")
PY

if [ "${#FAILURES[@]}" -gt 0 ]; then
  say "${#FAILURES[@]} runs failed:"
  for f in "${FAILURES[@]}"; do say "  $f"; done
  exit 1
fi
if [ "$size" -gt "$TARGET_EDGE_BYTES" ]; then
  say "MISSED the composed edge is $size bytes > $TARGET_EDGE_BYTES: over by $((size - TARGET_EDGE_BYTES)) bytes"
  exit 3
fi
say "every request succeeded; target met"
