#!/usr/bin/env bash
# Rows/s into `results`: through the cluster's Distributed table (insert_distributed_sync=1,
# 2 shards x 2 replicas) vs a plain single-node table on the same machine. Needs the
# cluster's env (e2e/stack/clickhouse-cluster.sh up; source its env file); called by
# e2e/cluster/clickhouse-tests.sh when CH_CLUSTER_BENCH=1.
# BENCH_ROWS (default 200000) rows in INSERTs of BENCH_BATCH (default 10000), as the
# collector sends them (one INSERT per batch), over HTTP from one client.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ROWS="${BENCH_ROWS:-200000}"
BATCH="${BENCH_BATCH:-10000}"
: "${CLICKHOUSE_URL:?source the cluster env file}" "${CLICKHOUSE_CLUSTER:?source the cluster env file}"
VANTAGE="$REPO/target/debug/vantage"
[ -x "$VANTAGE" ] || VANTAGE="$REPO/target/release/vantage"
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT

q() { curl -fsS "$CLICKHOUSE_URL/" --data-binary "$1"; }

python3 - "$ROWS" "$BATCH" "$DIR" <<'PY'
import sys
rows, batch, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
for b in range(0, rows, batch):
    with open(f"{out}/batch-{b // batch:05d}.tsv", "w") as f:
        for i in range(b, min(rows, b + batch)):
            msm = 1_000_000 + i % 997
            raw = '{"type":"ping","msm_id":%d,"prb_id":%d}' % (msm, i % 5000)
            f.write(f"bench-{i}\t{msm}\t{i % 5000}\tping\t{1795000000 + i}\t4\t5020\t192.0.2.1\t192.0.2.1\t"
                    f"198.51.100.7\texample.net\t3\t3\t1.0\t1.5\t2.0\t{raw}\t{1795000000 + i}\n")
PY

run() { # db label
  local db="$1" label="$2" t0 t1 f
  t0=$(date +%s.%N)
  for f in "$DIR"/batch-*.tsv; do
    curl -fsS "$CLICKHOUSE_URL/?query=INSERT%20INTO%20$db.results%20FORMAT%20TabSeparated&insert_distributed_sync=1" \
      --data-binary @"$f" >/dev/null
  done
  t1=$(date +%s.%N)
  python3 -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); r=int(sys.argv[3]); print(f'{sys.argv[4]}: {r} rows in {t:.2f} s = {r/t:,.0f} rows/s')" "$t0" "$t1" "$ROWS" "$label"
}

one="vbench_one_$$"; clu="vbench_clu_$$"
"$VANTAGE" migrate --clickhouse-url "$CLICKHOUSE_URL" --clickhouse-db "$one" >/dev/null 2>&1
"$VANTAGE" migrate --clickhouse-url "$CLICKHOUSE_URL" --clickhouse-db "$clu" --clickhouse-cluster "$CLICKHOUSE_CLUSTER" >/dev/null 2>&1
run "$one" "single node (plain ReplacingMergeTree)"
run "$clu" "cluster via Distributed (2 shards x 2 replicas)"
IFS=, read -r -a URLS <<< "${CLICKHOUSE_URLS:-$CLICKHOUSE_URL}"
if [ "${#URLS[@]}" = 4 ]; then
  for n in 0 2; do
    echo "  shard $((n / 2 + 1)): $(curl -fsS "${URLS[$n]}/" --data-binary "SELECT count() FROM $clu.results_local") rows"
  done
fi
test "$(q "SELECT count() FROM $clu.results")" = "$ROWS"
q "DROP DATABASE IF EXISTS $one" >/dev/null
q "DROP DATABASE IF EXISTS $clu ON CLUSTER $CLICKHOUSE_CLUSTER" >/dev/null
