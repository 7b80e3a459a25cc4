#!/usr/bin/env bash
# Idempotent installer for vantage's local e2e stack.
#   - Debian packages: clickhouse-server/-client (18.16 on bookworm), iproute2, iputils-ping
#   - Python venv at ${VANTAGE_VENV:-<repo>/.venv} with e2e/requirements.txt
# Safe to re-run: apt is skipped when everything is present, pip is skipped when
# the venv's stamp matches the hash of requirements.txt.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
E2E="$(cd "$HERE/.." && pwd)"
REPO="$(cd "$E2E/.." && pwd)"
VENV="${VANTAGE_VENV:-$REPO/.venv}"
REQ="$E2E/requirements.txt"
PYTHON="${VANTAGE_PYTHON:-python3}"

log() { printf '[setup] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# ---- Debian packages --------------------------------------------------------
need_apt=()
command -v clickhouse-server >/dev/null 2>&1 || need_apt+=(clickhouse-server)
command -v clickhouse-client >/dev/null 2>&1 || need_apt+=(clickhouse-client)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
# ZooKeeper 3.8 for the ClickHouse cluster (e2e/stack/clickhouse-cluster.sh, make test-cluster)
[ -x /usr/share/zookeeper/bin/zkServer.sh ] || need_apt+=(zookeeper)
# HAProxy: one address in front of API and engines replicas (e2e/cluster/test_replicas.py)
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
# The console's browser tests drive Debian's Chromium with npm playwright-core (never a
# downloaded browser); Node 20 and npm build the console.
[ -x /usr/bin/chromium ] || need_apt+=(chromium fonts-dejavu-core)
# python3-venv is needed when the system python lacks ensurepip
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then need_apt+=(python3-venv); fi

if [ "${#need_apt[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  if ! command -v clickhouse-server >/dev/null 2>&1 || [ ! -x /usr/bin/chromium ] || [ ! -x /usr/share/zookeeper/bin/zkServer.sh ] \
    || ! command -v haproxy >/dev/null 2>&1; then
    log "apt-get update"
    $SUDO apt-get update
  fi
  log "apt-get install ${need_apt[*]}"
  $SUDO apt-get install -y --no-install-recommends \
    clickhouse-server clickhouse-client iproute2 iputils-ping "${need_apt[@]}" 
  # The Debian package may start (or enable) its own clickhouse-server service;
  # the stack runs its own instance on non-default ports, so that is harmless,
  # but stop it where possible to keep ports 8123/9000 free and save memory.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $SUDO systemctl stop clickhouse-server >/dev/null 2>&1 || true
    $SUDO systemctl stop haproxy >/dev/null 2>&1 || true
  fi
else
  log "Debian packages present"
fi

# ---- Python venv ------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi

STAMP="$VENV/.vantage-e2e-requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ "$want" != "$have" ]; then
  log "pip install -r $REQ"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --upgrade pip
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQ"
  echo "$want" > "$STAMP"
else
  log "venv up to date ($VENV)"
fi

# ---- Node (the console) -----------------------------------------------------
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  log "Node.js 20 or later with npm is needed to build the console (found: $(node --version 2>/dev/null || echo none)); install it from nodejs.org or your distribution's backports"
  exit 1
fi

log "done: venv=$VENV clickhouse=$(command -v clickhouse-server)"
