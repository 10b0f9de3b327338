"""An OTLP/HTTP trace receiver for levee's tests, on the official
opentelemetry-proto definitions (the `opentelemetry-proto` package).

Listens on 127.0.0.1 (an OS-chosen port, printed as `listening PORT`),
accepts `POST /v1/traces` with an `application/x-protobuf` body (gzip too),
decodes the `ExportTraceServiceRequest` and appends one JSON line per span
to OUT. Each export is logged to OUT.exports as a JSON line of its request
headers. `--fail N` answers the first N exports 503 with `Retry-After: 0`,
as a collector under pressure would.
"""

import argparse
import gzip
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--fail", type=int, default=0)
    args = parser.parse_args()
    lock = threading.Lock()
    failures = [args.fail]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_):
            pass

        def answer(self, status, body=b"", content_type="application/x-protobuf", extra=()):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path != "/v1/traces":
                return self.answer(404, b"not found", "text/plain")
            if self.headers.get("Content-Type") != "application/x-protobuf":
                return self.answer(415, b"only application/x-protobuf", "text/plain")
            with lock:
                headers = {k.lower(): v for k, v in self.headers.items()}
                with open(args.out + ".exports", "a") as f:
                    f.write(json.dumps(headers) + "\n")
                if failures[0] > 0:
                    failures[0] -= 1
                    return self.answer(503, b"busy", "text/plain", [("Retry-After", "0")])
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            lines = []
            for rs in request.resource_spans:
                resource = attributes(rs.resource.attributes)
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        lines.append(json.dumps({
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "flags": s.flags,
                            "name": s.name,
                            "kind": s.kind,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "status_code": s.status.code,
                            "status_message": s.status.message,
                            "attributes": attributes(s.attributes),
                            "resource": resource,
                            "scope": ss.scope.name,
                        }))
            with lock, open(args.out, "a") as f:
                f.write("".join(line + "\n" for line in lines))
            self.answer(200, ExportTraceServiceResponse().SerializeToString())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
