#!/usr/bin/env bash
# Every test: Rust unit and integration tests, then the end-to-end tests, all with the
# local stack up (integration tests find it through its env file), and the stack
# stopped afterwards whatever happens.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${VANTAGE_VENV:-$root/.venv}/bin/python"
stack="$root/e2e/stack/stack.sh"

bash "$stack" up || exit 1
trap 'bash "$stack" down' EXIT
set -a
# shellcheck disable=SC1091
source "${VANTAGE_STACK_DIR:-/tmp/vantage-stack}/env"
set +a

# The cluster suites (tests named nats_cluster_* and ch_cluster_*) need their clusters:
# `make test-cluster` runs them (e2e/cluster/*.sh).
cd "$root" && cargo test --workspace -- --skip nats_cluster_ --skip ch_cluster_ || exit 1
cd "$root/e2e" && "$py" -m pytest -q tests
