"""The Kubernetes JSONPath of CRD ``additionalPrinterColumns`` (missing keys allowed).

https://kubernetes.io/docs/reference/kubectl/jsonpath/ -- supported: ``.field``, ``['field']``,
``[n]`` (negative too), ``[a:b]``, ``[*]``/``.*``, ``..field`` and filters
``[?(@.a.b == "x")]`` (``== != < > <= >=``, or ``[?(@.a)]`` for presence), chained.
"""
from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r"""
    \.\.(?P<rec>[A-Za-z0-9_\-]+)
  | \.(?P<field>[A-Za-z0-9_\-]+)
  | \.\*(?P<star>)
  | \[\s*(?P<quoted>'[^']*'|"[^"]*")\s*\]
  | \[\s*\?\((?P<filter>(?:[^()]|\([^()]*\))*)\)\s*\]
  | \[\s*(?P<slice>-?\d*\s*:\s*-?\d*)\s*\]
  | \[\s*(?P<index>-?\d+)\s*\]
  | \[\s*\*\s*\](?P<all>)
""", re.X)
_FILTER = re.compile(r'^\s*@((?:\.[A-Za-z0-9_\-]+|\[[^\]]*\])*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+?))?\s*$')
_cache: dict[str, list[tuple[str, Any]]] = {}


def parse(expr: str) -> list[tuple[str, Any]]:
    if expr in _cache:
        return _cache[expr]
    text = expr.strip()
    if text.startswith('{') and text.endswith('}'):
        text = text[1:-1].strip()
    if text.startswith('$'):
        text = text[1:]
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f'unsupported JSONPath {expr!r} at {text[pos:]!r}')
        pos = m.end()
        g = m.groupdict()
        if g['rec'] is not None:
            steps.append(('rec', g['rec']))
        elif g['field'] is not None:
            steps.append(('field', g['field']))
        elif g['star'] is not None or g['all'] is not None:
            steps.append(('all', None))
        elif g['quoted'] is not None:
            steps.append(('field', g['quoted'][1:-1]))
        elif g['filter'] is not None:
            f = _FILTER.match(g['filter'])
            if not f:
                raise ValueError(f'unsupported JSONPath filter {g["filter"]!r}')
            path, op, lit = f.groups()
            value = None
            if op:
                try:
                    value = json.loads(lit.replace("'", '"')) if lit[0] in '\'"' else json.loads(lit)
                except ValueError:
                    value = lit
            steps.append(('filter', (parse(path) if path else [], op, value)))
        elif g['slice'] is not None:
            a, b = (s.strip() for s in g['slice'].split(':'))
            steps.append(('slice', (int(a) if a else None, int(b) if b else None)))
        else:
            steps.append(('index', int(g['index'])))
    _cache[expr] = steps
    return steps


def _step(values: list[Any], kind: str, arg: Any) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if kind == 'field':
            if isinstance(v, dict) and arg in v:
                out.append(v[arg])
        elif kind == 'all':
            out.extend(v.values() if isinstance(v, dict) else v if isinstance(v, list) else [])
        elif kind == 'index':
            if isinstance(v, list) and -len(v) <= arg < len(v):
                out.append(v[arg])
        elif kind == 'slice':
            if isinstance(v, list):
                out.extend(v[arg[0]:arg[1]])
        elif kind == 'rec':
            stack = [v]
            while stack:
                cur = stack.pop(0)
                if isinstance(cur, dict):
                    if arg in cur:
                        out.append(cur[arg])
                    stack.extend(cur.values())
                elif isinstance(cur, list):
                    stack.extend(cur)
        elif kind == 'filter':
            path, op, want = arg
            for item in (v if isinstance(v, list) else [v]):
                got = evaluate(item, path)
                if op is None:
                    if got:
                        out.append(item)
                elif got and _compare(got[0], op, want):
                    out.append(item)
    return out


def _compare(got: Any, op: str, want: Any) -> bool:
    try:
        return {'==': got == want, '!=': got != want}.get(op) if op in ('==', '!=') else \
            {'<': got < want, '>': got > want, '<=': got <= want, '>=': got >= want}[op]
    except TypeError:
        return False


def evaluate(obj: Any, steps: list[tuple[str, Any]]) -> list[Any]:
    values = [obj]
    for kind, arg in steps:
        values = _step(values, kind, arg)
    return values


def cell(obj: Any, expr: str) -> Any:
    """A printer column cell: nothing -> None, one value -> it, several -> space-separated text."""
    try:
        found = evaluate(obj, parse(expr))
    except ValueError:
        return None
    if not found:
        return None
    if len(found) == 1:
        return found[0]
    return ' '.join(v if isinstance(v, str) else json.dumps(v) for v in found)
