#!/usr/bin/env bash
# vantage on a replicated, sharded ClickHouse cluster (2 shards x 2 replicas + ZooKeeper):
# bring the cluster up, run the cluster tests, bring it down, print timings.
#
#   e2e/cluster/clickhouse-tests.sh            (make test-cluster calls it)
#
# Steps:
#   1. e2e/stack/clickhouse-cluster.sh up (fresh state dir) and a private moto S3
#   2. cli/tests/clickhouse_cluster.rs: bad input (unknown cluster, ZooKeeper down) is
#      refused before anything is created; the collector stores every result exactly once
#      while replicas are killed and a shard's replica set restarts; Distributed answers
#   3. collector/tests/reprocess_cluster.rs: reprocess checksums on the cluster = one node
#   4. api/tests/aggregates.rs on the cluster (the API's SQL through Distributed tables)
#   5. e2e/tests/test_dashboards.py on a cluster-migrated database (the Grafana panels' SQL)
#   5b. engines/tests/clickhouse_cluster.rs: the engines' geo_answers/geo_crowdsource are
#      Replicated behind Distributed; an unknown cluster is refused before anything is created
#   5c. e2e/cluster/test_replicas.py: two `vantage api` and two `vantage engines` replicas
#      (through nodes 1 and 3) behind HAProxy answer the same, each serves a share, a
#      killed one is taken out; requests/s 2 vs 1 replicas (SKIPPED without haproxy)
#   6. optional (CH_CLUSTER_BENCH=1): rows/s through Distributed vs one node
# Env: CH_CLUSTER_DIR (default /tmp/vantage-ch-cluster-tests; wiped first), the port
# variables of clickhouse-cluster.sh, CLUSTER_MOTO_PORT (21500), VANTAGE_VENV, KEEP_CLUSTER=1
# (leave it up for debugging).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="${VANTAGE_VENV:-$REPO/.venv}"
export CH_CLUSTER_DIR="${CH_CLUSTER_DIR:-/tmp/vantage-ch-cluster-tests}"
MOTO_PORT="${CLUSTER_MOTO_PORT:-21500}"
CTL="$REPO/e2e/stack/clickhouse-cluster.sh"

log() { printf '[cluster-tests] %s\n' "$*" >&2; }
T0=$SECONDS
TIMINGS=()
step() { # name command...
  local name="$1" t=$SECONDS rc=0
  shift
  log "== $name"
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-44s %4ss  %s' "$name" $((SECONDS - t)) "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
  [ $rc -eq 0 ] || { FAILED=1; revive; }
}
# A failed step may leave a node it stopped down: start it again, so that one failure does
# not fail every later step with it (start-node is a no-op for a running node).
revive() {
  [ -f "${CH_CLUSTER_DIR}/env" ] || return 0
  local n
  for n in 1 2 3 4; do bash "$CTL" start-node "$n" || log "node $n does not start again; later steps will fail on it"; done
}
FAILED=0
MOTO_PID=""

cleanup() {
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  if [ "${KEEP_CLUSTER:-0}" != 1 ]; then bash "$CTL" down || true; fi
}
trap cleanup EXIT

# ---- 1. cluster and S3 -----------------------------------------------------------------
if [ -f "$CH_CLUSTER_DIR/pids/ch1.pid" ]; then bash "$CTL" down || true; fi
rm -rf "$CH_CLUSTER_DIR"
step "cluster up (ZooKeeper + 4 clickhouse-server)" bash "$CTL" up
[ "$FAILED" = 0 ] || { printf '%s\n' "${TIMINGS[@]}"; exit 1; }
set -a
# shellcheck disable=SC1091
. "$CH_CLUSTER_DIR/env"
set +a
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export S3_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
(exec setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" > "$CH_CLUSTER_DIR/logs/moto.log" 2>&1) &
MOTO_PID=$!
for _ in $(seq 1 100); do curl -fsS "$S3_ENDPOINT/moto-api/" >/dev/null 2>&1 && break; sleep 0.2; done

# ---- 2..4. Rust tests --------------------------------------------------------------------
step "build the cluster tests" bash -c "cd '$REPO' && cargo test -p vantage --test clickhouse_cluster --no-run -q && cargo test -p vantage-collector --test reprocess_cluster --no-run -q && cargo test -p vantage-api --test aggregates --no-run -q"
step "cli: bad input, collector exactly-once" bash -c "cd '$REPO' && cargo test -q -p vantage --test clickhouse_cluster -- --test-threads=1"
step "collector: reprocess checksum cluster = node" bash -c "cd '$REPO' && cargo test -q -p vantage-collector --test reprocess_cluster"
step "api: aggregates SQL through Distributed" bash -c "cd '$REPO' && cargo test -q -p vantage-api --test aggregates"

# ---- 5. Grafana dashboards' SQL ----------------------------------------------------------
dashboards() {
  local db="vclu_dash_$$"
  "$REPO/target/debug/vantage" migrate --clickhouse-url "$CLICKHOUSE_URL" --clickhouse-db "$db" \
    --clickhouse-cluster "$CLICKHOUSE_CLUSTER" || return 1
  local rc=0
  (cd "$REPO" && CLICKHOUSE_DB="$db" "$VENV/bin/python" -m pytest -q -p no:cacheprovider e2e/tests/test_dashboards.py) || rc=$?
  curl -fsS "$CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS $db ON CLUSTER $CLICKHOUSE_CLUSTER" >/dev/null || true
  return $rc
}
step "dashboards: panel SQL on the cluster" dashboards
step "engines: geo tables through Distributed" bash -c "cd '$REPO' && cargo test -q -p vantage-engines --test clickhouse_cluster"

# ---- 5c. replicas behind one address (HAProxy) -------------------------------------------
replicas() {
  command -v haproxy >/dev/null 2>&1 \
    || log "SKIPPED replicas: haproxy is not installed (e2e/stack/setup.sh installs the Debian package)"
  (cd "$REPO" && cargo build -q -p vantage \
    && "$VENV/bin/python" -m pytest -q -s -rs -p no:cacheprovider e2e/cluster/test_replicas.py)
}
step "replicas: 2 api + 2 engines behind haproxy" replicas

# ---- 6. optional ingest rate --------------------------------------------------------------
if [ "${CH_CLUSTER_BENCH:-0}" = 1 ]; then
  step "bench: rows/s Distributed vs one node" bash "$HERE/clickhouse-bench.sh"
fi

log "timings:"
printf '  %s\n' "${TIMINGS[@]}" >&2
log "total $((SECONDS - T0))s"
exit "$FAILED"
