#!/usr/bin/env bash
# `make repro-check`: the probe agent built twice from clean trees gives the same bytes.
#
# Two fresh clones of one commit (REPRO_REV, default HEAD: committed code only), at paths
# of different lengths, each with its own target dir; the second with its own CARGO_HOME
# (a copy of the crate tarballs and index, unpacked anew), so the two builds see different
# absolute paths for both the workspace and the crates' sources. Each is built as
# `make deb` builds the shipped probe (cargo-deb, profile release-probe, glibc linked
# statically, host target) plus the reproducibility levers:
#   --remap-path-prefix for the tree and CARGO_HOME (panic locations carry source paths),
#   SOURCE_DATE_EPOCH = the commit's time (cargo-deb's file times in the .deb).
# Compares sha256 of the built executable, of the one inside the .deb, and of the .deb;
# on a difference prints where (diffoscope if installed, else cmp and strings).
# Same toolchain and same libc6-dev on both sides by construction: the check shows that
# the build does not depend on where or when it runs, given those (docs/SUPPLY-CHAIN.md).
#   REPRO_DIR (default /tmp/vantage-repro: removed first), REPRO_JOBS (cargo -j),
#   REPRO_NICE (default 10).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REV="$(git -C "$REPO" rev-parse "${REPRO_REV:-HEAD}^{commit}")"
WORK="${REPRO_DIR:-/tmp/vantage-repro}"
NICE="${REPRO_NICE:-10}"
JOBS=()
[ -n "${REPRO_JOBS:-}" ] && JOBS=(-j "$REPRO_JOBS")
TARGET="$(rustc -vV | sed -n 's/^host: //p')"
EPOCH="$(git -C "$REPO" log -1 --format=%ct "$REV")"
HOME_A="${CARGO_HOME:-$HOME/.cargo}"
command -v cargo-deb >/dev/null || cargo deb --version >/dev/null 2>&1 || {
  echo "repro-check: cargo-deb is missing: run \`make deb\` once (it installs the pinned version)" >&2
  exit 2
}

rm -rf "$WORK"
mkdir -p "$WORK"
TREE_A="$WORK/a/vantage"
TREE_B="$WORK/bb/another/path/vantage-src"
HOME_B="$WORK/bb/cargo-home"
mkdir -p "$HOME_B/registry"
cp -a "$HOME_A/registry/index" "$HOME_A/registry/cache" "$HOME_B/registry/"
for f in config.toml config; do
  [ -f "$HOME_A/$f" ] && cp "$HOME_A/$f" "$HOME_B/"
done

build() { # side tree cargo_home
  local side="$1" tree="$2" ch="$3" t0 t1
  git clone -q --no-hardlinks "$REPO" "$tree"
  git -C "$tree" checkout -q --detach "$REV"
  t0=$(date +%s)
  (cd "$tree" && env CARGO_HOME="$ch" CARGO_TARGET_DIR="$tree/target" SOURCE_DATE_EPOCH="$EPOCH" \
    RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$tree=/vantage --remap-path-prefix=$ch=/cargo" \
    nice -n "$NICE" cargo deb --locked -p vantage-probe --target "$TARGET" --output "$tree/target/debian/" \
    -- "${JOBS[@]}") >"$WORK/build-$side.log" 2>&1 || {
    tail -n 30 "$WORK/build-$side.log" >&2
    echo "repro-check: build $side failed (log: $WORK/build-$side.log)" >&2
    exit 2
  }
  t1=$(date +%s)
  echo "build $side: $((t1 - t0)) s ($tree)"
  mkdir -p "$WORK/out-$side/deb"
  cp "$tree/target/$TARGET/release-probe/vantage-probe" "$WORK/out-$side/vantage-probe"
  cp "$tree"/target/debian/vantage-probe_*.deb "$WORK/out-$side/"
  dpkg-deb -x "$tree"/target/debian/vantage-probe_*.deb "$WORK/out-$side/deb"
}

echo "repro-check: commit $REV, $(rustc -V), target $TARGET, SOURCE_DATE_EPOCH=$EPOCH"
build a "$TREE_A" "$HOME_A"
build b "$TREE_B" "$HOME_B"

same=1
compare() { # label relative-path
  local ha hb
  ha=$(cd "$WORK/out-a" && sha256sum $2 | cut -d' ' -f1)
  hb=$(cd "$WORK/out-b" && sha256sum $2 | cut -d' ' -f1)
  if [ "$ha" = "$hb" ]; then
    echo "same      $1: sha256 $ha"
  else
    echo "DIFFERENT $1: a $ha, b $hb"
    same=0
  fi
}
compare "executable (target/$TARGET/release-probe/vantage-probe)" vantage-probe
compare "executable in the .deb (usr/bin/vantage-probe)" deb/usr/bin/vantage-probe
compare ".deb" 'vantage-probe_*.deb'

for side in a b; do
  tree=$([ $side = a ] && echo "$TREE_A" || echo "$TREE_B")
  ch=$([ $side = a ] && echo "$HOME_A" || echo "$HOME_B")
  leaks=$(strings -n 6 "$WORK/out-$side/deb/usr/bin/vantage-probe" | grep -c -e "$tree" -e "$ch" || true)
  echo "build $side: $leaks strings with its tree or CARGO_HOME path"
done

if [ "$same" = 1 ]; then
  echo "repro-check: REPRODUCIBLE"
  exit 0
fi
if command -v diffoscope >/dev/null; then
  diffoscope --text "$WORK/diffoscope.txt" "$WORK/out-a/vantage-probe" "$WORK/out-b/vantage-probe" || true
  echo "diffoscope: $WORK/diffoscope.txt"
else
  cmp -l "$WORK/out-a/vantage-probe" "$WORK/out-b/vantage-probe" | wc -l | sed 's/^/bytes differing: /'
  diff <(strings -n 8 "$WORK/out-a/vantage-probe") <(strings -n 8 "$WORK/out-b/vantage-probe") | head -n 40
fi
echo "repro-check: NOT REPRODUCIBLE (outputs in $WORK)"
exit 1
