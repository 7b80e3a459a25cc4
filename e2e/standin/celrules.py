"""``x-kubernetes-validations`` CEL rules, evaluated with PyPI ``common-expression-language``.

https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#validation-rules

A rule is compiled once, when its CRD is registered.  A rule the library cannot run
(a syntax it does not parse, or a function it lacks -- most of the Kubernetes CEL
libraries: ``quantity``, ``url``, ``ip``, ``format``...) is *unsupported*: it is
logged loudly at registration and every write that would need it is refused
(422, ``Internal error``), so that nothing passes unchecked.
"""
from __future__ import annotations

import functools
import re
from typing import Any

import cel  # PyPI common-expression-language

# Functions and macros (name -> an expression that must evaluate to true) probed at import:
# a rule calling a name that is not here, or whose probe fails, is unsupported.
_PROBES = {
    'has': 'has({"a": 1}.a)', 'all': '[1].all(x, x > 0)', 'exists': '[1].exists(x, x > 0)',
    'exists_one': '[1].exists_one(x, x > 0)', 'map': '[1].map(x, x + 1) == [2]',
    'filter': '[1, 2].filter(x, x > 1) == [2]', 'size': 'size([1]) == 1 && [1].size() == 1 && "ab".size() == 2',
    'int': 'int("1") == 1', 'uint': 'uint(1) == 1u', 'double': 'double(1) == 1.0', 'string': 'string(1) == "1"',
    'bytes': 'bytes("a") == b"a"', 'bool': 'bool("true")', 'type': 'type(1) == int', 'dyn': 'dyn(1) == 1',
    'timestamp': 'timestamp("2020-01-01T00:00:00Z") < timestamp("2021-01-01T00:00:00Z")',
    'duration': 'duration("1s") < duration("2s")', 'matches': '"abc".matches("^a")',
    'contains': '"abc".contains("b")', 'startsWith': '"abc".startsWith("a")', 'endsWith': '"abc".endsWith("c")',
    'lowerAscii': '"A".lowerAscii() == "a"', 'upperAscii': '"a".upperAscii() == "A"', 'trim': '" a ".trim() == "a"',
    'split': '"a,b".split(",") == ["a", "b"]', 'join': '["a", "b"].join(",") == "a,b"',
    'replace': '"aa".replace("a", "b") == "bb"', 'indexOf': '"abc".indexOf("b") == 1',
    'lastIndexOf': '"abcb".lastIndexOf("b") == 3', 'substring': '"abc".substring(1) == "bc"',
    'charAt': '"abc".charAt(1) == "b"', 'isSorted': '[1, 2].isSorted()', 'sum': '[1, 2].sum() == 3',
    'min': '[1, 2].min() == 1', 'max': '[1, 2].max() == 2', 'quantity': 'quantity("1") == quantity("1")',
    'isQuantity': 'isQuantity("1")', 'url': 'url("https://a").getHost() == "a"', 'isURL': 'isURL("https://a")',
    'ip': 'ip("1.2.3.4").family() == 4', 'isIP': 'isIP("1.2.3.4")', 'cidr': 'cidr("1.2.3.0/24").prefixLength() == 24',
    'isCIDR': 'isCIDR("1.2.3.0/24")', 'format': '"%d".format([1]) == "1"',
    'getField': 'true == false',  # never
}


def _probe(expr: str) -> bool:
    try:
        return cel.evaluate(expr) is True
    except Exception:  # noqa: BLE001 -- any failure means "not supported"
        return False


@functools.cache
def supported_functions() -> frozenset[str]:
    return frozenset(name for name, expr in _PROBES.items() if _probe(expr))


_CALL = re.compile(r'(?:^|[^\w.])\.?([A-Za-z_]\w*)\s*\(|\.([A-Za-z_]\w*)\s*\(')
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')


def called_names(expr: str) -> set[str]:
    """Names the expression calls (``f(...)`` and ``x.f(...)``), string literals left out."""
    bare = _STRINGS.sub('""', expr)
    return {a or b for a, b in _CALL.findall(bare)}


class Rule:
    """One compiled rule of a schema node: ``rule``, ``message``/``messageExpression``,
    ``reason``, ``fieldPath``.  ``unsupported`` says why the library cannot run it."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.rule: str = str(spec.get('rule', ''))
        self.message: str | None = spec.get('message')
        self.message_expression: str | None = spec.get('messageExpression')
        self.reason: str = spec.get('reason') or 'FieldValueInvalid'
        self.field_path: str = spec.get('fieldPath') or ''
        self.optional_old_self = bool(spec.get('optionalOldSelf'))
        self.transition = re.search(r'\boldSelf\b', _STRINGS.sub('""', self.rule)) is not None
        self.unsupported: str | None = None
        self.program = self._compile(self.rule, 'rule')
        self.message_program = self._compile(self.message_expression, 'messageExpression') \
            if self.message_expression else None
        if self.optional_old_self:
            self.unsupported = self.unsupported or 'optionalOldSelf is not implemented by the stand-in'

    def _compile(self, expr: str, what: str) -> Any:
        missing = sorted(called_names(expr) - supported_functions())
        if missing:
            self.unsupported = self.unsupported or f'{what} calls {", ".join(missing)}, which the CEL library lacks'
            return None
        try:
            return cel.compile(expr)
        except Exception as e:  # noqa: BLE001
            self.unsupported = self.unsupported or f'{what} does not compile: {e}'
            return None

    def evaluate(self, self_value: Any, old_value: Any, has_old: bool) -> tuple[bool, str | None]:
        """(passed, error): error is set when the rule could not be evaluated (a failure too)."""
        ctx = {'self': self_value}
        if has_old:
            ctx['oldSelf'] = old_value
        try:
            result = self.program.execute(ctx)
        except Exception as e:  # noqa: BLE001 -- an evaluation error fails the rule, as in the API server
            return False, f'{type(e).__name__}: {e}'.splitlines()[0]
        if not isinstance(result, bool):
            return False, f'rule returned {type(result).__name__}, not bool'
        return result, None

    def failure_message(self, self_value: Any, old_value: Any, has_old: bool) -> str:
        if self.message_program is not None:
            ctx = {'self': self_value}
            if has_old:
                ctx['oldSelf'] = old_value
            try:
                text = self.message_program.execute(ctx)
                if isinstance(text, str) and text.strip() and '\n' not in text:
                    return text
            except Exception:  # noqa: BLE001 -- falls back to message, as the API server does
                pass
        if self.message:
            return self.message
        return f'failed rule: {self.rule}'
