#!/usr/bin/env python3
"""Print the crates that the dependency graph holds in more than one version, and which
packages pull each version: the reasons for deny.toml's `[bans] skip` list.

    python3 supply/duplicates.py [--manifest-path Cargo.toml]

Reads `cargo metadata` for the targets of deny.toml's [graph] (dev and build
dependencies included, as cargo deny counts them). Prints one TOML line per version of
each duplicated crate: the packages that depend on it, then the workspace's direct
dependencies whose trees hold it. deny.toml skips the older version(s) of each.
"""
import argparse
import collections
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest-path", default="Cargo.toml")
    args = ap.parse_args()
    cmd = ["cargo", "metadata", "--format-version", "1", "--locked",
           "--manifest-path", args.manifest_path]
    with open(ROOT / "deny.toml", "rb") as f:
        targets = tomllib.load(f)["graph"]["targets"]
    for t in targets:
        cmd += ["--filter-platform", t]
    meta = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    pkgs = {p["id"]: p for p in meta["packages"]}
    members = set(meta["workspace_members"])
    dependents = collections.defaultdict(set)
    rev = collections.defaultdict(set)
    for node in meta["resolve"]["nodes"]:
        parent = pkgs[node["id"]]
        for dep in node["deps"]:
            dependents[dep["pkg"]].add(f'{parent["name"]} {parent["version"]}')
            rev[dep["pkg"]].add(node["id"])

    def roots(pid: str) -> set:
        """The workspace's direct dependencies whose dependency tree holds `pid`."""
        seen, todo, found = {pid}, [pid], set()
        while todo:
            cur = todo.pop()
            for parent in rev[cur]:
                if parent in members:
                    if cur not in members:
                        found.add(pkgs[cur]["name"])
                elif parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return found
    by_name = collections.defaultdict(list)
    for node in meta["resolve"]["nodes"]:
        p = pkgs[node["id"]]
        by_name[p["name"]].append(p)
    dups = {n: ps for n, ps in by_name.items() if len({p["version"] for p in ps}) > 1}
    for name in sorted(dups):
        versions = sorted(dups[name], key=lambda p: [int(x) if x.isdigit() else 0
                                                    for x in p["version"].split("-")[0].split(".")])
        for p in versions:
            users = sorted(dependents[p["id"]])
            shown = ", ".join(users[:4]) + (f" and {len(users) - 4} more" if len(users) > 4 else "")
            top = sorted(roots(p["id"]))
            from_ = ", ".join(top[:5]) + (f" and {len(top) - 5} more" if len(top) > 5 else "")
            print(f'{{ crate = "{name}@{p["version"]}", reason = "{shown}; from {from_}" }},')
    print(f"# {len(dups)} crates in more than one version", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
