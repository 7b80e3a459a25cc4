# vantage: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
STACK := bash e2e/stack/stack.sh
export VANTAGE_VENV := $(VENV)
export VANTAGE_STACK_DIR ?= /tmp/vantage-stack

.PHONY: all setup build crds charts check-generated lint unit e2e test demo geo-eval stack-up stack-down stack-status clean deb

all: build

## setup: install what the local stack and the tests need (apt, a Python venv)
setup:
	bash e2e/stack/setup.sh

build:
	cargo build --workspace --bins

## crds: regenerate crds/*.yaml from the Rust types, and the chart's copies and snapshots
crds:
	cargo run -q -p vantage-operator --bin crdgen
	$(PY) charts/render.py

## charts: refresh the chart's copies (CRDs, fingerprints) and charts/rendered/*.yaml
charts:
	$(PY) charts/render.py

check-generated:
	cargo run -q -p vantage-operator --bin crdgen -- --check
	$(PY) charts/render.py --check

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## unit: Rust tests that need no servers (the integration tests skip themselves)
unit:
	cargo test --workspace

## e2e: start the local stack, run every Rust and end-to-end test against it, stop it
e2e: build
	bash e2e/run-tests.sh

test: setup lint check-generated e2e

## demo: one real ping measurement through every component, printed from ClickHouse
demo: setup build
	$(STACK) up
	cd e2e && $(PY) demo.py; rc=$$?; cd .. && $(STACK) down; exit $$rc

## geo-eval: geolocation accuracy on a simulated world in network namespaces (root): 800 probes,
## 100 targets, anchors + on-demand pings as IPmap; prints per engine and the reducer (docs/GEOLOCATION.md)
geo-eval:
	cargo run -q --release -p vantage-geo-eval --example geo_eval -- --netns $(GEO_EVAL_ARGS)

## deb: the probe's Debian package with cargo-deb (installed at the pinned version if missing):
## release-probe profile, glibc linked statically (docs/PROBE.md), into target/debian/
deb:
	@cargo deb --version 2>/dev/null | grep -qx 'cargo-deb 3.8.0' || cargo install cargo-deb --version 3.8.0 --locked
	RUSTFLAGS="-C target-feature=+crt-static" cargo deb -p vantage-probe --target "$$(rustc -vV | sed -n 's/^host: //p')" --output target/debian/

stack-up:
	$(STACK) up
stack-down:
	$(STACK) down
stack-status:
	$(STACK) status

clean:
	cargo clean
