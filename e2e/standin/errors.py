"""Kubernetes ``Status`` errors (kmock's ``KubernetesError``) with real reasons and messages."""
from __future__ import annotations

from typing import Any, NamedTuple

from kmock._internal import k8s  # KubernetesError lives here (re-exported as kmock.KubernetesError)

KubernetesError = k8s.KubernetesError


class Cause(NamedTuple):
    """A ``StatusCause``: ``reason`` (FieldValueRequired...), ``field`` (spec.x), ``message`` (the error body)."""
    reason: str
    field: str
    message: str

    def text(self) -> str:
        return f'{self.field}: {self.message}' if self.field else self.message


def _gr(group: str, plural: str) -> str:
    return f'{plural}.{group}' if group else plural


def err(code: int, reason: str, message: str, **details: Any) -> KubernetesError:
    return KubernetesError(status=code, reason=reason, message=message, details=details or None)


def not_found(group: str, plural: str, name: str) -> KubernetesError:
    return err(404, 'NotFound', f'{_gr(group, plural)} "{name}" not found', name=name, group=group, kind=plural)


def already_exists(group: str, plural: str, name: str) -> KubernetesError:
    return err(409, 'AlreadyExists', f'{_gr(group, plural)} "{name}" already exists',
               name=name, group=group, kind=plural)


def conflict(group: str, plural: str, name: str, why: str) -> KubernetesError:
    return err(409, 'Conflict', f'Operation cannot be fulfilled on {_gr(group, plural)} "{name}": {why}',
               name=name, group=group, kind=plural)


def bad_request(message: str) -> KubernetesError:
    return err(400, 'BadRequest', message)


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> KubernetesError:
    """422 Invalid as the API server words it (``StatusError`` of ``NewInvalid``).

    The message is ``Kind.group "name" is invalid: field: body`` (``[a, b]`` for several);
    kubectl prints ``The Kind "name" is invalid: ...`` from ``details``.
    """
    texts = [c.text() for c in causes]
    joined = texts[0] if len(texts) == 1 else '[' + ', '.join(texts) + ']'
    qualified = f'{kind}.{group}' if group else kind
    return err(422, 'Invalid', f'{qualified} "{name}" is invalid: {joined}', name=name, group=group, kind=kind,
               causes=[{'reason': c.reason, 'message': c.message, 'field': c.field} for c in causes])


def status_body(e: KubernetesError) -> dict[str, Any]:
    body: dict[str, Any] = {
        'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
        'message': e.message or '', 'reason': e.reason or '', 'code': e.status,
    }
    if e.details:
        body['details'] = e.details
    return body
