"""CRD structural schemas: pruning, defaulting and validation, as the API server does them.

https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/
(sections "Specifying a structural schema", "Field pruning", "Defaulting", "Defaulting and
Nullable", "Validation", "Validation rules", "Validation ratcheting").

Order on every write of a custom resource, as in the API server: unknown fields are pruned
(or refused with ``fieldValidation=Strict``), non-nullable ``null``s are dropped, ``default``s
are applied, then the OpenAPI v3 value validations and the CEL rules run.  On updates,
unchanged subtrees are not validated again (validation ratcheting, on by default since 1.30),
and transition rules (``oldSelf``) run only where an old value exists.
"""
from __future__ import annotations

import copy
import json
import re
import sys
from typing import Any

from .celrules import Rule
from .errors import Cause

MISSING: Any = object()
_GO_TYPES = {bool: 'boolean', int: 'integer', float: 'number', str: 'string', list: 'array', dict: 'object'}


def json_type(value: Any) -> str:
    return 'null' if value is None else _GO_TYPES.get(type(value), type(value).__name__)


def quote(value: Any) -> str:
    """A value as Go's ``%#v``-ish rendering in field errors: strings quoted, the rest JSON."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (dict, list)):
        return json.dumps(json_type(value))
    return json.dumps(value)


def _num(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def list_type(node: dict[str, Any] | None) -> str:
    return (node or {}).get('x-kubernetes-list-type') or 'atomic'


def map_keys(node: dict[str, Any] | None) -> list[str]:
    return list((node or {}).get('x-kubernetes-list-map-keys') or [])


def child(node: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The schema of property ``key`` of an object node (None: unknown / free-form)."""
    if not node:
        return None
    props = node.get('properties')
    if props and key in props:
        return props[key]
    extra = node.get('additionalProperties')
    return extra if isinstance(extra, dict) else None


def items(node: dict[str, Any] | None) -> dict[str, Any] | None:
    it = (node or {}).get('items')
    return it if isinstance(it, dict) else None


class Schema:
    """The compiled ``openAPIV3Schema`` of one served CRD version."""

    def __init__(self, root: dict[str, Any], where: str) -> None:
        self.root = root
        self.where = where
        self.rules: dict[int, list[Rule]] = {}
        self.unsupported: list[tuple[str, str, str]] = []  # (schema path, rule, why)
        self._patterns: dict[str, re.Pattern[str] | None] = {}
        self._compile(root, '')

    def _compile(self, node: Any, path: str) -> None:
        if not isinstance(node, dict):
            return
        rules = [Rule(r) for r in node.get('x-kubernetes-validations') or [] if isinstance(r, dict)]
        if rules:
            self.rules[id(node)] = rules
            for r in rules:
                if r.unsupported:
                    self.unsupported.append((path or '<root>', r.rule, r.unsupported))
        for k, sub in (node.get('properties') or {}).items():
            self._compile(sub, f'{path}.{k}' if path else k)
        if isinstance(node.get('additionalProperties'), dict):
            self._compile(node['additionalProperties'], f'{path}[*]')
        if isinstance(node.get('items'), dict):
            self._compile(node['items'], f'{path}[*]')
        for comb in ('allOf', 'anyOf', 'oneOf'):
            for sub in node.get(comb) or []:
                self._compile(sub, path)
        if isinstance(node.get('not'), dict):
            self._compile(node['not'], path)

    def report_unsupported(self) -> None:
        for path, rule, why in self.unsupported:
            print(f'kube stand-in: UNSUPPORTED CEL rule in {self.where} at {path}: {rule!r}: {why}; '
                  'writes that need it are refused (422)', file=sys.stderr, flush=True)

    # ---- pruning and defaulting ------------------------------------------------

    def prune(self, obj: dict[str, Any]) -> list[str]:
        """Drop unknown fields and non-nullable nulls without default (in place); return the unknown paths."""
        unknown: list[str] = []
        for key in list(obj):
            if key in ('apiVersion', 'kind', 'metadata'):
                continue
            sub = child(self.root, key)
            if sub is None and not self.root.get('x-kubernetes-preserve-unknown-fields'):
                unknown.append(key)
                del obj[key]
            elif sub is not None:
                obj[key] = self._prune(obj[key], sub, key, unknown)
                if obj[key] is MISSING:
                    del obj[key]
        return unknown

    def _prune(self, value: Any, node: dict[str, Any], path: str, unknown: list[str]) -> Any:
        if value is None:
            return value if node.get('nullable') or 'default' in node else MISSING
        if node.get('x-kubernetes-int-or-string'):
            return value
        if isinstance(value, dict):
            if node.get('x-kubernetes-embedded-resource'):
                keep = {'apiVersion', 'kind', 'metadata'}
            else:
                keep = set()
            props = node.get('properties') or {}
            extra = node.get('additionalProperties')
            preserve = node.get('x-kubernetes-preserve-unknown-fields')
            for key in list(value):
                sub = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
                if sub is None:
                    if not (preserve or extra is True or key in keep):
                        unknown.append(f'{path}.{key}')
                        del value[key]
                    continue
                got = self._prune(value[key], sub, f'{path}.{key}', unknown)
                if got is MISSING:
                    del value[key]
                else:
                    value[key] = got
        elif isinstance(value, list) and items(node) is not None:
            it = items(node)
            for i, v in enumerate(value):
                got = self._prune(v, it, f'{path}[{i}]', unknown)  # type: ignore[arg-type]
                value[i] = None if got is MISSING else got
        return value

    def default(self, obj: dict[str, Any]) -> None:
        for key, sub in (self.root.get('properties') or {}).items():
            if key in ('apiVersion', 'kind', 'metadata'):
                continue
            if (key not in obj or (obj[key] is None and not sub.get('nullable'))) and 'default' in sub:
                obj[key] = copy.deepcopy(sub['default'])
            if key in obj:
                self._default(obj[key], sub)

    def _default(self, value: Any, node: dict[str, Any]) -> None:
        if isinstance(value, dict) and not node.get('x-kubernetes-int-or-string'):
            for key, sub in (node.get('properties') or {}).items():
                if (key not in value or (value[key] is None and not sub.get('nullable'))) and 'default' in sub:
                    value[key] = copy.deepcopy(sub['default'])
                if key in value:
                    self._default(value[key], sub)
            extra = node.get('additionalProperties')
            if isinstance(extra, dict):
                for key in value:
                    if key not in (node.get('properties') or {}):
                        self._default(value[key], extra)
        elif isinstance(value, list) and items(node) is not None:
            for v in value:
                self._default(v, items(node))  # type: ignore[arg-type]

    # ---- validation -------------------------------------------------------------

    def validate(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        causes: list[Cause] = []
        root_props = self.root.get('properties') or {}
        for key, sub in root_props.items():
            if key in ('apiVersion', 'kind', 'metadata'):
                continue
            old_v = old.get(key, MISSING) if old is not None else MISSING
            if key in obj:
                self._validate(obj[key], old_v, sub, key, causes)
        for req in self.root.get('required') or []:
            if req not in obj and req not in ('apiVersion', 'kind', 'metadata'):
                causes.append(Cause('FieldValueRequired', req, 'Required value'))
        # root rules see metadata.name and metadata.generateName only, as in the API server
        body = self._rule_view(obj)
        old_body = self._rule_view(old) if old is not None else MISSING
        self._rules(body, old_body, self.root, '', causes)
        return causes

    @staticmethod
    def _rule_view(obj: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in obj.items() if k != 'metadata'}
        meta = obj.get('metadata') or {}
        view['metadata'] = {k: meta[k] for k in ('name', 'generateName') if k in meta}
        return view

    def _validate(self, value: Any, old: Any, node: dict[str, Any], path: str, causes: list[Cause]) -> None:
        if old is not MISSING and value == old:
            return  # ratcheting: an unchanged value is not validated again
        if value is None:
            if not node.get('nullable'):
                causes.append(Cause('FieldValueTypeInvalid', path,
                                    f'Invalid value: "null": {path} in body must be of type {node.get("type", "object")}: "null"'))
            return
        if not self._type_ok(value, node, path, causes):
            return
        self._values(value, node, path, causes)
        if isinstance(value, dict) and not node.get('x-kubernetes-int-or-string'):
            props = node.get('properties') or {}
            extra = node.get('additionalProperties')
            old_d = old if isinstance(old, dict) else {}
            for key, v in value.items():
                sub = props.get(key) if key in props else (extra if isinstance(extra, dict) else None)
                if sub is not None:
                    sub_path = f'{path}.{key}' if key in props else f'{path}[{key}]'
                    self._validate(v, old_d.get(key, MISSING), sub, sub_path, causes)
            for req in node.get('required') or []:
                if req not in value:
                    causes.append(Cause('FieldValueRequired', f'{path}.{req}', 'Required value'))
        elif isinstance(value, list) and items(node) is not None:
            it = items(node)
            olds = self._correlate(value, old, node)
            for i, v in enumerate(value):
                self._validate(v, olds[i], it, f'{path}[{i}]', causes)  # type: ignore[arg-type]
        self._rules(value, old, node, path, causes)

    @staticmethod
    def _correlate(value: list[Any], old: Any, node: dict[str, Any]) -> list[Any]:
        """Old values of list items: only map lists correlate by key (atomic lists do not)."""
        if list_type(node) != 'map' or not isinstance(old, list):
            return [MISSING] * len(value)
        keys = map_keys(node)
        by_key = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
        return [by_key.get(tuple(v.get(k) for k in keys), MISSING) if isinstance(v, dict) else MISSING for v in value]

    def _type_ok(self, value: Any, node: dict[str, Any], path: str, causes: list[Cause]) -> bool:
        if node.get('x-kubernetes-int-or-string'):
            ok = isinstance(value, (int, str)) and not isinstance(value, bool)
            want = 'integer or string'
        else:
            want = node.get('type')
            if not want:
                return True  # x-kubernetes-preserve-unknown-fields without type: anything goes
            ok = {
                'object': isinstance(value, dict), 'array': isinstance(value, list), 'string': isinstance(value, str),
                'boolean': isinstance(value, bool),
                'integer': isinstance(value, int) and not isinstance(value, bool),
                'number': isinstance(value, (int, float)) and not isinstance(value, bool),
            }.get(want, True)
        if not ok:
            got = json_type(value)
            causes.append(Cause('FieldValueTypeInvalid', path,
                                f'Invalid value: "{got}": {path} in body must be of type {want}: "{got}"'))
        return ok

    def _values(self, value: Any, node: dict[str, Any], path: str, causes: list[Cause]) -> None:
        """enum, minimum/maximum, lengths, item counts, pattern, list uniqueness, allOf/anyOf/oneOf/not."""
        enum = node.get('enum')
        if enum is not None and value not in enum:
            causes.append(Cause('FieldValueNotSupported', path, f'Unsupported value: {quote(value)}: supported values: '
                                + ', '.join(quote(e) for e in enum)))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lo, hi = node.get('minimum'), node.get('maximum')
            if lo is not None and (value < lo or (node.get('exclusiveMinimum') and value == lo)):
                rel = 'greater than' if node.get('exclusiveMinimum') else 'greater than or equal to'
                causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {_num(value)}: {path} in body should be {rel} {_num(lo)}'))
            if hi is not None and (value > hi or (node.get('exclusiveMaximum') and value == hi)):
                rel = 'less than' if node.get('exclusiveMaximum') else 'less than or equal to'
                causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {_num(value)}: {path} in body should be {rel} {_num(hi)}'))
            mult = node.get('multipleOf')
            if mult and (value / mult) != int(value / mult):
                causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {_num(value)}: {path} in body should be a multiple of {_num(mult)}'))
        if isinstance(value, str):
            if node.get('maxLength') is not None and len(value) > node['maxLength']:
                causes.append(Cause('FieldValueTooLong', path, f'Too long: may not be more than {node["maxLength"]} bytes'))
            if node.get('minLength') is not None and len(value) < node['minLength']:
                causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {quote(value)}: {path} in body should be at least {node["minLength"]} chars long'))
            pattern = node.get('pattern')
            if pattern is not None:
                rx = self._pattern(pattern)
                if rx is not None and not rx.search(value):
                    causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {quote(value)}: {path} in body should match \'{pattern}\''))
        if isinstance(value, list):
            self._count(len(value), node.get('minItems'), node.get('maxItems'), 'items', path, causes)
            self._unique(value, node, path, causes)
        if isinstance(value, dict):
            self._count(len(value), node.get('minProperties'), node.get('maxProperties'), 'properties', path, causes)
        for sub in node.get('allOf') or []:
            self._values(value, sub, path, causes)
        if node.get('anyOf') and not any(self._passes(value, s, path) for s in node['anyOf']):
            causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {quote(value)}: {path} in body must be of at least one of the anyOf schemas'))
        if node.get('oneOf') and sum(self._passes(value, s, path) for s in node['oneOf']) != 1:
            causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {quote(value)}: {path} in body must be of exactly one of the oneOf schemas'))
        if isinstance(node.get('not'), dict) and self._passes(value, node['not'], path):
            causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {quote(value)}: {path} in body must not validate the schema (not)'))

    @staticmethod
    def _count(n: int, lo: int | None, hi: int | None, noun: str, path: str, causes: list[Cause]) -> None:
        """minItems/maxItems, minProperties/maxProperties."""
        if hi is not None and n > hi:
            causes.append(Cause('FieldValueTooMany', path, f'Too many: {n}: must have at most {hi} items'))
        if lo is not None and n < lo:
            causes.append(Cause('FieldValueInvalid', path, f'Invalid value: {n}: {path} in body should have at least {lo} {noun}'))

    def _passes(self, value: Any, node: dict[str, Any], path: str) -> bool:
        sub: list[Cause] = []
        if node.get('type') or node.get('x-kubernetes-int-or-string'):
            if not self._type_ok(value, node, path, sub):
                return False
        self._values(value, node, path, sub)
        if isinstance(value, dict):
            for req in node.get('required') or []:
                if req not in value:
                    return False
        return not sub

    def _pattern(self, pattern: str) -> re.Pattern[str] | None:
        if pattern not in self._patterns:
            try:
                self._patterns[pattern] = re.compile(pattern)  # ECMA 262 / RE2 patterns are mostly Python ones
            except re.error as e:
                print(f'kube stand-in: pattern {pattern!r} in {self.where} is not a Python regex ({e}); not checked',
                      file=sys.stderr, flush=True)
                self._patterns[pattern] = None
        return self._patterns[pattern]

    @staticmethod
    def _unique(value: list[Any], node: dict[str, Any], path: str, causes: list[Cause]) -> None:
        kind = list_type(node)
        if kind == 'set':
            seen: list[Any] = []
            for i, v in enumerate(value):
                if v in seen:
                    causes.append(Cause('FieldValueDuplicate', f'{path}[{i}]', f'Duplicate value: {quote(v)}'))
                seen.append(v)
        elif kind == 'map':
            keys = map_keys(node)
            seen_keys: set[str] = set()
            for i, v in enumerate(value):
                if not isinstance(v, dict):
                    continue
                k = json.dumps({k: v.get(k) for k in keys}, sort_keys=True)
                if k in seen_keys:
                    causes.append(Cause('FieldValueDuplicate', f'{path}[{i}]', f'Duplicate value: {k}'))
                seen_keys.add(k)

    def _rules(self, value: Any, old: Any, node: dict[str, Any], path: str, causes: list[Cause]) -> None:
        rules = self.rules.get(id(node))
        if not rules:
            return
        self_v = self._to_cel(value, node)
        old_v = self._to_cel(old, node) if old is not MISSING else None
        has_old = old is not MISSING
        where = path
        for rule in rules:
            if rule.transition and not has_old:
                continue  # transition rules run only on updates with an old value
            field = where + rule.field_path if rule.field_path else where
            field = field.lstrip('.')
            if rule.unsupported:
                causes.append(Cause('InternalError', field, f'Internal error: the stand-in cannot evaluate the rule '
                                    f'{rule.rule!r} ({rule.unsupported}); a real API server would'))
                continue
            ok, error = rule.evaluate(self_v, old_v, has_old)
            if ok:
                continue
            if error:
                causes.append(Cause('InternalError', field, f'Internal error: {rule.rule!r} evaluation error: {error}'))
                continue
            message = rule.failure_message(self_v, old_v, has_old)
            body = {'FieldValueRequired': f'Required value: {message}', 'FieldValueForbidden': f'Forbidden: {message}',
                    'FieldValueDuplicate': f'Duplicate value: {message}'}.get(
                rule.reason, f'Invalid value: "{node.get("type") or json_type(value)}": {message}')
            causes.append(Cause(rule.reason, field, body))

    def _to_cel(self, value: Any, node: dict[str, Any] | None) -> Any:
        """JSON as CEL sees it under the schema: ``type: number`` is a double even when written 1."""
        if node is None:
            return value
        if isinstance(value, dict):
            return {k: self._to_cel(v, child(node, k)) for k, v in value.items()}
        if isinstance(value, list):
            it = items(node)
            return [self._to_cel(v, it) for v in value]
        if node.get('type') == 'number' and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
