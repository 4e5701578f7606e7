"""Label selectors (``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EXISTS = re.compile(rf"^(?P<neg>!)?\s*(?P<key>{_KEY})$")
_EQUALS = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})$")
_SET = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")

Predicate = Callable[[dict[str, Any]], bool]


def _split(text: str) -> list[str]:
    """Split at commas that are not inside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


@dataclass(frozen=True)
class Requirement:
    """One requirement on a label: ``op`` is one of ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!``."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether a label map satisfies this requirement (``!=``/``notin`` also match absent labels)."""
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return not present or value not in self.values


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a ``labelSelector`` query value.

    Raises:
        ApiError: 400 BadRequest when a requirement cannot be parsed.
    """
    requirements = []
    for part in _split(text or ""):
        if m := _SET.match(part):
            values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
            requirements.append(Requirement(m["key"], "in" if m["op"] == "in" else "notin", values))
        elif m := _EQUALS.match(part):
            op = "!=" if m["op"] == "!=" else "="
            requirements.append(Requirement(m["key"], op, frozenset([m["value"] or ""])))
        elif m := _EXISTS.match(part):
            requirements.append(Requirement(m["key"], "!" if m["neg"] else "exists"))
        else:
            raise bad_request(f"unable to parse requirement: found {part!r}, expected a valid label selector")
    return requirements


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    """Whether an object's ``metadata.labels`` satisfy every requirement."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in requirements)


def _field(obj: dict[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_field_selector(text: str | None) -> list[tuple[str, bool, str]]:
    """Parse a ``fieldSelector`` into (dotted field path, equal?, value) terms.

    Any dotted field path is accepted (a real server accepts only a few per resource, always
    ``metadata.name`` and ``metadata.namespace``).

    Raises:
        ApiError: 400 BadRequest for a term without ``=``, ``==`` or ``!=``.
    """
    terms = []
    for part in _split(text or ""):
        m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", part)
        if m is None:
            raise bad_request(f"invalid field selector: {part!r}")
        terms.append((m[1], m[2] != "!=", m[3].strip()))
    return terms


def fields_match(terms: list[tuple[str, bool, str]], obj: dict[str, Any]) -> bool:
    """Whether an object satisfies every field selector term."""
    return all((_field(obj, path) == value) == equal for path, equal, value in terms)


def selector_predicate(label_selector: str | None, field_selector: str | None) -> Predicate:
    """One predicate for both selectors (raises :class:`ApiError` 400 when either is malformed)."""
    labels = parse_label_selector(label_selector)
    fields = parse_field_selector(field_selector)
    return lambda obj: labels_match(labels, obj) and fields_match(fields, obj)
