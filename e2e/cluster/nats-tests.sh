#!/usr/bin/env bash
# vantage: the NATS JetStream cluster tests (`make test-cluster` calls this).
#
# Brings up a fresh three-node cluster (e2e/stack/nats-cluster.sh), runs
# collector/tests/nats_cluster.rs against it (RESULTS leader killed during ingest, two
# collectors sharing the durable consumer, schedules bucket leader killed during changes,
# a client started with a node down), then e2e/cluster/test_probe_failover.py (real
# components and probe agents on the cluster, the controller's NATS node killed twice:
# every probe keeps its SSH session; ClickHouse and the Kubernetes stand-in come from a
# private single-node stack, e2e/stack/stack.sh, on ports 36xxx), brings both down,
# and prints how long each step took.
#
# Env: VANTAGE_CLUSTER_DIR (default /tmp/vantage-nats-cluster-tests; wiped at start),
# NATS_CLUSTER_PORTS / NATS_CLUSTER_ROUTE_PORTS / NATS_CLUSTER_MONITOR_PORTS (see
# nats-cluster.sh), NATS_CLUSTER_RESULTS (results published in the ingest test, 3000),
# KEEP_CLUSTER=1 leaves the cluster running afterwards. Exit status: the tests'.
# The probe failover test: NATS_CLUSTER_E2E=0 leaves it out; FAILOVER_STACK_DIR (its
# single-node stack's state, default /tmp/vantage-nats-failover-stack; wiped at start),
# FAILOVER_PROBES (probe agents, 12); the stack's ports FAILOVER_NATS_PORT (23222),
# FAILOVER_NATS_MONITOR_PORT (23822), FAILOVER_CLICKHOUSE_HTTP_PORT (23123),
# FAILOVER_CLICKHOUSE_TCP_PORT (23900), FAILOVER_MOTO_PORT (23500), FAILOVER_KUBE_PORT (23443).
# Optional (NATS_CLUSTER_BENCH=1): after the tests, results/s drained by 1 vs 2 collectors
# on the one durable consumer (collector/examples/cluster_collectors_bench.rs, release
# build); NATS_CLUSTER_BENCH_RESULTS (per round, 100000), NATS_CLUSTER_BENCH_ROUNDS (2);
# its sink is ClickHouse if CLICKHOUSE_URL is set, else memory.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
export VANTAGE_CLUSTER_DIR="${VANTAGE_CLUSTER_DIR:-/tmp/vantage-nats-cluster-tests}"
STACK="$REPO/e2e/stack/nats-cluster.sh"
E2E="${NATS_CLUSTER_E2E:-1}"
FAILOVER_STACK_DIR="${FAILOVER_STACK_DIR:-/tmp/vantage-nats-failover-stack}"
PY="${VANTAGE_VENV:-$REPO/.venv}/bin/python"
single_stack() {
  VANTAGE_STACK_DIR="$FAILOVER_STACK_DIR" NATS_PORT="${FAILOVER_NATS_PORT:-23222}" \
    NATS_MONITOR_PORT="${FAILOVER_NATS_MONITOR_PORT:-23822}" \
    CLICKHOUSE_HTTP_PORT="${FAILOVER_CLICKHOUSE_HTTP_PORT:-23123}" \
    CLICKHOUSE_TCP_PORT="${FAILOVER_CLICKHOUSE_TCP_PORT:-23900}" MOTO_PORT="${FAILOVER_MOTO_PORT:-23500}" \
    KUBE_PORT="${FAILOVER_KUBE_PORT:-23443}" bash "$REPO/e2e/stack/stack.sh" "$1"
}

log() { printf '[nats-tests] %s\n' "$*" >&2; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

T0="$(now)"
cd "$REPO"
t="$(now)"
cargo test -p vantage-collector --test nats_cluster --no-run
[ "$E2E" = 0 ] || cargo build -p vantage -p vantage-probe
BUILD="$(took "$t")"

bash "$STACK" down
rm -rf "$VANTAGE_CLUSTER_DIR"
cleanup() {
  [ "$E2E" = 0 ] || single_stack down || true
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    log "cluster left running (KEEP_CLUSTER=1): bash $STACK down, with VANTAGE_CLUSTER_DIR=$VANTAGE_CLUSTER_DIR"
  else
    bash "$STACK" down || true
  fi
}
trap cleanup EXIT
t="$(now)"
bash "$STACK" up
UP="$(took "$t")"
set -a
# shellcheck disable=SC1091
. "$VANTAGE_CLUSTER_DIR/env"
set +a

t="$(now)"
rc=0
# One test at a time: each kills a node, and two dead nodes leave no quorum.
cargo test -p vantage-collector --test nats_cluster -- --test-threads=1 --nocapture || rc=$?
TESTS="$(took "$t")"

FAILOVER=""
if [ "$E2E" != 0 ]; then
  t="$(now)"
  single_stack down
  rm -rf "$FAILOVER_STACK_DIR"
  erc=0
  single_stack up || erc=$?
  if [ "$erc" -eq 0 ]; then
    (cd "$REPO/e2e" && VANTAGE_STACK_DIR="$FAILOVER_STACK_DIR" "$PY" -m pytest -s -rs cluster/test_probe_failover.py) || erc=$?
  fi
  single_stack down || true
  FAILOVER=", probe failover e2e $(took "$t")"
  [ "$erc" -eq 0 ] || { log "probe failover e2e failed (exit $erc)"; rc=1; }
fi

BENCH=""
if [ "${NATS_CLUSTER_BENCH:-0}" = 1 ]; then
  t="$(now)"
  brc=0
  cargo run --release -q -p vantage-collector --example cluster_collectors_bench -- \
    "${NATS_CLUSTER_BENCH_RESULTS:-100000}" "${NATS_CLUSTER_BENCH_ROUNDS:-2}" || brc=$?
  BENCH=", bench $(took "$t")"
  [ "$brc" -eq 0 ] || { log "bench failed (exit $brc)"; rc=1; }
fi
bash "$STACK" status || { log "the cluster is not whole after the tests"; rc=1; }

log "build $BUILD, cluster up $UP, tests $TESTS$FAILOVER$BENCH, total $(took "$T0"); exit $rc"
exit $rc
