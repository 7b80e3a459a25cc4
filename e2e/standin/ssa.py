"""Server-side apply: ``metadata.managedFields`` (FieldsV1), ownership and conflicts.

https://kubernetes.io/docs/reference/using-api/server-side-apply/

A field set is a set of paths; a path is a tuple of elements ``('f', name)`` (a field),
``('k', '{"type":"Ready"}')`` (an item of a ``x-kubernetes-list-type: map`` list, by its keys)
or ``('v', '"x"')`` (a value of a ``set`` list).  Lists are atomic unless the schema says
``map`` or ``set`` (built-in kinds have no schema here: their lists are atomic); objects
are granular unless ``x-kubernetes-map-type: atomic``.  Metadata: only ``labels``,
``annotations``, ``finalizers`` and ``ownerReferences`` are tracked.

* Apply (``application/apply-patch+yaml``): the manager's Apply entry becomes exactly the
  applied field set; fields it owned before and no longer applies are removed from the
  object unless another manager owns them; a field owned by another manager whose value
  the apply changes is a conflict (409) unless ``force=true``, which takes it over.
* Any other write (create, PUT, merge/JSON/strategic patch) is an Update: the writer's
  Update entry gains the fields it changed, and other managers lose them.

Entries are per (manager, operation, subresource) -- ``/status`` writes carry ``subresource: status``.
"""
from __future__ import annotations

import copy
import datetime
import json
from typing import Any, Callable

from .schema import MISSING, child, items, list_type, map_keys

Path = tuple[tuple[str, str], ...]
META_TRACKED = ('labels', 'annotations', 'finalizers', 'ownerReferences')
OWNER_REFS = {'type': 'array', 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['uid'],
              'items': {'type': 'object'}}
FINALIZERS = {'type': 'array', 'x-kubernetes-list-type': 'set', 'items': {'type': 'string'}}


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def _meta_schema(key: str) -> dict[str, Any] | None:
    return {'ownerReferences': OWNER_REFS, 'finalizers': FINALIZERS}.get(key)


def _key_of(item: dict[str, Any], keys: list[str]) -> str:
    return json.dumps({k: item.get(k) for k in keys}, sort_keys=True, separators=(',', ':'))


def _is_map_list(value: Any, node: dict[str, Any] | None) -> bool:
    return list_type(node) == 'map' and bool(map_keys(node)) and isinstance(value, list) \
        and all(isinstance(v, dict) for v in value)


def field_set(obj: dict[str, Any], root: dict[str, Any] | None, scope: Callable[[str], bool]) -> set[Path]:
    """The fields an object (or an applied configuration) sets; ``scope(top-level key)`` filters."""
    out: set[Path] = set()
    for key, val in obj.items():
        if key in ('apiVersion', 'kind') or not scope(key):
            continue
        p: Path = (('f', key),)
        if key == 'metadata':
            for mk in META_TRACKED:
                if isinstance(val, dict) and mk in val:
                    _walk(val[mk], _meta_schema(mk), p + (('f', mk),), out)
            continue
        _walk(val, child(root, key), p, out)
    return out


def _walk(val: Any, node: dict[str, Any] | None, p: Path, out: set[Path]) -> None:
    if isinstance(val, dict) and val and (node or {}).get('x-kubernetes-map-type') != 'atomic' \
            and not (node or {}).get('x-kubernetes-int-or-string'):
        for k, v in val.items():
            _walk(v, child(node, k), p + (('f', k),), out)
    elif _is_map_list(val, node):
        keys = map_keys(node)
        for item in val:
            ip = p + (('k', _key_of(item, keys)),)
            out.add(ip)
            for k, v in item.items():
                _walk(v, child(items(node), k), ip + (('f', k),), out)
    elif list_type(node) == 'set' and isinstance(val, list):
        for v in val:
            out.add(p + (('v', json.dumps(v, sort_keys=True, separators=(',', ':'))),))
    else:
        out.add(p)


def get_at(obj: Any, path: Path) -> Any:
    for kind, name in path:
        if kind == 'f':
            if not isinstance(obj, dict) or name not in obj:
                return MISSING
            obj = obj[name]
        elif kind == 'k':
            want = json.loads(name)
            if not isinstance(obj, list):
                return MISSING
            obj = next((i for i in obj if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())), MISSING)
            if obj is MISSING:
                return MISSING
        else:  # 'v'
            v = json.loads(name)
            return v if isinstance(obj, list) and v in obj else MISSING
    return obj


def remove_at(obj: Any, path: Path) -> None:
    parent = get_at(obj, path[:-1])
    kind, name = path[-1]
    if kind == 'f' and isinstance(parent, dict):
        parent.pop(name, None)
    elif kind == 'k' and isinstance(parent, list):
        want = json.loads(name)
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(i.get(k) == v for k, v in want.items()))]
    elif kind == 'v' and isinstance(parent, list):
        v = json.loads(name)
        parent[:] = [i for i in parent if i != v]


def merge(live: Any, applied: Any, node: dict[str, Any] | None) -> Any:
    """The applied configuration merged into the live object, by the schema's list/map types."""
    if isinstance(applied, dict) and isinstance(live, dict) and (node or {}).get('x-kubernetes-map-type') != 'atomic':
        out = dict(live)
        for k, v in applied.items():
            out[k] = merge(live.get(k), v, child(node, k))
        return out
    if _is_map_list(applied, node) and isinstance(live, list):
        keys = map_keys(node)
        out_list = [copy.deepcopy(i) for i in live]
        for item in applied:
            idx = next((n for n, i in enumerate(out_list) if isinstance(i, dict) and _key_of(i, keys) == _key_of(item, keys)), None)
            if idx is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[idx] = merge(out_list[idx], item, items(node))
        return out_list
    if list_type(node) == 'set' and isinstance(applied, list) and isinstance(live, list):
        return list(live) + [v for v in applied if v not in live]
    return copy.deepcopy(applied)


# ---- FieldsV1 -----------------------------------------------------------------

def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    owned: set[int] = set()
    for path in paths:
        node = tree
        for kind, name in path:
            node = node.setdefault(f'{kind}:{name}', {})
        owned.add(id(node))

    def finish(node: dict[str, Any]) -> dict[str, Any]:
        out = {k: finish(v) for k, v in sorted(node.items())}
        if id(node) in owned and node:
            out['.'] = {}
        return out
    return finish(tree)


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, sub in (tree or {}).items():
        if key == '.':
            continue
        kind, _, name = key.partition(':')
        p = prefix + ((kind, name),)
        if not sub or '.' in sub:
            out.add(p)
        out |= from_fields_v1(sub, p)
    return out


def render(path: Path) -> str:
    """A path as the API server prints it in conflicts: ``.spec.replicas``, ``.status.conditions[type="Ready"]``."""
    s = ''
    for kind, name in path:
        if kind == 'f':
            s += f'.{name}'
        elif kind == 'k':
            s += '[' + ','.join(f'{k}={json.dumps(v)}' for k, v in json.loads(name).items()) + ']'
        else:
            s += f'[={name}]'
    return s


class Managed:
    """``metadata.managedFields`` decoded: entries with their field sets."""

    def __init__(self, entries: list[dict[str, Any]] | None) -> None:
        self.entries = [dict(e, _set=from_fields_v1(e.get('fieldsV1') or {})) for e in entries or [] if isinstance(e, dict)]

    def _find(self, manager: str, operation: str, sub: str | None) -> dict[str, Any] | None:
        return next((e for e in self.entries if e.get('manager') == manager and e.get('operation') == operation
                     and e.get('subresource') == sub), None)

    def _set(self, manager: str, operation: str, sub: str | None, api_version: str, paths: set[Path]) -> None:
        entry = self._find(manager, operation, sub)
        if entry is None:
            entry = {'manager': manager, 'operation': operation, 'apiVersion': api_version, '_set': set()}
            if sub:
                entry['subresource'] = sub
            self.entries.append(entry)
        if entry['_set'] != paths or entry.get('apiVersion') != api_version:
            entry['time'] = _now()
        entry['_set'] = paths
        entry['apiVersion'] = api_version

    def others(self, manager: str, operation: str, sub: str | None) -> list[dict[str, Any]]:
        return [e for e in self.entries if not (e.get('manager') == manager and e.get('operation') == operation
                                                and e.get('subresource') == sub)]

    def dump(self) -> list[dict[str, Any]]:
        out = []
        for e in self.entries:
            if not e['_set']:
                continue
            fields = to_fields_v1(e['_set'])
            entry = {k: v for k, v in e.items() if not k.startswith('_') and k not in ('fieldsV1', 'fieldsType', 'time')}
            entry['time'] = e.get('time') or _now()
            entry['fieldsType'] = 'FieldsV1'
            entry['fieldsV1'] = fields
            out.append(entry)
        return out


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[tuple[str, str, str]]) -> None:  # (manager, apiVersion, path)
        super().__init__(conflicts)
        self.conflicts = conflicts


def apply(live: dict[str, Any], applied: dict[str, Any], managed: Managed, manager: str, sub: str | None,
          root: dict[str, Any] | None, scope: Callable[[str], bool], force: bool, api_version: str) -> dict[str, Any]:
    """Server-side apply of ``applied`` onto ``live``; updates ``managed``; raises ApplyConflict."""
    applied_set = field_set(applied, root, scope)
    others = managed.others(manager, 'Apply', sub)
    conflicts: list[tuple[dict[str, Any], Path]] = []
    for entry in others:
        for p in applied_set & entry['_set']:
            if p[-1][0] == 'f' and get_at(live, p) != get_at(applied, p):
                conflicts.append((entry, p))
    if conflicts and not force:
        raise ApplyConflict(sorted({(e['manager'], e.get('apiVersion', ''), render(p)) for e, p in conflicts}))
    for entry, p in conflicts:
        entry['_set'] = entry['_set'] - {p}
    mine = managed._find(manager, 'Apply', sub)
    previous = mine['_set'] if mine else set()
    owned_by_others: set[Path] = set().union(*(e['_set'] for e in others)) if others else set()
    gone = previous - applied_set - owned_by_others
    out = copy.deepcopy(live)
    for p in sorted(gone, key=len, reverse=True):
        if p[-1][0] == 'k' and any(o[:len(p)] == p for o in owned_by_others | applied_set):
            continue  # another manager still owns something in this item
        remove_at(out, p)
    for key, val in applied.items():
        if key in ('apiVersion', 'kind') or not scope(key):
            continue
        if key == 'metadata':
            meta = out.setdefault('metadata', {})
            for mk in META_TRACKED:
                if isinstance(val, dict) and mk in val:
                    meta[mk] = merge(meta.get(mk), val[mk], _meta_schema(mk))
            continue
        out[key] = merge(out.get(key), val, child(root, key))
    managed._set(manager, 'Apply', sub, api_version, applied_set)
    return out


def update(old: dict[str, Any] | None, new: dict[str, Any], managed: Managed, manager: str, sub: str | None,
           root: dict[str, Any] | None, api_version: str) -> None:
    """Record a non-apply write: the writer owns what it changed; others lose it."""
    everything: Callable[[str], bool] = lambda _k: True  # noqa: E731
    new_set = field_set(new, root, everything)
    old_set = field_set(old, root, everything) if old is not None else set()
    changed = {p for p in new_set if p not in old_set or (p[-1][0] == 'f' and get_at(old, p) != get_at(new, p))}
    removed = old_set - new_set
    if not changed and not removed:
        return
    for entry in managed.entries:
        entry['_set'] = entry['_set'] - changed - removed if (entry.get('manager'), entry.get('operation'), entry.get('subresource')) \
            != (manager, 'Update', sub) else entry['_set'] - removed
    mine = managed._find(manager, 'Update', sub)
    managed._set(manager, 'Update', sub, api_version, (mine['_set'] if mine else set()) | changed)
