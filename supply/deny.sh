#!/usr/bin/env bash
# `make deny`: cargo deny with deny.toml (docs/SUPPLY-CHAIN.md).
#  1. the workspace: licences, sources, bans (duplicate versions, wildcards); always.
#  2. fuzz/ (its own workspace and lockfile, built by `make test`): licences and sources.
#  3. advisories (RustSec) of both lockfiles, when the advisory database can be fetched;
#     otherwise one visible SKIPPED line. A vulnerability, an unmaintained or unsound crate,
#     or a yanked version fails.
# Any violation exits non-zero. CARGO_DENY is the binary (default: cargo-deny on PATH);
# DENY_FETCH_TIMEOUT bounds the database fetch (seconds, default 180).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DENY="${CARGO_DENY:-cargo-deny}"
TIMEOUT="${DENY_FETCH_TIMEOUT:-180}"

# libfuzzer-sys's licence exception (deny.toml) concerns fuzz/ only.
"$DENY" --locked check bans licenses sources -A license-exception-not-encountered || {
  echo "cargo deny: the workspace FAILED (deny.toml says why each exception exists)" >&2
  exit 1
}
# The duplicate skips and most allowed licences concern the main workspace only.
# Not --locked: fuzz/Cargo.lock follows the workspace's crates as `cargo fuzz build` (no
# --locked, in `make fuzz-smoke`) updates it, so this checks what the fuzz build will use.
"$DENY" --manifest-path fuzz/Cargo.toml check licenses sources \
  -A license-not-encountered || {
  echo "cargo deny: fuzz/ FAILED" >&2
  exit 1
}

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if timeout "$TIMEOUT" "$DENY" fetch db >"$log" 2>&1; then
  "$DENY" --locked check advisories || {
    echo "cargo deny: advisories FAILED for the workspace" >&2
    exit 1
  }
  "$DENY" --manifest-path fuzz/Cargo.toml check advisories -A advisory-not-detected || {
    echo "cargo deny: advisories FAILED for fuzz/" >&2
    exit 1
  }
else
  why="$(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-200)"
  [ -n "$why" ] || why="no answer within ${TIMEOUT}s"
  echo "cargo deny: advisories SKIPPED: cannot fetch the RustSec advisory database ($why)"
fi
