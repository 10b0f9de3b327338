-- wrk script for bench/gateway.sh: POST /v1/messages with a small Messages
-- API body (non-streaming), then one machine-readable result line.
wrk.method = "POST"
wrk.path = "/v1/messages"
wrk.body = '{"model":"claude-mock-1","max_tokens":256,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
wrk.headers["x-api-key"] = "bench"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK rps=%.1f requests=%d seconds=%.2f p50_us=%d p99_us=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
