"""``x-kubernetes-validations`` CEL rules, evaluated with ``cel-python`` (``celpy``).

Rules are found by walking the schema together with the object: a rule on a node is
evaluated with ``self`` bound to the value at that node (when the value is present). Transition
rules (those that mention ``oldSelf``) are evaluated only on updates and only where the old
value can be correlated: object properties and map values by key; list items only for
``x-kubernetes-list-type: map`` lists (by their map keys), as on a real server.

Numbers are converted by the schema type (``number`` becomes a CEL double) before evaluation.

What cannot be evaluated is skipped, and logged once per rule: a rule that ``celpy`` cannot
compile, or that calls a function it does not know (the Kubernetes CEL libraries such as
``quantity()``, ``url()``, ``isSorted()`` or ``format.*`` are not in ``celpy``). An evaluation
error on data (such as reading an absent field without ``has()``) fails the rule, as it does on
a real server. ``messageExpression`` is used when it evaluates to a string, else ``message``.
The cost budget of a real server is not enforced.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import celpy
from celpy.evaluation import CELEvalError

from ...api.openapi import FieldError

log = logging.getLogger(__name__)

_MESSAGES = {
    "FieldValueForbidden": "Forbidden: {msg}",
    "FieldValueRequired": "Required value: {msg}",
    "FieldValueDuplicate": "Duplicate value: {msg}",
}


def _coerce(schema: dict[str, Any], value: Any) -> Any:
    """A copy of ``value`` whose integers are floats where the schema says ``number``."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        out = {}
        for key, item in value.items():
            sub = props.get(key) if key in props else extra if isinstance(extra, dict) else {}
            out[key] = _coerce(sub or {}, item)
        return out
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [_coerce(items or {}, item) for item in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _join(prefix: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    return f"{prefix}.{key}" if prefix else key


class CelValidator:
    """Compiles (once, cached by rule text) and evaluates the CEL rules of structural schemas."""

    def __init__(self, memo_size: int = 4096) -> None:
        self._env: celpy.Environment | None = None
        self._programs: dict[str, Any] = {}
        self._skipped: set[str] = set()
        # rule results by (rule, self, oldSelf) as JSON: status writes re-present the same spec
        self._memo: OrderedDict[tuple[str, str, str], tuple[bool | None, str | None]] = OrderedDict()
        self._memo_size = memo_size

    def _program(self, rule: str) -> Any:
        if rule not in self._programs:
            if self._env is None:
                self._env = celpy.Environment()
            try:
                self._programs[rule] = self._env.program(self._env.compile(rule))
            except celpy.CELParseError as exc:
                self._skip(rule, f"cannot compile: {exc}")
                self._programs[rule] = None
        return self._programs[rule]

    def _skip(self, rule: str, why: str) -> None:
        if rule not in self._skipped:
            self._skipped.add(rule)
            log.warning("CEL rule skipped (%s): %s", why, rule)

    def _evaluate(self, rule: str, activation: dict[str, Any]) -> tuple[bool | None, str | None]:
        """(passed, error text); passed is None when the rule cannot be evaluated here."""
        program = self._program(rule)
        if program is None:
            return None, None
        try:
            result = program.evaluate(activation)
        except CELEvalError as exc:
            result = exc
        if isinstance(result, CELEvalError):
            text = str(result.args[0]) if result.args else str(result)
            if "undeclared reference" in text or "unknown function" in text:
                self._skip(rule, text.split("(in activation")[0].strip())
                return None, None
            return False, text
        return bool(result), None

    def _memoized(
        self, rule: str, bind: Callable[[], dict[str, Any]], new: Any, old: Any
    ) -> tuple[bool | None, str | None]:
        """The rule's result for these values, evaluated (``bind`` makes the activation) on a miss only."""
        key = (rule, json.dumps(new, sort_keys=True, default=str), json.dumps(old, sort_keys=True, default=str))
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._evaluate(rule, bind())
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        else:
            self._memo.move_to_end(key)
        return hit

    def _message(self, spec: dict[str, Any], activation: dict[str, Any]) -> str:
        expression = spec.get("messageExpression")
        if expression:
            program = self._program(expression)
            if program is not None:
                try:
                    value = program.evaluate(activation)
                except CELEvalError:
                    value = None
                if isinstance(value, str) and value.strip():
                    return str(value)
        return str(spec.get("message") or f"failed rule: {spec.get('rule')}")

    def validate(
        self, schema: dict[str, Any], new: Any, old: Any = None, *, prefix: str = "", update: bool = False
    ) -> list[FieldError]:
        """Evaluate every rule that applies to ``new`` (``old`` is the stored value on updates).

        Args:
            schema: the structural schema of ``new``.
            new: the value being written.
            old: the previous value at the same path (None on create or when absent).
            prefix: dotted path of ``new`` in the whole object.
            update: whether this is an update (transition rules run only then).

        Returns:
            One :class:`FieldError` per failed rule, named like a real server (``spec.version:
            Invalid value: exactly one of ...``: kube-apiserver 1.37 names no value for a rule), using the
            rule's ``fieldPath`` and ``reason``.
        """
        if new is None:
            return []
        errors: list[FieldError] = []
        rules = schema.get("x-kubernetes-validations") or []
        with_old = update and old is not None
        activation: dict[str, Any] = {}

        def bind() -> dict[str, Any]:  # converting to CEL values is costly: only on a memo miss
            if not activation:
                activation["self"] = celpy.json_to_cel(_coerce(schema, new))
                if with_old:
                    activation["oldSelf"] = celpy.json_to_cel(_coerce(schema, old))
            return activation

        for spec in rules:
            rule = str(spec.get("rule", ""))
            transition = "oldSelf" in rule
            if transition and not with_old:
                continue  # a transition rule: needs an old value
            passed, failure = self._memoized(rule, bind, new, old if transition else None)
            if passed is None or passed:
                continue
            field = prefix + str(spec.get("fieldPath") or "")
            reason = str(spec.get("reason") or "FieldValueInvalid")
            msg = f"{failure} evaluating rule: {rule}" if failure else self._message(spec, bind())
            template = _MESSAGES.get(reason, "Invalid value: {msg}")
            errors.append(FieldError(field, template.format(msg=msg), reason))
        errors += self._children(schema, new, old, prefix, update)
        return errors

    def _children(self, schema: dict[str, Any], new: Any, old: Any, prefix: str, update: bool) -> list[FieldError]:
        errors: list[FieldError] = []
        if isinstance(new, dict):
            props = schema.get("properties") or {}
            extra = schema.get("additionalProperties")
            olds = old if isinstance(old, dict) else {}
            for key, value in new.items():
                sub = props.get(key) if key in props else extra if isinstance(extra, dict) else None
                if sub:
                    errors += self.validate(sub, value, olds.get(key), prefix=_join(prefix, key), update=update)
        elif isinstance(new, list) and isinstance(schema.get("items"), dict):
            items = schema["items"]
            keys = schema.get("x-kubernetes-list-map-keys") or []
            by_key: dict[tuple[Any, ...], Any] = {}
            if schema.get("x-kubernetes-list-type") == "map" and keys and isinstance(old, list):
                by_key = {tuple(o.get(k) for k in keys): o for o in old if isinstance(o, dict)}
            for i, value in enumerate(new):
                prior = by_key.get(tuple(value.get(k) for k in keys)) if by_key and isinstance(value, dict) else None
                errors += self.validate(items, value, prior, prefix=_join(prefix, i), update=update)
        return errors
