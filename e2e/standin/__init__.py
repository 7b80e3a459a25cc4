"""Helpers of the Kubernetes API stand-in (e2e/kube_standin.py), one concern per module.

* ``schema``   -- CRD structural schemas: pruning, defaulting, OpenAPI v3 validation.
* ``cel``      -- ``x-kubernetes-validations`` CEL rules (PyPI ``common-expression-language``).
* ``ssa``      -- server-side apply: ``managedFields`` (FieldsV1), field ownership, conflicts.
* ``jsonpath`` -- the Kubernetes JSONPath of printer columns (filters included).
* ``protobuf`` -- just enough of the Kubernetes protobuf envelope for ``kubectl create namespace``.
* ``errors``   -- ``Status`` errors with real reasons, messages and ``details.causes``.
"""
