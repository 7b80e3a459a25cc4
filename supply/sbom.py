#!/usr/bin/env python3
"""`make sbom`: one CycloneDX 1.5 JSON SBOM per shipped binary, in target/sbom/.

    python3 supply/sbom.py [--out target/sbom] [--target <triple>]

cargo-cyclonedx (`--describe binaries`) writes its SBOMs beside each Cargo.toml, so it
runs on a copy of the working tree (tracked and untracked files, not ignored ones) under
the output directory. It resolves features for the whole workspace, which lists crates
that a binary built alone (`cargo build -p <package>`, as `make deb` builds the probe)
does not link (aws-lc-rs for the probe, through the server's rustls features). Each SBOM
is therefore pruned to `cargo tree -p <package> -e normal,build --target <triple>`, and
says so in metadata.properties. Then each file is checked: CycloneDX, spec 1.5, the
binary (an application) as metadata.component, and exactly cargo's dependency set as components, each
with a purl and, for crates.io crates, Cargo.lock's SHA-256.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = "1.5"
# binary -> (package, package directory): what the project ships. The server image runs
# `vantage`; the probe's Debian package carries `vantage-probe`; `vantage-sign` signs
# firmware releases offline (docs/PROBE.md). crdgen (operator) is a development tool.
SHIPPED = {
    "vantage": ("vantage", "cli"),
    "vantage-probe": ("vantage-probe", "probe-agent"),
    "vantage-sign": ("vantage-firmware", "firmware"),
}


class SbomError(Exception):
    pass


def run(cmd, cwd, env=None):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise SbomError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stderr.strip()}")
    return res.stdout


def copy_tree(dst: Path) -> None:
    """The working tree (tracked and untracked, not ignored files) into dst."""
    if dst.exists():
        shutil.rmtree(dst)
    files = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], ROOT).split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)


def cargo_set(tree: Path, package: str, target: str) -> set:
    """`name@version` of the package and everything `cargo build -p package` builds."""
    out = run(["cargo", "tree", "--locked", "-p", package, "-e", "normal,build",
               "--target", target, "--prefix", "none", "--no-dedupe", "--charset", "ascii"],
              tree)
    got = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].startswith("v"):
            got.add(f"{parts[0]}@{parts[1][1:]}")
    return got


def prune(bom: dict, keep: set, note: str) -> int:
    """Drop components outside `keep` (name@version), and their dependency entries."""
    comps = bom.get("components", [])
    kept = [c for c in comps if f"{c['name']}@{c['version']}" in keep]
    refs = {c["bom-ref"] for c in kept} | {bom["metadata"]["component"]["bom-ref"]}
    bom["components"] = kept
    deps = [d for d in bom.get("dependencies", []) if d["ref"] in refs]
    for d in deps:
        d["dependsOn"] = [r for r in d.get("dependsOn", []) if r in refs]
    bom["dependencies"] = deps
    bom["metadata"].setdefault("properties", []).append(
        {"name": "vantage:sbom:components", "value": note})
    return len(comps) - len(kept)


def check(bom: dict, binary: str, package: str, expected: set) -> None:
    """Raise SbomError unless `bom` is this binary's CycloneDX SBOM with exactly `expected`."""
    if bom.get("bomFormat") != "CycloneDX":
        raise SbomError(f"{binary}: bomFormat is {bom.get('bomFormat')!r}, not 'CycloneDX'")
    if bom.get("specVersion") != SPEC:
        raise SbomError(f"{binary}: specVersion is {bom.get('specVersion')!r}, not {SPEC!r}")
    top = bom.get("metadata", {}).get("component", {})
    if top.get("name") != binary or top.get("type") != "application":
        raise SbomError(f"{binary}: metadata.component is {top.get('name')!r} "
                        f"({top.get('type')!r}), not the application {binary!r}")
    comps = bom.get("components") or []
    if not comps:
        raise SbomError(f"{binary}: no components")
    listed = {f"{c['name']}@{c['version']}" for c in comps}
    # cargo-cyclonedx names the binary's crate after the binary (vantage-sign), cargo tree
    # after the package (vantage-firmware): the package itself is not a component.
    want = expected - {f"{package}@{top.get('version')}"}
    if listed != want:
        raise SbomError(f"{binary}: components differ from cargo's dependency set: "
                        f"missing {sorted(want - listed)[:10]}, extra {sorted(listed - want)[:10]}")
    for c in comps:
        if not str(c.get("purl", "")).startswith(f"pkg:cargo/{c['name']}@"):
            raise SbomError(f"{binary}: component {c['name']} has no cargo purl")
        if c["bom-ref"].startswith("registry+") and not any(
                h.get("alg") == "SHA-256" and len(h.get("content", "")) == 64
                for h in c.get("hashes", [])):
            raise SbomError(f"{binary}: crates.io component {c['name']} has no SHA-256")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "target" / "sbom"))
    ap.add_argument("--target", default=None, help="target triple (default: the host's)")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    target = args.target or next(
        line.split()[1] for line in run(["rustc", "-vV"], ROOT).splitlines()
        if line.startswith("host:"))
    tree = out / "tree"
    try:
        copy_tree(tree)
        env = dict(os.environ)
        env.setdefault("SOURCE_DATE_EPOCH", run(["git", "log", "-1", "--format=%ct"], ROOT).strip())
        run(["cargo", "cyclonedx", "--manifest-path", str(tree / "Cargo.toml"),
             "--describe", "binaries", "--format", "json", "--spec-version", SPEC,
             "--target", target, "-q"], tree, env)
        for binary, (package, pdir) in SHIPPED.items():
            src = tree / pdir / f"{binary}_bin.cdx.json"
            if not src.is_file():
                raise SbomError(f"cargo-cyclonedx wrote no {src.relative_to(tree)}: "
                                f"is {binary} still a [[bin]] of {package}?")
            # The copy's absolute path would make the file depend on where it was made.
            text = src.read_text().replace(f"file://{tree}", "file:///vantage")
            bom = json.loads(text)
            expected = cargo_set(tree, package, target)
            dropped = prune(bom, expected, f"cargo tree -p {package} -e normal,build "
                            f"--target {target}: {len(expected) - 1} crates")
            check(bom, binary, package, expected)
            dst = out / f"{binary}.cdx.json"
            dst.write_text(json.dumps(bom, indent=2) + "\n")
            print(f"{dst.relative_to(ROOT) if dst.is_relative_to(ROOT) else dst}: "
                  f"CycloneDX {SPEC}, {len(bom['components'])} components "
                  f"({dropped} dropped: workspace-wide features), target {target}")
    except SbomError as e:
        print(f"sbom: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
