#!/usr/bin/env bash
# The edge against the bundled host, in the same run, on the same mock:
# requests per second and latency through `wasmtime serve` (the composed
# edge) and through `levee serve`, each against the Rust mock upstream, and
# the mock alone as the baseline. Prints the composed size too.
#
# Needs `make edge`, `cargo build --release -p levee -p levee-tests`, and
# wrk (`apt-get install wrk`). Usage: bench/edge.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-16}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
wasmtime=$(ls .venv/lib/python3*/site-packages/wasmtime_cli/wasmtime | head -1)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 600); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}

mock=$(port); levee=$(port); edge=$(port)
target/release/mock-upstream --listen "127.0.0.1:$mock" >"$work/mock.log" 2>&1 & pids+=($!)
wait_port "$mock"
printf 'listen = "127.0.0.1:%s"\n[[upstreams]]\nname = "mock"\nurl = "http://127.0.0.1:%s"\n' \
  "$levee" "$mock" >"$work/levee.toml"
RUST_LOG=warn target/release/levee serve --config "$work/levee.toml" >"$work/levee.log" 2>&1 & pids+=($!)
"$wasmtime" serve -Scli --addr "127.0.0.1:$edge" --env "LEVEE_UPSTREAMS=mock=http://127.0.0.1:$mock" \
  target/edge/levee-edge.wasm >"$work/edge.log" 2>&1 & pids+=($!)
wait_port "$levee"; wait_port "$edge"

run() { # name port -> "rps avg_ms"
  local out
  out=$(wrk -t2 -c"$conns" -d"${secs}s" --latency -s bench/post.lua "http://127.0.0.1:$2/v1/messages")
  local rps avg
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  avg=$(awk '/^    Latency/ {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")
  echo "$rps $avg"
}
read -r mock_rps mock_ms < <(run mock "$mock")
read -r levee_rps levee_ms < <(run levee "$levee")
read -r edge_rps edge_ms < <(run edge "$edge")
size=$(stat -c %s target/edge/levee-edge.wasm)
python3 - "$mock_rps" "$mock_ms" "$levee_rps" "$levee_ms" "$edge_rps" "$edge_ms" "$size" "$conns" "$secs" <<'PY'
import sys
m_rps, m_ms, l_rps, l_ms, e_rps, e_ms = map(float, sys.argv[1:7])
size, conns, secs = int(sys.argv[7]), sys.argv[8], sys.argv[9]
print(f"composed edge: {size} bytes ({size/1e6:.2f} MB; target <= 2 MB)")
print(f"wrk: {conns} connections, {secs} s each, same mock, same run")
print(f"  mock alone : {m_rps:9.0f} req/s  avg {m_ms:.3f} ms")
print(f"  levee serve: {l_rps:9.0f} req/s  avg {l_ms:.3f} ms  (adds {l_ms-m_ms:.3f} ms)")
print(f"  edge (wasmtime serve): {e_rps:9.0f} req/s  avg {e_ms:.3f} ms  (adds {e_ms-m_ms:.3f} ms)")
print(f"  ratio edge/levee: throughput {e_rps/l_rps:.3f}, added latency {(e_ms-m_ms)/max(l_ms-m_ms,1e-9):.1f}x")
PY
