#!/usr/bin/env python3
"""Render the vantage Helm chart offline into snapshot files, or check them.

    .venv/bin/python charts/render.py           # copy crds/*.yaml into the chart, write charts/rendered/*.yaml
    .venv/bin/python charts/render.py --check   # exit 1 if a CRD copy or a snapshot is stale

There is no helm binary: the PyPI package helm-python-sdk (pinned in
e2e/requirements.txt) carries Helm v4's engine. Rendering validates the values against
values.schema.json as `helm install` does.

Cases: `default` (the chart's own values) and one per `charts/vantage/ci/<case>.yaml`.
A snapshot is what `helm template` prints: the CRDs first, then every template in path
order, each document headed by `# Source: <path>`; NOTES.txt is left out.
"""
from __future__ import annotations

import argparse
import difflib
import pathlib
import sys
from typing import Any

import yaml

CHARTS = pathlib.Path(__file__).resolve().parent
ROOT = CHARTS.parent
CHART = CHARTS / 'vantage'
RENDERED = CHARTS / 'rendered'
GENERATED_CRDS = ROOT / 'crds'
RELEASE = 'vantage'
NAMESPACE = 'vantage'
REFRESH = '.venv/bin/python charts/render.py'


def cases() -> dict[str, dict[str, Any] | None]:
    """Case name -> values (None: the chart's defaults)."""
    out: dict[str, dict[str, Any] | None] = {'default': None}
    for path in sorted((CHART / 'ci').glob('*.yaml')):
        out[path.stem] = yaml.safe_load(path.read_text()) or {}
    return out


def render(values: dict[str, Any] | None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> str:
    """The chart rendered with `values`, as one multi-document YAML text."""
    import helm_python as helm  # imported late: the CRD check works without it

    docs: list[str] = []
    with helm.Chart.load(CHART) as chart:
        for crd in sorted(chart.crds, key=lambda c: c['name']):
            docs.append(f"# Source: {crd['name']}\n{crd['data'].strip()}\n")
        manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    for path in sorted(manifests):
        if path.endswith('NOTES.txt'):
            continue
        for part in manifests[path].split('\n---'):
            body = part.strip('\n')
            # skip documents that are empty or only comments (disabled templates)
            if not any(line.strip() and not line.lstrip().startswith('#') for line in body.splitlines()):
                continue
            if body.startswith('---'):
                body = body[3:].lstrip('\n')
            docs.append(f'# Source: {path}\n{body}\n')
    return '---\n' + '---\n'.join(docs)


def notes(values: dict[str, Any] | None) -> str:
    import helm_python as helm

    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(v for k, v in manifests.items() if k.endswith('NOTES.txt'))


def documents(text: str) -> list[dict[str, Any]]:
    """The objects of a rendered snapshot."""
    return [d for d in yaml.safe_load_all(text) if d]


def crd_problems() -> list[str]:
    """Chart CRD copies that differ from the generated crds/*.yaml."""
    problems = []
    want = {p.name: p.read_bytes() for p in GENERATED_CRDS.glob('*.yaml')}
    have = {p.name: p.read_bytes() for p in (CHART / 'crds').glob('*.yaml')}
    for name in sorted(set(want) | set(have)):
        if name not in have:
            problems.append(f'charts/vantage/crds/{name} is missing (crds/{name} exists)')
        elif name not in want:
            problems.append(f'charts/vantage/crds/{name} has no crds/{name} (removed CRD?)')
        elif want[name] != have[name]:
            problems.append(f'charts/vantage/crds/{name} differs from crds/{name}')
    return problems


def sync_crds() -> None:
    target = CHART / 'crds'
    target.mkdir(exist_ok=True)
    for stale in target.glob('*.yaml'):
        if not (GENERATED_CRDS / stale.name).exists():
            stale.unlink()
    for src in GENERATED_CRDS.glob('*.yaml'):
        dst = target / src.name
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            dst.write_bytes(src.read_bytes())
            print(f'copied crds/{src.name} -> charts/vantage/crds/{src.name}')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--check', action='store_true', help='fail if a CRD copy or a snapshot is stale; write nothing')
    args = ap.parse_args()

    if args.check:
        stale: list[str] = crd_problems()
        if not stale:  # the snapshots include the CRDs: compare them only when the copies are right
            wanted = {f'{case}.yaml': render(values) for case, values in cases().items()}
            present = {p.name for p in RENDERED.glob('*.yaml')}
            for name, text in sorted(wanted.items()):
                path = RENDERED / name
                if not path.exists():
                    stale.append(f'charts/rendered/{name} is missing')
                elif path.read_text() != text:
                    diff = list(difflib.unified_diff(path.read_text().splitlines(), text.splitlines(),
                                                     f'charts/rendered/{name}', 'rendered now', lineterm='', n=1))
                    stale.append(f'charts/rendered/{name} is stale:\n    ' + '\n    '.join(diff[:30]))
            for name in sorted(present - set(wanted)):
                stale.append(f'charts/rendered/{name} has no case (remove it)')
        if stale:
            print('charts: stale files:', file=sys.stderr)
            for s in stale:
                print(f'  - {s}', file=sys.stderr)
            print(f'refresh with: {REFRESH}   (or make charts)', file=sys.stderr)
            return 1
        print(f'charts: CRD copies and {len(cases())} snapshots are current')
        return 0

    sync_crds()
    RENDERED.mkdir(exist_ok=True)
    wanted = {}
    for case, values in cases().items():
        wanted[f'{case}.yaml'] = render(values)
    for old in RENDERED.glob('*.yaml'):
        if old.name not in wanted:
            old.unlink()
            print(f'removed charts/rendered/{old.name}')
    for name, text in wanted.items():
        path = RENDERED / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f'wrote charts/rendered/{name} ({len(documents(text))} objects)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
