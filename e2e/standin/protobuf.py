"""Just enough of the Kubernetes protobuf encoding for imperative ``kubectl create``.

https://kubernetes.io/docs/reference/using-api/api-concepts/#protobuf-encoding -- the body is
``k8s\\x00`` + a ``runtime.Unknown`` (typeMeta, raw) whose ``raw`` is the object.  kubectl's
typed clients (``kubectl create namespace``, ``kubectl create configmap``) send protobuf
while accepting JSON back.  Decoded here: Namespace and ConfigMap, and of their
ObjectMeta: name, generateName, namespace, labels, annotations, finalizers.
"""
from __future__ import annotations

import base64
from typing import Any, Iterator

MAGIC = b'k8s\x00'


class ProtobufError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError('truncated varint')
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, Any]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        num, wire = tag >> 3, tag & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 2:
            n, pos = _varint(buf, pos)
            val, pos = buf[pos:pos + n], pos + n
        elif wire == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ProtobufError(f'unsupported wire type {wire}')
        yield num, val


def _map_entry(buf: bytes) -> tuple[str, bytes]:
    d = dict(fields(buf))
    return d.get(1, b'').decode(), d.get(2, b'')


def object_meta(buf: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for num, val in fields(buf):
        if num in (1, 2, 3) and val:
            meta[{1: 'name', 2: 'generateName', 3: 'namespace'}[num]] = val.decode()
        elif num in (11, 12):
            k, v = _map_entry(val)
            meta.setdefault('labels' if num == 11 else 'annotations', {})[k] = v.decode()
        elif num == 14:
            meta.setdefault('finalizers', []).append(val.decode())
    return meta


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object from a protobuf body; ProtobufError for kinds not handled here."""
    if not body.startswith(MAGIC):
        raise ProtobufError('missing the k8s protobuf magic prefix')
    envelope = dict(fields(body[len(MAGIC):]))
    type_meta = dict(fields(envelope.get(1, b'')))
    api_version, kind = type_meta.get(1, b'').decode(), type_meta.get(2, b'').decode()
    raw = envelope.get(2, b'')
    obj: dict[str, Any] = {'apiVersion': api_version, 'kind': kind}
    if (api_version, kind) == ('v1', 'Namespace'):
        for num, val in fields(raw):
            if num == 1:
                obj['metadata'] = object_meta(val)
            elif num == 2:
                fins = [v.decode() for n, v in fields(val) if n == 1]
                if fins:
                    obj['spec'] = {'finalizers': fins}
    elif (api_version, kind) == ('v1', 'ConfigMap'):
        for num, val in fields(raw):
            if num == 1:
                obj['metadata'] = object_meta(val)
            elif num == 2:
                k, v = _map_entry(val)
                obj.setdefault('data', {})[k] = v.decode()
            elif num == 3:
                k, v = _map_entry(val)
                obj.setdefault('binaryData', {})[k] = base64.b64encode(v).decode()
            elif num == 4:
                obj['immutable'] = bool(val)
    else:
        raise ProtobufError(f'protobuf {api_version} {kind} is not decoded by the stand-in (send JSON: kubectl apply -f)')
    obj.setdefault('metadata', {})
    return obj
