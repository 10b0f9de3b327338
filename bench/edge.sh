#!/usr/bin/env bash
# The edge against the bundled host, in the same run, on the same mock:
# requests per second and latency through `wasmtime serve` (the composed
# edge) and through `levee serve`, each against the Rust mock upstream, and
# the mock alone as the baseline. Prints the composed size too.
#
# Needs `make edge`, `cargo build --release -p levee -p levee-tests`, and
# wrk (`apt-get install wrk`). Usage: bench/edge.sh [SECONDS] [CONNECTIONS]
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
#        wrk run with socket errors or non-2xx answers, or none completed
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

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
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

mock=$(port); levee=$(port); edge=$(port)
"$bin/mock-upstream" --listen "127.0.0.1:$mock" >"$work/mock.log" 2>&1 & pids+=($!)
wait_port "$mock" "$!" mock
printf 'listen = "127.0.0.1:%s"\n[[upstreams]]\nname = "mock"\nurl = "http://127.0.0.1:%s"\n' \
  "$levee" "$mock" >"$work/levee.toml"
RUST_LOG=warn "$bin/levee" serve --config "$work/levee.toml" >"$work/levee.log" 2>&1 & pids+=($!)
levee_pid=$!
"$wasmtime" serve -Scli --addr "127.0.0.1:$edge" --env "LEVEE_UPSTREAMS=mock=http://127.0.0.1:$mock" \
  "$edge_wasm" >"$work/edge.log" 2>&1 & pids+=($!)
edge_pid=$!
wait_port "$levee" "$levee_pid" levee; wait_port "$edge" "$edge_pid" edge

run() { # NAME PORT: one wrk run; sets RPS and AVG_MS, and records a failure
  # for NAME when a request failed or none completed
  local out non2xx errors requests
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/post.lua "http://127.0.0.1:$2/v1/messages" 2>&1) \
    || { printf '%s\n' "$out" >&2; die "$1: wrk failed"; }
  RPS=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  AVG_MS=$(awk '/^    Latency/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  requests=$(awk '/ requests in / {print $1}' <<<"$out")
  [ -n "$RPS" ] && [ -n "$AVG_MS" ] && [ -n "$requests" ] || { printf '%s\n' "$out" >&2; die "$1: wrk printed no result"; }
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  errors=$(sed -n 's/.*Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1+\2+\3+\4/p' <<<"$out")
  errors=$((${errors:-0}))
  if [ "$errors" != 0 ] || [ "${non2xx:-0}" != 0 ]; then
    fail "$1: wrk: $errors socket errors and ${non2xx:-0} non-2xx answers in $requests requests"
  elif [ "$requests" = 0 ]; then
    fail "$1: wrk: no request completed"
  fi
}
run mock "$mock"; mock_rps=$RPS mock_ms=$AVG_MS
run levee "$levee"; levee_rps=$RPS levee_ms=$AVG_MS
run edge "$edge"; edge_rps=$RPS edge_ms=$AVG_MS
size=$(stat -c %s "$edge_wasm")
python3 - "$mock_rps" "$mock_ms" "$levee_rps" "$levee_ms" "$edge_rps" "$edge_ms" "$size" "$conns" "$secs" "$TARGET_EDGE_BYTES" <<'PY'
import sys
m_rps, m_ms, l_rps, l_ms, e_rps, e_ms = map(float, sys.argv[1:7])
size, conns, secs, want = int(sys.argv[7]), sys.argv[8], sys.argv[9], int(sys.argv[10])
print(f"composed edge: {size} bytes ({size/1e6:.2f} MB; target <= {want/1e6:g} MB: {'ok' if size <= want else 'MISSED'})")
print(f"wrk: {conns} connections, {secs} s each, same mock, same run")
print(f"  mock alone : {m_rps:9.0f} req/s  avg {m_ms:.3f} ms")
print(f"  levee serve: {l_rps:9.0f} req/s  avg {l_ms:.3f} ms  (adds {l_ms-m_ms:.3f} ms)")
print(f"  edge (wasmtime serve): {e_rps:9.0f} req/s  avg {e_ms:.3f} ms  (adds {e_ms-m_ms:.3f} ms)")
if l_rps > 0:
    print(f"  ratio edge/levee: throughput {e_rps/l_rps:.3f}, added latency {(e_ms-m_ms)/max(l_ms-m_ms,1e-9):.1f}x")
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
