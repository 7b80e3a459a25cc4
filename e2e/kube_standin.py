#!/usr/bin/env python3
"""
Kubernetes API stand-in for vantage's local e2e stack, built on kmock.

Run::

    python e2e/kube_standin.py --port 16443            # plain HTTP on 127.0.0.1

``KubeStandIn`` subclasses kmock's ``KubernetesEmulator`` (PyPI ``kmock`` 0.8)
and keeps kmock's HTTP server (``kmock.Server`` on aiohttp), request capture
(``kmock.Request``, ``standin.requests``), error types (``KubernetesError``)
and resource registry (``standin.resources``: a kmock ``ResourcesArray`` of
``ResourceInfo``, which drives discovery here).  It replaces kmock's request
handling (``_handle``) wholesale, because stock kmock 0.8 breaks kube-rs
watchers/reflectors and kubectl in many small ways.  What it fixes, and why:

* Objects get ``metadata.uid``, ``creationTimestamp``, a global monotonic
  ``resourceVersion`` and ``generation`` (bumped on spec changes only, not on
  status/metadata changes) -- kube-rs and kubectl rely on all four
  (kmock sets none of them).
* The namespace comes from the URL path (kmock's path parser also crashes on
  ``/api/v1/namespaces`` and mistakes ``/api/v1/namespaces/x`` for a list).
* A no-op write (object unchanged) bumps nothing and sends no watch event
  (kmock sends MODIFIED for every PATCH, which makes controllers loop).
* PUT (replace) on objects and on ``/status``; status subresource semantics:
  the main endpoint ignores ``status``, ``/status`` changes only ``status``.
* PATCH by content type: JSON merge patch, JSON patch (RFC 6902), strategic
  merge (``kubectl apply``): a merge patch with ``$``-directives handled
  (``$setElementOrder`` merges lists by key, ``$patch: delete|replace``,
  the rest stripped), server-side apply (``application/apply-patch+yaml``):
  creates the object when missing (201), else applies with field ownership.
* ``Status`` error bodies with the real ``reason`` (``NotFound``,
  ``AlreadyExists``, ``Conflict``, ``BadRequest``, ``Expired``...) and
  kubectl-style messages; resourceVersion preconditions give 409 Conflict.
* Lists carry ``kind: XxxList``, ``apiVersion``, ``metadata.resourceVersion``;
  ``labelSelector`` (=, ==, !=, in, notin, exists, !exists), ``fieldSelector``
  (``metadata.name``, ``metadata.namespace`` or any dotted path; =, ==, !=),
  ``limit``/``continue`` paging.
* Watches stream newline-delimited JSON events, honour ``resourceVersion``
  (nothing older is sent; absent or ``0`` sends current objects as ADDED
  first; a too-old version gets a 410 ``Expired`` ERROR event, as kube-rs
  expects), ``sendInitialEvents`` (+ the ``initial-events-end`` BOOKMARK),
  ``allowWatchBookmarks`` (periodic BOOKMARKs), ``timeoutSeconds``, selectors
  (objects leaving/entering a selector give DELETED/ADDED like the real API).
* Discovery: ``/api`` (versions ``["v1"]``), ``/api/v1`` (groupVersion
  ``v1``, not kmock's ``/v1``), ``/apis``, ``/apis/{g}``, ``/apis/{g}/{v}``,
  and the aggregated discovery (``apidiscovery.k8s.io/v2``) that kubectl 1.32
  and newer kube-rs ask for.  CRDs created/applied at runtime show up at once,
  with scope, shortNames, categories, ``status``/``scale`` subresources and
  additionalPrinterColumns (``Table`` output for ``kubectl get``).
* Built-in kinds the project applies: Namespace, ConfigMap, Secret (with
  ``stringData``), Service, ServiceAccount, Pod, Event (core and
  events.k8s.io), Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
  CronJob, Role/RoleBinding/ClusterRole/ClusterRoleBinding, NetworkPolicy,
  Ingress, PodDisruptionBudget, CustomResourceDefinition, Lease.
* Deletion: objects with ``metadata.finalizers`` get ``deletionTimestamp``
  (MODIFIED) and go away (DELETED) once a later write empties the finalizers;
  deleting a Namespace deletes its objects; deleting a CRD deletes its
  objects and its discovery; ``DELETE`` on a collection; ``dryRun=All``.
* ``/version``, ``/healthz``, ``/readyz``, ``/livez``; a minimal ``/openapi/v3``
  that tells kubectl the server supports ``fieldValidation``.

What a real API server refuses or does on its own, done here too (helpers in ``standin/``):

* Custom resources are pruned, defaulted and validated against their CRD's structural
  schema, CEL ``x-kubernetes-validations`` included (``standin/schema.py``,
  ``standin/celrules.py``): 422 ``Invalid`` with ``details.causes``; unknown fields are
  refused with ``fieldValidation=Strict`` (400), warned about otherwise.  CEL rules the
  library cannot run are listed on stderr (``--check-crds`` at start-up, and at CRD
  registration) and the writes that need them are refused.
* Namespaced objects need an existing namespace (404); ``kubectl create namespace`` and
  ``kubectl create configmap`` send protobuf, decoded by ``standin/protobuf.py``.
* Server-side apply with ``managedFields`` per manager (``standin/ssa.py``): fields an
  applier stops sending are removed, conflicts are 409 unless ``force=true``; on
  ``/status`` too.
* Background garbage collection through ``ownerReferences`` (uid-matched), Orphan policy.
* Leases: ``PUT`` needs ``metadata.resourceVersion`` (422; a stale one is 409), and
  ``leaseDurationSeconds`` > 0, ``leaseTransitions`` >= 0 (422), as leader election relies on.
* ``PUT`` of a custom resource needs ``metadata.resourceVersion`` (422); ``generation`` is
  bumped when deletion starts; printer columns evaluate JSONPath filters
  (``standin/jsonpath.py``).

Limits (on purpose): no authn/authz/RBAC (any token works), no admission webhooks, no
controllers but the garbage collector (Deployments never get ready, Services get no IPs),
protobuf only for Namespace and ConfigMap, no conversion between CRD versions (one stored
copy for all); e2e/README.md lists what the schema, CEL and apply emulation leave out.
Everything is in memory and linear-time; it slows down past a few hundred objects of one kind.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import copy
import datetime
import glob
import json
import os
import random
import re
import signal
import string
import sys
import traceback
import uuid
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import k8s  # KubernetesError lives here (re-exported as kmock.KubernetesError)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from standin import errors, jsonpath, protobuf, ssa  # noqa: E402
from standin.schema import Schema  # noqa: E402

# -----------------------------------------------------------------------------
# Built-in resources: (group, version, plural, kind, namespaced, shortNames, subresources, categories)

BUILTINS: list[tuple[str, str, str, str, bool, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    ('', 'v1', 'namespaces', 'Namespace', False, ('ns',), ('status', 'finalize'), ()),
    ('', 'v1', 'configmaps', 'ConfigMap', True, ('cm',), (), ()),
    ('', 'v1', 'secrets', 'Secret', True, (), (), ()),
    ('', 'v1', 'services', 'Service', True, ('svc',), ('status',), ('all',)),
    ('', 'v1', 'serviceaccounts', 'ServiceAccount', True, ('sa',), (), ()),
    ('', 'v1', 'pods', 'Pod', True, ('po',), ('status',), ('all',)),
    ('', 'v1', 'endpoints', 'Endpoints', True, ('ep',), (), ()),
    ('', 'v1', 'persistentvolumeclaims', 'PersistentVolumeClaim', True, ('pvc',), ('status',), ()),
    ('', 'v1', 'nodes', 'Node', False, ('no',), ('status',), ()),
    ('', 'v1', 'events', 'Event', True, ('ev',), (), ()),
    ('events.k8s.io', 'v1', 'events', 'Event', True, ('ev',), (), ()),
    ('apps', 'v1', 'deployments', 'Deployment', True, ('deploy',), ('status', 'scale'), ('all',)),
    ('apps', 'v1', 'statefulsets', 'StatefulSet', True, ('sts',), ('status', 'scale'), ('all',)),
    ('apps', 'v1', 'daemonsets', 'DaemonSet', True, ('ds',), ('status',), ('all',)),
    ('apps', 'v1', 'replicasets', 'ReplicaSet', True, ('rs',), ('status', 'scale'), ('all',)),
    ('batch', 'v1', 'jobs', 'Job', True, (), ('status',), ('all',)),
    ('batch', 'v1', 'cronjobs', 'CronJob', True, ('cj',), ('status',), ('all',)),
    ('rbac.authorization.k8s.io', 'v1', 'roles', 'Role', True, (), (), ()),
    ('rbac.authorization.k8s.io', 'v1', 'rolebindings', 'RoleBinding', True, (), (), ()),
    ('rbac.authorization.k8s.io', 'v1', 'clusterroles', 'ClusterRole', False, (), (), ()),
    ('rbac.authorization.k8s.io', 'v1', 'clusterrolebindings', 'ClusterRoleBinding', False, (), (), ()),
    ('networking.k8s.io', 'v1', 'networkpolicies', 'NetworkPolicy', True, ('netpol',), (), ()),
    ('networking.k8s.io', 'v1', 'ingresses', 'Ingress', True, ('ing',), ('status',), ()),
    ('policy', 'v1', 'poddisruptionbudgets', 'PodDisruptionBudget', True, ('pdb',), ('status',), ()),
    ('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', False,
     ('crd', 'crds'), ('status',), ('api-extensions',)),
    ('coordination.k8s.io', 'v1', 'leases', 'Lease', True, (), (), ()),
]
SEED_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')
VERBS = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch']
SUB_VERBS = ['get', 'patch', 'update']
SERVER_VERSION = {
    'major': '1', 'minor': '32', 'gitVersion': 'v1.32.0-vantage-standin',
    'gitCommit': '0000000000000000000000000000000000000000', 'gitTreeState': 'clean',
    'buildDate': '2024-12-11T00:00:00Z', 'goVersion': 'go1.23.3', 'compiler': 'gc',
    'platform': 'linux/amd64',
}
AGG_V2 = 'application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList'
AGG_V2BETA1 = 'application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList'
CRD_KEY = ('apiextensions.k8s.io', 'customresourcedefinitions')
NS_KEY = ('', 'namespaces')
DNS_LABEL = re.compile(r'[a-z0-9]([-a-z0-9]*[a-z0-9])?')


# -----------------------------------------------------------------------------
# Errors: kmock's KubernetesError with real reasons and messages (standin/errors.py).

err, not_found, already_exists, conflict, bad_request, invalid, status_body = (
    errors.err, errors.not_found, errors.already_exists, errors.conflict, errors.bad_request, errors.invalid,
    errors.status_body)
Cause = errors.Cause


def apply_conflict(e: ssa.ApplyConflict) -> k8s.KubernetesError:
    """409 of a server-side apply that changes fields another manager owns."""
    n = len(e.conflicts)
    managers = sorted({(m, v) for m, v, _ in e.conflicts})
    if n == 1:
        m, v, path = e.conflicts[0]
        message = f'Apply failed with 1 conflict: conflict with "{m}" using {v}: {path}'
    else:
        head = ', '.join(f'"{m}" using {v}' for m, v in managers)
        message = f'Apply failed with {n} conflicts: conflicts with {head}:\n' + '\n'.join(f'- {p}' for _, _, p in e.conflicts)
    return err(409, 'Conflict', message, causes=[
        {'reason': 'FieldManagerConflict', 'message': f'conflict with "{m}" using {v}', 'field': p} for m, v, p in e.conflicts])


# -----------------------------------------------------------------------------
# Small helpers: time, selectors, patches, jsonpath.

def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def human_age(ts: str | None) -> str:
    if not ts:
        return '<unknown>'
    try:
        then = datetime.datetime.strptime(ts, '%Y-%m-%dT%H:%M:%SZ').replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return '<unknown>'
    s = max(0, int((datetime.datetime.now(datetime.timezone.utc) - then).total_seconds()))
    if s < 120:
        return f'{s}s'
    if s < 3600 * 3:
        return f'{s // 60}m' + (f'{s % 60}s' if s < 600 and s % 60 else '')
    if s < 86400 * 2:
        return f'{s // 3600}h'
    return f'{s // 86400}d'


def dig(obj: Any, path: list[str]) -> Any:
    for part in path:
        if isinstance(obj, dict):
            obj = obj.get(part)
        elif isinstance(obj, list) and part.lstrip('-').isdigit():
            i = int(part)
            obj = obj[i] if -len(obj) <= i < len(obj) else None
        else:
            return None
    return obj


_SEL_TERM = re.compile(r'^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(==|=|!=)\s*(\S*)|\s+(in|notin)\s*\(([^)]*)\))?\s*$')


def parse_label_selector(sel: str | None) -> list[tuple[str, str, Any]]:
    if not sel:
        return []
    terms, depth, cur = [], 0, ''
    for ch in sel:  # split on commas outside parentheses
        depth += ch == '('
        depth -= ch == ')'
        if ch == ',' and depth == 0:
            terms.append(cur)
            cur = ''
        else:
            cur += ch
    terms.append(cur)
    result = []
    for term in terms:
        if not term.strip():
            continue
        m = _SEL_TERM.match(term)
        if not m:
            raise bad_request(f'unable to parse requirement: {term!r}')
        neg, key, op, val, setop, setvals = m.groups()
        if neg:
            result.append(('!exists', key, None))
        elif op:
            result.append(('!=' if op == '!=' else '=', key, val))
        elif setop:
            result.append((setop, key, {v.strip() for v in setvals.split(',') if v.strip()}))
        else:
            result.append(('exists', key, None))
    return result


def match_labels(reqs: list[tuple[str, str, Any]], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for op, key, val in reqs:
        have = labels.get(key)
        if op == '=' and have != val:
            return False
        if op == '!=' and have == val:
            return False
        if op == 'in' and have not in val:
            return False
        if op == 'notin' and have in val:
            return False
        if op == 'exists' and key not in labels:
            return False
        if op == '!exists' and key in labels:
            return False
    return True


def parse_field_selector(sel: str | None) -> list[tuple[str, list[str], str]]:
    result = []
    for term in (sel or '').split(','):
        if not term.strip():
            continue
        m = re.match(r'^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$', term)
        if not m:
            raise bad_request(f'invalid field selector: {term!r}')
        path, op, val = m.groups()
        result.append(('!=' if op == '!=' else '=', path.split('.'), val))
    return result


def match_fields(reqs: list[tuple[str, list[str], str]], obj: dict[str, Any]) -> bool:
    for op, path, val in reqs:
        have = dig(obj, path)
        have_s = '' if have is None else (str(have).lower() if isinstance(have, bool) else str(have))
        if (have_s == val) != (op == '='):
            return False
    return True


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, val in patch.items():
        if val is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), val)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """
    A merge patch that understands the strategic-merge directives kubectl sends.

    ``$setElementOrder/<field>`` gives the merge key of a list (the one key of its
    entries) and the final order; list entries are merged by that key.
    ``$patch: delete`` (dict or list entry) and ``$patch: replace`` are honoured;
    ``$retainKeys``, ``$deleteFromPrimitiveList/...`` and unknown directives are stripped.
    Lists without ``$setElementOrder`` are replaced, as in a merge patch.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get('$patch') == 'delete':
        return None
    if patch.get('$patch') == 'replace':
        return {k: strategic_merge_patch(None, v) for k, v in patch.items() if not k.startswith('$')}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    orders = {k.split('/', 1)[1]: v for k, v in patch.items() if k.startswith('$setElementOrder/')}
    deletes = {k.split('/', 1)[1]: v for k, v in patch.items() if k.startswith('$deleteFromPrimitiveList/')}
    for key, val in patch.items():
        if key.startswith('$'):
            continue
        if val is None:
            result.pop(key, None)
        elif isinstance(val, list) and key in orders and _merge_key(orders[key]):
            result[key] = _merge_list(result.get(key), val, orders[key], _merge_key(orders[key]))
        elif isinstance(val, list):
            result[key] = [strategic_merge_patch(None, v) for v in val
                           if not (isinstance(v, dict) and v.get('$patch') == 'delete')]
        else:
            merged = strategic_merge_patch(result.get(key), val)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    for key, order in orders.items():  # order-only changes (no entries in the patch)
        if key not in patch and isinstance(result.get(key), list) and _merge_key(order):
            result[key] = _merge_list(result[key], [], order, _merge_key(order))
        elif key not in patch and isinstance(result.get(key), list) and all(not isinstance(o, dict) for o in order):
            result[key] = [v for v in order if v in result[key]]
    for key, gone in deletes.items():
        if isinstance(result.get(key), list):
            result[key] = [v for v in result[key] if v not in gone]
    return result


def _merge_key(order: list[Any]) -> str | None:
    keys = {next(iter(o)) for o in order if isinstance(o, dict) and len(o) == 1}
    return keys.pop() if len(keys) == 1 else None


def _merge_list(old: Any, entries: list[Any], order: list[Any], key: str) -> list[Any]:
    by_key = {o.get(key): o for o in (old if isinstance(old, list) else []) if isinstance(o, dict)}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        k = entry.get(key)
        if entry.get('$patch') == 'delete':
            by_key.pop(k, None)
        else:
            by_key[k] = strategic_merge_patch(by_key.get(k), entry)
    wanted = [o.get(key) for o in order if isinstance(o, dict)]
    result = [by_key[k] for k in wanted if k in by_key]
    result += [v for k, v in by_key.items() if k not in wanted and any(e.get(key) == k for e in entries if isinstance(e, dict))]
    return result


def _pointer(path: str) -> list[str]:
    if path == '':
        return []
    if not path.startswith('/'):
        raise bad_request(f'invalid JSON pointer: {path!r}')
    return [p.replace('~1', '/').replace('~0', '~') for p in path[1:].split('/')]


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise bad_request('a JSON patch must be a list of operations')
    doc = copy.deepcopy(doc)

    def parent(d: Any, parts: list[str]) -> tuple[Any, str]:
        if not parts:
            raise bad_request('cannot operate on the document root')
        for p in parts[:-1]:
            if isinstance(d, list):
                d = d[int(p)]
            elif isinstance(d, dict) and p in d:
                d = d[p]
            else:
                raise err(422, 'Invalid', f'jsonpatch: path not found: /{"/".join(parts)}')
        return d, parts[-1]

    def get(d: Any, parts: list[str]) -> Any:
        for p in parts:
            try:
                d = d[int(p)] if isinstance(d, list) else d[p]
            except (KeyError, IndexError, ValueError, TypeError):
                raise err(422, 'Invalid', f'jsonpatch: path not found: /{"/".join(parts)}')
        return d

    def remove(d: Any, parts: list[str]) -> Any:
        container, last = parent(d, parts)
        try:
            return container.pop(int(last) if isinstance(container, list) else last)
        except (KeyError, IndexError, ValueError):
            raise err(422, 'Invalid', f'jsonpatch remove: path not found: /{"/".join(parts)}')

    def add(d: Any, parts: list[str], value: Any) -> Any:
        if not parts:
            return value
        container, last = parent(d, parts)
        if isinstance(container, list):
            if last == '-':
                container.append(value)
            else:
                container.insert(int(last), value)
        elif isinstance(container, dict):
            container[last] = value
        else:
            raise err(422, 'Invalid', f'jsonpatch add: bad path /{"/".join(parts)}')
        return d

    for op in ops:
        kind, parts = op.get('op'), _pointer(op.get('path', ''))
        if kind == 'add':
            doc = add(doc, parts, copy.deepcopy(op.get('value')))
        elif kind == 'remove':
            remove(doc, parts)
        elif kind == 'replace':
            get(doc, parts)
            if parts:
                remove(doc, parts)
            doc = add(doc, parts, copy.deepcopy(op.get('value')))
        elif kind in ('move', 'copy'):
            src = _pointer(op.get('from', ''))
            value = remove(doc, src) if kind == 'move' else copy.deepcopy(get(doc, src))
            doc = add(doc, parts, value)
        elif kind == 'test':
            # Like the real API server (evanphx/json-patch), a missing path tests equal to
            # null: kube-rs adds the first finalizer with `test /metadata/finalizers null`.
            try:
                current = get(doc, parts)
            except k8s.KubernetesError:
                current = None
            if current != op.get('value'):
                raise err(422, 'Invalid', f'jsonpatch test failed at {op.get("path")}')
        else:
            raise bad_request(f'unknown JSON patch op: {kind!r}')
    return doc


def accept_table(accept: str) -> bool:
    return any('as=Table' in part for part in accept.split(','))


def accept_partial(accept: str) -> bool:
    """kube-rs metadata_watcher / get_metadata ask for PartialObjectMetadata."""
    first = accept.split(',')[0]
    return 'as=PartialObjectMetadata' in first


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': obj['metadata']}


def accept_aggregated(accept: str) -> str | None:
    for part in accept.split(','):
        p = part.replace(' ', '')
        if 'as=APIGroupDiscoveryList' in p and 'v=v2beta1' in p:
            return AGG_V2BETA1
        if 'as=APIGroupDiscoveryList' in p and 'v=v2' in p:
            return AGG_V2
    return None


# -----------------------------------------------------------------------------
# Watches.

@attrs.define(eq=False)
class _Watch:
    key: tuple[str, str]
    namespace: str | None
    labels: list[tuple[str, str, Any]]
    fields: list[tuple[str, list[str], str]]
    queue: asyncio.Queue[tuple[int, str, dict[str, Any], dict[str, Any] | None]] = attrs.field(factory=asyncio.Queue)

    def matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get('metadata', {})
        if self.namespace is not None and meta.get('namespace') != self.namespace:
            return False
        return match_labels(self.labels, meta.get('labels')) and match_fields(self.fields, obj)

    def translate(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> str | None:
        """The event type this watcher sees, with selector transitions as the real API does."""
        if etype == 'MODIFIED':
            was, now = self.matches(old), self.matches(obj)
            return 'MODIFIED' if was and now else 'ADDED' if now else 'DELETED' if was else None
        return etype if self.matches(obj) else None


# -----------------------------------------------------------------------------
# The stand-in.

@attrs.define
class Write:
    """Who writes and how: the field manager, ``fieldValidation``, ``force``; warnings to send back."""
    manager: str = 'unknown'
    validation: str = 'Warn'
    force: bool = False
    warnings: list[str] = attrs.field(factory=list)


@attrs.define(kw_only=True)
class KubeStandIn(kmock.KubernetesEmulator):
    """kmock's KubernetesEmulator with the semantics kube-rs and kubectl need (see module doc)."""

    event_log_size: int = 10000        # how far back watches can resume by resourceVersion
    keep_requests: int = 1000          # kmock records every request; keep only the last N
    bookmark_interval: float = 15.0    # seconds between BOOKMARKs on watches that allow them
    default_watch_timeout: float = 1800.0
    log_requests: bool = False

    _rv: int = attrs.field(default=1, init=False)
    _store: dict[tuple[str, str], dict[tuple[str | None, str], dict[str, Any]]] = attrs.field(
        factory=lambda: collections.defaultdict(dict), init=False)
    _events: collections.deque[tuple[int, tuple[str, str], str, dict[str, Any], dict[str, Any] | None]] = \
        attrs.field(factory=collections.deque, init=False)
    _watches: set[_Watch] = attrs.field(factory=set, init=False)
    _printer_columns: dict[tuple[str, str, str], list[dict[str, Any]]] = attrs.field(factory=dict, init=False)
    _crd_kinds: dict[str, list[kmock.resource]] = attrs.field(factory=dict, init=False)
    _schemas: dict[kmock.resource, Schema | None] = attrs.field(factory=dict, init=False)  # custom resources
    _gc_handle: asyncio.TimerHandle | None = attrs.field(default=None, init=False)
    gc_delay: float = 0.2              # seconds between a deletion and the garbage collector's sweep

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()  # kmock's DSL fallbacks stay registered but are bypassed for k8s paths
        for group, version, plural, kind, namespaced, short, subs, cats in BUILTINS:
            self.resources[kmock.resource(group, version, plural)] = kmock.ResourceInfo(
                kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=VERBS,
                shortnames=short, subresources=subs, categories=cats)
        for ns in SEED_NAMESPACES:
            self._create(self._info('', 'v1', 'namespaces'), {'metadata': {'name': ns}}, None, emit=False)

    # ---- registry ---------------------------------------------------------

    def _info(self, group: str, version: str, plural: str) -> tuple[kmock.resource, kmock.ResourceInfo]:
        res = kmock.resource(group, version, plural)
        if res not in self.resources:
            raise err(404, 'NotFound', 'the server could not find the requested resource')
        return res, self.resources[res]

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for res in self.resources:
            versions = groups.setdefault(res.group, [])
            if res.version not in versions:
                versions.append(res.version)
        return groups

    # ---- HTTP entry point (replaces kmock's emulator/DSL handling for k8s paths) ----

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """aiohttp entry point: kmock's, except that a path kmock cannot parse is no 500."""
        body = await raw_request.read()
        try:
            request = await kmock.Request._parse(raw_request, id=len(self._requests))
        except ValueError:  # kmock's path parser raises on /api/v1/namespaces
            request = kmock.Request(id=len(self._requests), raw_request=raw_request, url=raw_request.url,
                                    method=raw_request.method, params=dict(raw_request.query),
                                    headers=dict(raw_request.headers), body=body)
        self._requests.append(request)
        return await self._handle(request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if len(self._requests) > self.keep_requests:
            del self._requests[:len(self._requests) - self.keep_requests]
        try:
            response = await self._route(request)
        except k8s.KubernetesError as e:
            response = aiohttp.web.json_response(status_body(e), status=e.status)
        except Exception as e:  # never leave a client without a Status
            traceback.print_exc()
            response = aiohttp.web.json_response(
                status_body(err(500, 'InternalError', f'stand-in error: {e!r}')), status=500)
        if self.log_requests:
            print(f'{request.method.value} {request.url.path_qs} -> {response.status}', file=sys.stderr, flush=True)
        return response

    async def _route(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        method = request.method.value.upper()
        path = raw.path.rstrip('/') or '/'
        segs = [s for s in path.split('/') if s]
        accept = raw.headers.get('Accept', '')
        if path in ('/healthz', '/readyz', '/livez') or path.startswith(('/healthz/', '/readyz/', '/livez/')):
            return aiohttp.web.Response(text='ok')
        if path == '/version':
            return aiohttp.web.json_response(SERVER_VERSION)
        if path == '/':
            return aiohttp.web.json_response({'paths': self._root_paths()})
        if segs[0] == 'openapi':
            return self._openapi(segs)
        if segs[0] == 'api' and len(segs) == 1:
            return self._discovery_api(accept)
        if segs[0] == 'apis' and len(segs) == 1:
            return self._discovery_apis(accept)
        if segs[0] == 'api':
            group, version, rest = '', segs[1], segs[2:]
        elif segs[0] == 'apis' and len(segs) == 2:
            return self._discovery_group(segs[1])
        elif segs[0] == 'apis':
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            # Not a Kubernetes path: let kmock's DSL (user reactions, 404 fallback) answer.
            return await kmock.RawHandler._handle(self, request)
        if not rest:
            return self._discovery_version(group, version)

        watch = request.params.get('watch', '').lower() in ('true', '1')
        if rest[0] == 'watch':  # legacy /api/v1/watch/... paths
            watch, rest = True, rest[1:]
        namespace: str | None = None
        if rest[0] == 'namespaces' and len(rest) >= 3 and not (group == '' and len(rest) == 3 and rest[2] in ('status', 'finalize')):
            namespace, rest = rest[1], rest[2:]
        plural, name, sub = rest[0], (rest[1] if len(rest) > 1 else None), ('/'.join(rest[2:]) or None)
        res, info = self._info(group, version, plural)
        if info.namespaced is False:
            namespace = None
        if sub is not None and sub not in info.subresources:
            raise err(404, 'NotFound', 'the server could not find the requested resource')

        body = self._body(request)
        params = request.params
        dry = params.get('dryRun', '') == 'All'
        w = Write(manager=params.get('fieldManager') or (raw.headers.get('User-Agent') or 'unknown').split('/')[0],
                  validation=params.get('fieldValidation') or 'Warn',
                  force=params.get('force', '').lower() in ('true', '1'))
        response = await self._dispatch(raw, method, res, info, namespace, name, sub, body, params, dry, watch, accept, w)
        for warning in w.warnings:
            response.headers.add('Warning', '299 - ' + json.dumps(warning))
        return response

    async def _dispatch(self, raw: aiohttp.web.BaseRequest, method: str, res: kmock.resource, info: kmock.ResourceInfo,
                        namespace: str | None, name: str | None, sub: str | None, body: Any, params: Any, dry: bool,
                        watch: bool, accept: str, w: Write) -> aiohttp.web.StreamResponse:
        if method == 'GET' and watch:
            if name is not None:
                params = dict(params, fieldSelector=','.join(filter(None, [params.get('fieldSelector'), f'metadata.name={name}'])))
            return await self._watch(raw, res, info, namespace, params, accept)
        if method == 'GET' and name is None:
            return self._list(res, info, namespace, params, accept)
        if method == 'GET':
            obj = self._get(res, namespace, name)
            if accept_table(accept):
                return aiohttp.web.json_response(self._table(res, info, [obj], params))
            if accept_partial(accept):
                return aiohttp.web.json_response(partial(obj))
            return self._reply(res, info, obj)
        if method == 'POST' and name is None:
            if not isinstance(body, dict):
                raise bad_request('the request body must be an object')
            return self._reply(res, info, self._create((res, info), body, namespace, dry=dry, w=w), 201)
        if method == 'PUT' and name is not None:
            return self._reply(res, info, self._update(res, info, namespace, name, sub, 'replace', body, dry, w))
        if method == 'PATCH' and name is not None:
            ctype = (raw.headers.get('Content-Type') or '').split(';')[0].strip().lower()
            kinds = {'application/merge-patch+json': 'merge', 'application/json-patch+json': 'json',
                     'application/strategic-merge-patch+json': 'strategic', 'application/apply-patch+yaml': 'apply'}
            if ctype not in kinds:
                raise err(415, 'UnsupportedMediaType', f'the body of the request was in an unknown format - accepted media types include: {", ".join(kinds)}')
            if kinds[ctype] == 'apply' and not params.get('fieldManager'):
                raise err(422, 'Invalid', 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch',
                          kind='PatchOptions', group='meta.k8s.io', name='',
                          causes=[{'reason': 'FieldValueRequired', 'message': 'Required value: is required for apply patch', 'field': 'fieldManager'}])
            existed = (namespace, name) in self._store[(res.group, res.plural)]
            obj = self._update(res, info, namespace, name, sub, kinds[ctype], body, dry, w)
            return self._reply(res, info, obj, 200 if existed else 201)
        if method == 'DELETE' and name is not None:
            return self._reply(res, info, self._delete(res, info, namespace, name, body, dry))
        if method == 'DELETE':
            return self._delete_collection(res, info, namespace, params, dry)
        raise err(405, 'MethodNotAllowed', f'the server does not allow this method on the requested resource')

    def _body(self, request: kmock.Request) -> Any:
        if not request.body:
            return None
        raw = request._raw_request
        ctype = (raw.headers.get('Content-Type') or '') if raw is not None else ''
        if 'protobuf' in ctype:
            try:
                return protobuf.decode(request.body)
            except protobuf.ProtobufError as e:
                raise err(415, 'UnsupportedMediaType', f'the stand-in decodes only a few kinds from protobuf: {e}')
        try:
            return json.loads(request.body)
        except ValueError:
            try:
                return yaml.safe_load(request.body)  # server-side apply may send YAML
            except yaml.YAMLError as e:
                raise bad_request(f'cannot parse the request body: {e}')

    def _reply(self, res: kmock.resource, info: kmock.ResourceInfo, obj: dict[str, Any], code: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.json_response(self._present(res, info, obj), status=code)

    @staticmethod
    def _present(res: kmock.resource, info: kmock.ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        """The object as served under the requested group/version (no conversion)."""
        out = dict(obj)
        out['apiVersion'] = f'{res.group}/{res.version}' if res.group else res.version
        out['kind'] = info.kind
        return out

    # ---- storage primitives ------------------------------------------------

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, key: tuple[str, str], etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        rv = int(obj['metadata']['resourceVersion'])
        self._events.append((rv, key, etype, obj, old))
        while len(self._events) > self.event_log_size:
            self._events.popleft()
        for w in list(self._watches):
            if w.key == key:
                w.queue.put_nowait((rv, etype, obj, old))
        if etype == 'DELETED' or obj['metadata'].get('ownerReferences'):
            self._schedule_gc()

    # ---- garbage collection ----------------------------------------------------

    def _schedule_gc(self) -> None:
        if self._gc_handle is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not serving (start-up)
        self._gc_handle = loop.call_later(self.gc_delay, self._gc_sweep)

    def _resource_of(self, key: tuple[str, str]) -> tuple[kmock.resource, kmock.ResourceInfo] | None:
        for r in self.resources:
            if (r.group, r.plural) == key:
                return r, self.resources[r]
        return None

    def _gc_sweep(self) -> None:
        """Background cascading deletion, as kube-controller-manager's garbage collector does it.

        https://kubernetes.io/docs/concepts/architecture/garbage-collection/#owners-dependents:
        a dependent whose owners (by ``uid``) are all gone is deleted; one that keeps some owners
        loses the references to the gone ones.
        """
        self._gc_handle = None
        live = {o['metadata'].get('uid') for store in self._store.values() for o in store.values()}
        for key, store in list(self._store.items()):
            for (ns, name), o in list(store.items()):
                refs = o['metadata'].get('ownerReferences') or []
                dangling = [r for r in refs if isinstance(r, dict) and r.get('uid') not in live]
                if not dangling or (ns, name) not in store:
                    continue
                resinfo = self._resource_of(key)
                if resinfo is None:
                    continue
                res, info = resinfo
                w = Write(manager='generic-garbage-collector')
                try:
                    if len(dangling) == len(refs):
                        if not o['metadata'].get('deletionTimestamp'):
                            self._delete(res, info, ns, name, None, False)
                    else:
                        solid = [r for r in refs if r not in dangling]
                        self._update(res, info, ns, name, None, 'json',
                                     [{'op': 'replace', 'path': '/metadata/ownerReferences', 'value': solid}], False, w)
                except k8s.KubernetesError as e:
                    print(f'kube stand-in: garbage collector: {key} {ns}/{name}: {e.message}', file=sys.stderr, flush=True)

    def _orphan(self, uid: str) -> None:
        """propagationPolicy=Orphan: dependents lose their reference to the deleted owner."""
        for key, store in list(self._store.items()):
            for (ns, name), o in list(store.items()):
                refs = o['metadata'].get('ownerReferences') or []
                if any(isinstance(r, dict) and r.get('uid') == uid for r in refs):
                    resinfo = self._resource_of(key)
                    if resinfo is None:
                        continue
                    keep = [r for r in refs if not (isinstance(r, dict) and r.get('uid') == uid)]
                    self._update(resinfo[0], resinfo[1], ns, name, None, 'json',
                                 [{'op': 'replace', 'path': '/metadata/ownerReferences', 'value': keep}], False,
                                 Write(manager='generic-garbage-collector'))

    def _get(self, res: kmock.resource, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._store[(res.group, res.plural)].get((namespace, name))
        if obj is None:
            raise not_found(res.group, res.plural, name)
        return obj

    def _create(self, resinfo: tuple[kmock.resource, kmock.ResourceInfo], body: dict[str, Any],
                namespace: str | None, *, dry: bool = False, emit: bool = True, w: Write | None = None,
                operation: str = 'Update') -> dict[str, Any]:
        res, info = resinfo
        w = w or Write()
        obj = copy.deepcopy(body)
        meta = obj.setdefault('metadata', {}) or {}
        obj['metadata'] = meta
        if info.namespaced:
            body_ns = meta.get('namespace')
            if namespace is None:
                namespace = body_ns
            if namespace is None:
                raise bad_request('the namespace of the provided object is missing')
            if body_ns not in (None, '', namespace):
                raise bad_request('the namespace of the provided object does not match the namespace sent on the request')
            meta['namespace'] = namespace
            if (None, namespace) not in self._store[NS_KEY]:
                # https://kubernetes.io/docs/concepts/overview/working-with-objects/namespaces/ (NamespaceLifecycle)
                raise err(404, 'NotFound', f'namespaces "{namespace}" not found', name=namespace, kind='namespaces')
        else:
            namespace = None
            meta.pop('namespace', None)
        if (res.group, res.plural) == NS_KEY and meta.get('name') and not DNS_LABEL.fullmatch(meta['name']):
            raise invalid('Namespace', '', meta['name'], [Cause('FieldValueInvalid', 'metadata.name', (
                f'Invalid value: {json.dumps(meta["name"])}: a lowercase RFC 1123 label must consist of lower case '
                "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', "
                " or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"))])
        if not meta.get('name'):
            if not meta.get('generateName'):
                raise err(422, 'Invalid', f'{info.kind}.{res.group} "" is invalid: metadata.name: Required value: name or generateName is required')
            meta['name'] = meta['generateName'] + ''.join(random.choices(string.ascii_lowercase + string.digits, k=5))
        name = meta['name']
        store = self._store[(res.group, res.plural)]
        if (namespace, name) in store:
            raise already_exists(res.group, res.plural, name)
        if 'status' in info.subresources:
            obj.pop('status', None)
        for k in ('deletionTimestamp', 'deletionGracePeriodSeconds', 'managedFields', 'selfLink'):
            meta.pop(k, None)
        meta['uid'] = str(uuid.uuid4())
        meta['creationTimestamp'] = now_iso()
        meta['generation'] = 1
        obj = self._present(res, info, obj)
        self._on_write(res, None, obj)
        self._admit(res, info, obj, None, w)
        managed = ssa.Managed(None)
        # Apply owns what it sent; a create (Update) owns the object as stored, defaults included
        fields = ssa.field_set(body if operation == 'Apply' else obj, self._root_schema(res), self._scope(info, None))
        managed._set(w.manager, operation, None, obj['apiVersion'], fields)
        if managed.dump():
            meta['managedFields'] = managed.dump()
        if dry:
            meta['resourceVersion'] = str(self._rv)
            return obj
        meta['resourceVersion'] = self._next_rv()
        store[(namespace, name)] = obj
        self._after_write(res, None, obj)
        if emit:
            self._emit((res.group, res.plural), 'ADDED', obj, None)
        return obj

    def _update(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, name: str,
                sub: str | None, mode: str, body: Any, dry: bool, w: Write | None = None) -> dict[str, Any]:
        key = (res.group, res.plural)
        w = w or Write()
        old = self._store[key].get((namespace, name))
        if old is None:
            if mode == 'apply' and sub is None and isinstance(body, dict):
                # server-side apply creates
                return self._create((res, info), body, namespace, dry=dry, w=w, operation='Apply')
            raise not_found(res.group, res.plural, name)
        if mode == 'replace' and (res in self._schemas or key == ('coordination.k8s.io', 'leases')) \
                and isinstance(body, dict) and not (body.get('metadata') or {}).get('resourceVersion'):
            # https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions: custom
            # resources have no unconditional update; nor have Leases (their registry strategy's
            # AllowUnconditionalUpdate is false), so leader election cannot overwrite a holder blindly.
            raise invalid(info.kind, res.group, name, [Cause('FieldValueInvalid', 'metadata.resourceVersion',
                                                              'Invalid value: 0x0: must be specified for an update')])
        api_version = f'{res.group}/{res.version}' if res.group else res.version
        managed = ssa.Managed(old['metadata'].get('managedFields'))
        if mode == 'json':
            candidate = json_patch(old, body)
        elif not isinstance(body, dict):
            raise bad_request('the request body must be an object')
        elif mode == 'replace':
            candidate = copy.deepcopy(body)
        elif mode == 'strategic':
            candidate = strategic_merge_patch(old, body)
        elif mode == 'apply':
            try:
                candidate = ssa.apply(old, body, managed, w.manager, sub, self._root_schema(res), self._scope(info, sub),
                                      w.force, api_version)
            except ssa.ApplyConflict as e:
                raise apply_conflict(e)
        else:  # 'merge'
            candidate = merge_patch(old, body)
        want_rv = (body.get('metadata') or {}).get('resourceVersion') if isinstance(body, dict) else None
        if want_rv and str(want_rv) != old['metadata']['resourceVersion']:
            raise conflict(res.group, res.plural, name, 'the object has been modified; please apply your changes to the latest version and try again')
        if not isinstance(candidate, dict):
            raise bad_request('the patched object is not an object')

        if sub == 'status':
            new = copy.deepcopy(old)  # /status changes only the status stanza
            if 'status' in candidate:
                new['status'] = candidate['status']
            else:
                new.pop('status', None)
        elif sub is not None:  # scale, finalize: accept only what we can map, keep it simple
            new = copy.deepcopy(old)
            if sub == 'scale' and isinstance(dig(candidate, ['spec', 'replicas']), int):
                new.setdefault('spec', {})['replicas'] = candidate['spec']['replicas']
            if sub == 'finalize' and isinstance(candidate.get('spec'), dict):
                new['spec'] = candidate['spec']
        else:
            new = candidate
            if 'status' in info.subresources:  # the main endpoint ignores status
                if 'status' in old:
                    new['status'] = copy.deepcopy(old['status'])
                else:
                    new.pop('status', None)
        meta = new.get('metadata') if isinstance(new.get('metadata'), dict) else {}
        new['metadata'] = meta
        for k in ('uid', 'creationTimestamp', 'name', 'namespace', 'deletionTimestamp',
                  'deletionGracePeriodSeconds', 'generation', 'resourceVersion', 'managedFields'):
            if k in old['metadata']:
                meta[k] = old['metadata'][k]
            else:
                meta.pop(k, None)
        if old['metadata'].get('deletionTimestamp') and \
                set(meta.get('finalizers') or []) - set(old['metadata'].get('finalizers') or []):
            raise invalid(info.kind, res.group, name, [Cause('FieldValueForbidden', 'metadata.finalizers',
                                                              'Forbidden: no new finalizers can be added if the object is being deleted')])
        new = self._present(res, info, new)
        self._admit(res, info, new, old, w)
        if mode != 'apply':
            ssa.update(old, new, managed, w.manager, sub, self._root_schema(res), api_version)
        dumped = managed.dump()
        if dumped:
            meta['managedFields'] = dumped
        else:
            meta.pop('managedFields', None)
        if new == old:
            return old  # no-op: no new resourceVersion, no event
        if self._spec_of(new, info) != self._spec_of(old, info):
            meta['generation'] = int(old['metadata'].get('generation', 1)) + 1
        self._on_write(res, old, new)
        if dry:
            return new
        meta['resourceVersion'] = self._next_rv()
        if meta.get('deletionTimestamp') and not meta.get('finalizers'):
            self._store[key].pop((namespace, name), None)
            self._after_delete(res, new)
            self._emit(key, 'DELETED', new, old)
            return new
        self._store[key][(namespace, name)] = new
        self._after_write(res, old, new)
        self._emit(key, 'MODIFIED', new, old)
        return new

    def _root_schema(self, res: kmock.resource) -> dict[str, Any] | None:
        schema = self._schemas.get(res)
        return schema.root if schema is not None else None

    @staticmethod
    def _scope(info: kmock.ResourceInfo, sub: str | None) -> Any:
        """Which top-level fields a write may set: /status only status; the main endpoint not status."""
        if sub == 'status':
            return lambda key: key == 'status'
        if 'status' in info.subresources:
            return lambda key: key != 'status'
        return lambda key: True

    def _admit(self, res: kmock.resource, info: kmock.ResourceInfo, new: dict[str, Any], old: dict[str, Any] | None,
               w: Write) -> None:
        """Prune, default and validate a custom resource against its CRD schema (mutates ``new``)."""
        if (res.group, res.plural) == ('coordination.k8s.io', 'leases'):
            # ValidateLeaseSpec of k8s.io/kubernetes pkg/apis/coordination/validation.
            spec = new.get('spec') or {}
            causes = [Cause('FieldValueInvalid', f'spec.{f}', f'Invalid value: {spec[f]}: must be greater than {m}')
                      for f, m, lo in (('leaseDurationSeconds', '0', 1), ('leaseTransitions', 'or equal to 0', 0))
                      if isinstance(spec.get(f), int) and spec[f] < lo]
            if causes:
                raise invalid(info.kind, res.group, new['metadata'].get('name', ''), causes)
        schema = self._schemas.get(res)
        if schema is None:
            return
        unknown = schema.prune(new)
        if unknown and w.validation == 'Strict':
            raise bad_request(f'{info.kind} in version "{res.version}" cannot be handled as a {info.kind}: strict decoding error: '
                              + ', '.join(f'unknown field "{u}"' for u in unknown))
        if unknown and w.validation != 'Ignore':
            w.warnings.extend(f'unknown field "{u}"' for u in unknown)
        schema.default(new)
        causes = schema.validate(new, old)
        if causes:
            raise invalid(info.kind, res.group, new['metadata'].get('name', ''), causes)

    @staticmethod
    def _spec_of(obj: dict[str, Any], info: kmock.ResourceInfo) -> dict[str, Any]:
        """What bumps metadata.generation: everything but metadata (and status if a subresource)."""
        skip = {'metadata', 'apiVersion', 'kind'} | ({'status'} if 'status' in info.subresources else set())
        return {k: v for k, v in obj.items() if k not in skip}

    def _delete(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, name: str,
                body: Any, dry: bool) -> dict[str, Any]:
        key = (res.group, res.plural)
        old = self._get(res, namespace, name)
        pre = (body or {}).get('preconditions') or {} if isinstance(body, dict) else {}
        if pre.get('uid') and pre['uid'] != old['metadata'].get('uid'):
            raise conflict(res.group, res.plural, name, f'Precondition failed: UID in precondition: {pre["uid"]}, UID in object meta: {old["metadata"].get("uid")}')
        if pre.get('resourceVersion') and pre['resourceVersion'] != old['metadata']['resourceVersion']:
            raise conflict(res.group, res.plural, name, 'the object has been modified; please apply your changes to the latest version and try again')
        if dry:
            return old
        if isinstance(body, dict) and body.get('propagationPolicy') == 'Orphan':
            self._orphan(old['metadata']['uid'])
        if old['metadata'].get('finalizers'):
            if old['metadata'].get('deletionTimestamp'):
                return old  # already terminating
            new = copy.deepcopy(old)
            new['metadata']['deletionTimestamp'] = now_iso()
            new['metadata']['deletionGracePeriodSeconds'] = 0
            # the API server bumps generation when it sets deletionTimestamp
            new['metadata']['generation'] = int(old['metadata'].get('generation', 1)) + 1
            new['metadata']['resourceVersion'] = self._next_rv()
            self._store[key][(namespace, name)] = new
            self._emit(key, 'MODIFIED', new, old)
            return new
        self._store[key].pop((namespace, name))
        gone = copy.deepcopy(old)
        gone['metadata']['resourceVersion'] = self._next_rv()
        self._after_delete(res, gone)
        self._emit(key, 'DELETED', gone, old)
        return gone

    def _delete_collection(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None,
                           params: Any, dry: bool) -> aiohttp.web.Response:
        items = self._select(res, namespace, params)
        deleted = [self._delete(res, info, o['metadata'].get('namespace'), o['metadata']['name'], None, dry) for o in items]
        return aiohttp.web.json_response(self._list_body(res, info, deleted))

    # ---- side effects of particular kinds ------------------------------------

    def _on_write(self, res: kmock.resource, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        """Per-kind defaulting before storing (mutates `new`)."""
        if (res.group, res.plural) == ('', 'secrets'):
            string_data = new.pop('stringData', None) or {}
            if string_data:
                new.setdefault('data', {})
                for k, v in string_data.items():
                    new['data'][k] = base64.b64encode(str(v).encode()).decode()
            new.setdefault('type', 'Opaque')
        elif (res.group, res.plural) == NS_KEY:
            new.setdefault('status', {})['phase'] = 'Terminating' if new['metadata'].get('deletionTimestamp') else 'Active'
        elif (res.group, res.plural) == CRD_KEY:
            self._check_crd(new)
            names = new['spec']['names']
            accepted = {'plural': names['plural'], 'singular': names.get('singular') or names['kind'].lower(),
                        'kind': names['kind'], 'listKind': names.get('listKind') or names['kind'] + 'List'}
            for opt in ('shortNames', 'categories'):
                if names.get(opt):
                    accepted[opt] = names[opt]
            ts = (old or {}).get('status', {}).get('conditions', [{}])[0].get('lastTransitionTime') or now_iso()
            new['status'] = {
                'acceptedNames': accepted,
                'storedVersions': [v['name'] for v in new['spec']['versions'] if v.get('storage')] or [new['spec']['versions'][0]['name']],
                'conditions': [
                    {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts', 'message': 'no conflicts found', 'lastTransitionTime': ts},
                    {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted', 'message': 'the initial names have been accepted', 'lastTransitionTime': ts},
                ],
            }

    @staticmethod
    def _check_crd(crd: dict[str, Any]) -> None:
        spec = crd.get('spec') or {}
        names = spec.get('names') or {}
        problems = [f'spec.{p}' for p, ok in [('group', spec.get('group')), ('names.plural', names.get('plural')),
                                              ('names.kind', names.get('kind')), ('versions', spec.get('versions')),
                                              ('scope', spec.get('scope') in ('Namespaced', 'Cluster'))] if not ok]
        if not problems and crd['metadata'].get('name') != f'{names["plural"]}.{spec["group"]}':
            problems.append('metadata.name: must be spec.names.plural+"."+spec.group')
        if problems:
            raise err(422, 'Invalid', f'CustomResourceDefinition.apiextensions.k8s.io "{crd["metadata"].get("name")}" is invalid: ' + ', '.join(problems))

    def _after_write(self, res: kmock.resource, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
        if (res.group, res.plural) == CRD_KEY:
            self._register_crd(new)

    def _after_delete(self, res: kmock.resource, obj: dict[str, Any]) -> None:
        if (res.group, res.plural) == CRD_KEY:
            spec = obj['spec']
            for r in self._crd_kinds.pop(obj['metadata']['name'], []):
                del self.resources[r]
                self._schemas.pop(r, None)
                self._printer_columns.pop((r.group, r.version, r.plural), None)
            store = self._store.pop((spec['group'], spec['names']['plural']), {})
            for gone in store.values():  # the API server deletes all custom resources of a CRD
                gone = copy.deepcopy(gone)
                gone['metadata']['resourceVersion'] = self._next_rv()
                self._emit((spec['group'], spec['names']['plural']), 'DELETED', gone, None)
        elif (res.group, res.plural) == NS_KEY:
            ns = obj['metadata']['name']
            for key, store in self._store.items():
                for (ons, oname), o in list(store.items()):
                    if ons == ns:
                        del store[(ons, oname)]
                        gone = copy.deepcopy(o)
                        gone['metadata']['resourceVersion'] = self._next_rv()
                        self._emit(key, 'DELETED', gone, o)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        spec, names = crd['spec'], crd['spec']['names']
        for r in self._crd_kinds.pop(crd['metadata']['name'], []):
            del self.resources[r]
            self._schemas.pop(r, None)
        registered = []
        for v in spec['versions']:
            if v.get('served', True) is False:
                continue
            r = kmock.resource(spec['group'], v['name'], names['plural'])
            subs = set((v.get('subresources') or spec.get('subresources') or {}).keys())
            self.resources[r] = kmock.ResourceInfo(
                kind=names['kind'], singular=names.get('singular') or names['kind'].lower(),
                namespaced=spec['scope'] == 'Namespaced', verbs=VERBS,
                shortnames=names.get('shortNames') or [], categories=names.get('categories') or [],
                subresources=subs)
            self._printer_columns[(r.group, r.version, r.plural)] = list(
                v.get('additionalPrinterColumns') or spec.get('additionalPrinterColumns') or [])
            root = (v.get('schema') or spec.get('validation') or {}).get('openAPIV3Schema')
            schema = Schema(root, f'CRD {crd["metadata"]["name"]} version {v["name"]}') if isinstance(root, dict) else None
            if schema is not None:
                schema.report_unsupported()
            self._schemas[r] = schema
            registered.append(r)
        self._crd_kinds[crd['metadata']['name']] = registered

    # ---- reading -----------------------------------------------------------

    def _select(self, res: kmock.resource, namespace: str | None, params: Any) -> list[dict[str, Any]]:
        labels = parse_label_selector(params.get('labelSelector'))
        fields = parse_field_selector(params.get('fieldSelector'))
        items = [o for (ns, _), o in self._store[(res.group, res.plural)].items()
                 if (namespace is None or ns == namespace)
                 and match_labels(labels, o['metadata'].get('labels')) and match_fields(fields, o)]
        return sorted(items, key=lambda o: (o['metadata'].get('namespace') or '', o['metadata']['name']))

    def _list_body(self, res: kmock.resource, info: kmock.ResourceInfo, items: list[dict[str, Any]],
                   cont: str | None = None, remaining: int | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {'resourceVersion': str(self._rv)}
        if cont:
            meta['continue'] = cont
            meta['remainingItemCount'] = remaining
        return {'kind': f'{info.kind}List', 'apiVersion': f'{res.group}/{res.version}' if res.group else res.version,
                'metadata': meta, 'items': [self._present(res, info, o) for o in items]}

    def _list(self, res: kmock.resource, info: kmock.ResourceInfo, namespace: str | None, params: Any,
              accept: str) -> aiohttp.web.Response:
        items = self._select(res, namespace, params)
        start = 0
        if params.get('continue'):
            try:
                start = int(base64.b64decode(params['continue']).decode())
            except ValueError:
                raise bad_request('invalid continue token')
        limit = int(params.get('limit') or 0)
        cont = None
        if limit > 0 and start + limit < len(items):
            cont = base64.b64encode(str(start + limit).encode()).decode()
            page = items[start:start + limit]
        else:
            page = items[start:]
        if accept_table(accept):
            return aiohttp.web.json_response(self._table(res, info, page, params))
        body = self._list_body(res, info, page, cont, len(items) - start - len(page))
        if accept_partial(accept):
            body.update(kind='PartialObjectMetadataList', apiVersion='meta.k8s.io/v1',
                        items=[partial(o) for o in body['items']])
        return aiohttp.web.json_response(body)

    def _table(self, res: kmock.resource, info: kmock.ResourceInfo, items: list[dict[str, Any]],
               params: Any, with_columns: bool = True) -> dict[str, Any]:
        """meta.k8s.io/v1 Table, which `kubectl get` asks for; CRD printer columns included."""
        custom = self._printer_columns.get((res.group, res.version, res.plural))
        cols = [{'name': 'Name', 'type': 'string', 'format': 'name', 'description': 'Name must be unique within a namespace.', 'priority': 0}]
        paths: list[tuple[str, str]] = [('.metadata.name', 'string')]
        if custom:
            for c in custom:
                cols.append({'name': c['name'], 'type': c.get('type', 'string'), 'format': c.get('format', ''),
                             'description': c.get('description', ''), 'priority': c.get('priority', 0)})
                paths.append((c['jsonPath'], c.get('type', 'string')))
        else:
            cols.append({'name': 'Age', 'type': 'string', 'format': '', 'description': 'CreationTimestamp', 'priority': 0})
            paths.append(('.metadata.creationTimestamp', 'date'))
        include = params.get('includeObject', 'Metadata')
        rows = []
        for o in items:
            cells = []
            for p, typ in paths:
                v = jsonpath.cell(o, p)
                if typ == 'date':
                    v = human_age(v) if v else '<unknown>'
                cells.append(v)
            if include == 'Object':
                row_obj: dict[str, Any] | None = self._present(res, info, o)
            elif include == 'None':
                row_obj = None
            else:
                row_obj = {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1', 'metadata': o['metadata']}
            rows.append({'cells': cells, 'object': row_obj})
        table: dict[str, Any] = {'kind': 'Table', 'apiVersion': 'meta.k8s.io/v1',
                                 'metadata': {'resourceVersion': str(self._rv)}, 'rows': rows}
        if with_columns:
            table['columnDefinitions'] = cols
        return table

    # ---- watch -------------------------------------------------------------

    async def _watch(self, raw: aiohttp.web.BaseRequest, res: kmock.resource, info: kmock.ResourceInfo,
                     namespace: str | None, params: Any, accept: str) -> aiohttp.web.StreamResponse:
        key = (res.group, res.plural)
        w = _Watch(key=key, namespace=namespace, labels=parse_label_selector(params.get('labelSelector')),
                   fields=parse_field_selector(params.get('fieldSelector')))
        rv_param = params.get('resourceVersion') or ''
        bookmarks = params.get('allowWatchBookmarks', '').lower() in ('true', '1')
        initial_events = params.get('sendInitialEvents', '').lower() in ('true', '1')
        as_table = accept_table(accept)
        as_partial = accept_partial(accept)
        timeout = float(params.get('timeoutSeconds') or self.default_watch_timeout)

        # Everything up to the registration is synchronous: no event can slip in between.
        first: list[tuple[str, dict[str, Any]]] = []
        expired = False
        if initial_events or rv_param in ('', '0'):
            first = [('ADDED', o) for o in self._select(res, namespace, params)]
        else:
            try:
                since = int(rv_param)
            except ValueError:
                raise bad_request(f'invalid resourceVersion: {rv_param!r}')
            oldest = self._events[0][0] if self._events else self._rv + 1
            if since < oldest - 1 and since < self._rv:
                expired = True
            else:
                for rv, ekey, etype, obj, old in self._events:
                    if ekey == key and rv > since:
                        t = w.translate(etype, obj, old)
                        if t:
                            first.append((t, obj))
        start_rv = self._rv
        if not expired:
            self._watches.add(w)

        resp = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json', 'Cache-Control': 'no-cache'})
        resp.enable_chunked_encoding()
        await resp.prepare(raw)

        def line(etype: str, obj: dict[str, Any], columns: bool = False) -> bytes:
            if etype in ('ADDED', 'MODIFIED', 'DELETED') and as_table:
                body = self._table(res, info, [obj], params, with_columns=columns)
            elif etype in ('ADDED', 'MODIFIED', 'DELETED') and as_partial:
                body = partial(obj)
            elif etype in ('ADDED', 'MODIFIED', 'DELETED'):
                body = self._present(res, info, obj)
            else:
                body = obj
            return json.dumps({'type': etype, 'object': body}).encode() + b'\n'

        def bookmark(rv: int, end_of_initial: bool = False) -> bytes:
            meta: dict[str, Any] = {'resourceVersion': str(rv)}
            if end_of_initial:
                meta['annotations'] = {'k8s.io/initial-events-end': 'true'}
            return json.dumps({'type': 'BOOKMARK', 'object': {
                'kind': info.kind, 'apiVersion': f'{res.group}/{res.version}' if res.group else res.version,
                'metadata': meta}}).encode() + b'\n'

        try:
            if expired:
                await resp.write(json.dumps({'type': 'ERROR', 'object': status_body(
                    err(410, 'Expired', f'too old resource version: {rv_param} ({self._events[0][0] - 1 if self._events else self._rv})'))}).encode() + b'\n')
                return resp
            columns_sent = False
            for etype, obj in first:
                await resp.write(line(etype, obj, columns=not columns_sent))
                columns_sent = True
            if initial_events and bookmarks:
                await resp.write(bookmark(start_rv, end_of_initial=True))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            last_rv = start_rv
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    break
                wait = min(left, self.bookmark_interval if bookmarks else 5.0)
                try:
                    rv, etype, obj, old = await asyncio.wait_for(w.queue.get(), timeout=wait)
                except asyncio.TimeoutError:
                    if raw.transport is None or raw.transport.is_closing():
                        break
                    if bookmarks and loop.time() < deadline:
                        await resp.write(bookmark(max(last_rv, self._rv)))
                    continue
                last_rv = rv
                t = w.translate(etype, obj, old)
                if t:
                    await resp.write(line(t, obj, columns=not columns_sent))
                    columns_sent = True
            await resp.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self._watches.discard(w)
        return resp

    # ---- discovery -----------------------------------------------------------

    def _root_paths(self) -> list[str]:
        paths = {'/api', '/api/v1', '/apis', '/version', '/healthz', '/readyz', '/livez', '/openapi/v3'}
        for g, versions in self._groups().items():
            if g:
                paths.add(f'/apis/{g}')
                paths.update(f'/apis/{g}/{v}' for v in versions)
        return sorted(paths)

    def _discovery_api(self, accept: str) -> aiohttp.web.Response:
        agg = accept_aggregated(accept)
        if agg:
            return self._aggregated([''], agg)
        return aiohttp.web.json_response({'kind': 'APIVersions', 'versions': ['v1'], 'serverAddressByClientCIDRs': [
            {'clientCIDR': '0.0.0.0/0', 'serverAddress': '127.0.0.1'}]})

    def _group_entry(self, group: str, versions: list[str]) -> dict[str, Any]:
        return {'name': group,
                'versions': [{'groupVersion': f'{group}/{v}', 'version': v} for v in versions],
                'preferredVersion': {'groupVersion': f'{group}/{versions[0]}', 'version': versions[0]}}

    def _discovery_apis(self, accept: str) -> aiohttp.web.Response:
        groups = {g: vs for g, vs in self._groups().items() if g}
        agg = accept_aggregated(accept)
        if agg:
            return self._aggregated(sorted(groups), agg)
        return aiohttp.web.json_response({'kind': 'APIGroupList', 'apiVersion': 'v1',
                                          'groups': [self._group_entry(g, vs) for g, vs in sorted(groups.items())]})

    def _discovery_group(self, group: str) -> aiohttp.web.Response:
        versions = self._groups().get(group)
        if not versions or not group:
            raise err(404, 'NotFound', 'the server could not find the requested resource')
        return aiohttp.web.json_response(dict(self._group_entry(group, versions), kind='APIGroup', apiVersion='v1'))

    def _discovery_version(self, group: str, version: str) -> aiohttp.web.Response:
        found = [(r, self.resources[r]) for r in self.resources if r.group == group and r.version == version]
        if not found:
            raise err(404, 'NotFound', 'the server could not find the requested resource')
        resources = []
        for r, info in sorted(found, key=lambda x: x[0].plural):
            resources.append({'name': r.plural, 'singularName': info.singular or '', 'namespaced': bool(info.namespaced),
                              'kind': info.kind, 'verbs': sorted(info.verbs),
                              **({'shortNames': sorted(info.shortnames)} if info.shortnames else {}),
                              **({'categories': sorted(info.categories)} if info.categories else {})})
            for sub in sorted(info.subresources):
                resources.append({'name': f'{r.plural}/{sub}', 'singularName': '', 'namespaced': bool(info.namespaced),
                                  'kind': 'Scale' if sub == 'scale' else info.kind, 'verbs': SUB_VERBS,
                                  **({'group': 'autoscaling', 'version': 'v1'} if sub == 'scale' else {})})
        return aiohttp.web.json_response({'kind': 'APIResourceList', 'apiVersion': 'v1',
                                          'groupVersion': f'{group}/{version}' if group else version,
                                          'resources': resources})

    def _aggregated(self, groups: list[str], ctype: str) -> aiohttp.web.Response:
        api_version = 'apidiscovery.k8s.io/v2beta1' if ctype == AGG_V2BETA1 else 'apidiscovery.k8s.io/v2'
        all_groups = self._groups()
        items = []
        for g in groups:
            versions = []
            for v in all_groups.get(g, []):
                resources = []
                for r in sorted((r for r in self.resources if r.group == g and r.version == v), key=lambda r: r.plural):
                    info = self.resources[r]
                    entry: dict[str, Any] = {
                        'resource': r.plural, 'singularResource': info.singular or '',
                        'responseKind': {'group': g, 'version': v, 'kind': info.kind},
                        'scope': 'Namespaced' if info.namespaced else 'Cluster', 'verbs': sorted(info.verbs),
                        'subresources': [{'subresource': s, 'verbs': SUB_VERBS,
                                          'responseKind': {'group': 'autoscaling', 'version': 'v1', 'kind': 'Scale'} if s == 'scale'
                                          else {'group': g, 'version': v, 'kind': info.kind}} for s in sorted(info.subresources)]}
                    if info.shortnames:
                        entry['shortNames'] = sorted(info.shortnames)
                    if info.categories:
                        entry['categories'] = sorted(info.categories)
                    resources.append(entry)
                versions.append({'version': v, 'resources': resources, 'freshness': 'Current'})
            items.append({'metadata': {'name': g, 'creationTimestamp': None}, 'versions': versions})
        body = {'kind': 'APIGroupDiscoveryList', 'apiVersion': api_version, 'metadata': {}, 'items': items}
        return aiohttp.web.Response(body=json.dumps(body).encode(), headers={'Content-Type': ctype})

    def _openapi(self, segs: list[str]) -> aiohttp.web.Response:
        """Just enough OpenAPI v3 for kubectl to learn that `fieldValidation` is supported (no schemas)."""
        if segs == ['openapi', 'v3']:
            paths = {'api/v1': {'serverRelativeURL': '/openapi/v3/api/v1'}}
            for g, versions in self._groups().items():
                for v in versions:
                    if g:
                        paths[f'apis/{g}/{v}'] = {'serverRelativeURL': f'/openapi/v3/apis/{g}/{v}'}
            return aiohttp.web.json_response({'paths': paths})
        if len(segs) >= 4 and segs[:2] == ['openapi', 'v3']:
            rest = segs[2:]
            group, version = ('', rest[1]) if rest[0] == 'api' else (rest[1], rest[2] if len(rest) > 2 else '')
            paths: dict[str, Any] = {}
            for r in self.resources:
                if r.group != group or r.version != version:
                    continue
                info = self.resources[r]
                prefix = f'/apis/{group}/{version}' if group else f'/api/{version}'
                path = f'{prefix}/namespaces/{{namespace}}/{r.plural}/{{name}}' if info.namespaced else f'{prefix}/{r.plural}/{{name}}'
                gvk = {'group': group, 'version': version, 'kind': info.kind}
                op = {'parameters': [{'name': 'fieldValidation', 'in': 'query', 'schema': {'type': 'string'}},
                                     {'name': 'dryRun', 'in': 'query', 'schema': {'type': 'string'}}],
                      'responses': {}, 'x-kubernetes-group-version-kind': gvk}
                paths[path] = {'get': dict(op, **{'x-kubernetes-action': 'get'}),
                               'put': dict(op, **{'x-kubernetes-action': 'put'}),
                               'patch': dict(op, **{'x-kubernetes-action': 'patch'})}
            if not paths:
                raise err(404, 'NotFound', 'the server could not find the requested resource')
            return aiohttp.web.json_response({'openapi': '3.0.0', 'info': {'title': 'Kubernetes', 'version': 'v1.32.0'},
                                              'paths': paths, 'components': {'schemas': {}}})
        raise err(404, 'NotFound', 'the server could not find the requested resource')


# -----------------------------------------------------------------------------
# Command line.

def check_crd_rules(directory: str) -> None:
    """List at start-up, on stderr, the CEL rules of the CRDs in ``directory`` the library cannot run."""
    rules = unsupported = 0
    for path in sorted(glob.glob(os.path.join(directory, '*.yaml'))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if not isinstance(doc, dict) or doc.get('kind') != 'CustomResourceDefinition':
                    continue
                for v in (doc.get('spec') or {}).get('versions') or []:
                    root = (v.get('schema') or {}).get('openAPIV3Schema')
                    if isinstance(root, dict):
                        schema = Schema(root, f'CRD {doc["metadata"]["name"]} version {v["name"]} ({path})')
                        rules += sum(len(r) for r in schema.rules.values())
                        unsupported += len(schema.unsupported)
                        schema.report_unsupported()
    print(f'kube stand-in: {rules} CEL rules in {directory}, {unsupported} that the CEL library cannot evaluate'
          + (' (listed above; writes that need them are refused)' if unsupported else ''), file=sys.stderr, flush=True)


async def serve(host: str, port: int, log_requests: bool, ready_file: str | None, event_log_size: int) -> None:
    standin = KubeStandIn(log_requests=log_requests, event_log_size=event_log_size)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with standin, kmock.Server(standin, host=host, port=port) as server:
        print(f'kube stand-in listening on http://{server.host}:{server.port}', file=sys.stderr, flush=True)
        if ready_file:
            with open(ready_file, 'w') as f:
                f.write(f'{server.port}\n')
        await stop.wait()
        print('kube stand-in stopping', file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description='Kubernetes API stand-in (kmock-based), plain HTTP.')
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=16443, help='0 picks a free port (see --ready-file)')
    parser.add_argument('--log-requests', action='store_true', help='log one line per request to stderr')
    parser.add_argument('--ready-file', help='write the bound port here once listening')
    parser.add_argument('--event-log-size', type=int, default=10000,
                        help='events kept for watches resuming by resourceVersion (older: 410 Expired)')
    parser.add_argument('--check-crds', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'crds'),
                        help='list at start-up the CEL rules of these CRDs that cannot be evaluated (default: the repo\'s crds/)')
    args = parser.parse_args(argv)
    if args.check_crds and os.path.isdir(args.check_crds):
        check_crd_rules(os.path.normpath(args.check_crds))
    asyncio.run(serve(args.host, args.port, args.log_requests, args.ready_file, args.event_log_size))


if __name__ == '__main__':
    main()
