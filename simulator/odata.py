"""The small part of OData the simulator's list endpoints understand.

``$filter`` is a conjunction of comparisons, ``<property> <op> <literal>`` joined by
``and``: strings in single quotes (a quote doubled inside), times unquoted in ISO
8601 (``2025-01-06T09:00:00Z`` or a bare date), whole numbers unquoted. Property names
match in any letter case; string values match exactly. ``$top`` (at most 10,000) and
``$skip`` take whole numbers.

Limitations: no ``or``, ``not``, parentheses, functions (``contains``...) or ``in``;
such a filter is refused with 400 ODataError rather than answered wrongly.
"""

from __future__ import annotations

__all__ = [
    "MAX_TOP",
    "Comparison",
    "FieldKind",
    "matches",
    "parse_count",
    "parse_filter",
]

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from simulator.errors import ApiFailure

# "$top" is at most 10,000 on every list API the playbook uses (defender-api.md
# sections 4 and 5).
MAX_TOP = 10_000

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<bare>[0-9][0-9A-Za-z:.+\-]*)|(?P<other>\S))"
)
_ORDERINGS: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "ge": operator.ge,
    "lt": operator.lt,
    "le": operator.le,
}
_STRING_OPERATORS = frozenset({"eq", "ne"})
_ORDER_OPERATORS = _STRING_OPERATORS | _ORDERINGS.keys()


class FieldKind(StrEnum):
    STRING = "string"
    TIME = "time"
    NUMBER = "number"


Value = str | float | int


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value``, with the field's canonical name."""

    field: str
    op: str
    value: Value


def parse_filter(text: str, fields: Mapping[str, FieldKind]) -> list[Comparison]:
    """Parse a ``$filter``; raises ApiFailure 400 ODataError when it cannot."""
    canonical = {name.lower(): name for name in fields}
    tokens = _tokenise(text)
    comparisons: list[Comparison] = []

    position = 0
    while True:
        if position + 3 > len(tokens):
            raise _odata_error(f"the filter '{text}' ends in the middle of a clause")
        (name_kind, name), (op_kind, op), literal = tokens[position : position + 3]
        if name_kind != "word" or name.lower() not in canonical:
            known = ", ".join(fields)
            raise _odata_error(
                f"'{name}' is not a property you can filter on ({known})"
            )
        if op_kind != "word":
            raise _odata_error(f"expected an operator after '{name}', got '{op}'")

        field = canonical[name.lower()]
        comparisons.append(_comparison(field, fields[field], op.lower(), literal))
        position += 3

        if position == len(tokens):
            return comparisons
        joiner_kind, joiner = tokens[position]
        if joiner_kind != "word" or joiner.lower() != "and":
            raise _odata_error(
                f"'{joiner}' is not supported here; clauses can only be joined by 'and'"
            )
        position += 1


def parse_count(option: str, text: str, *, maximum: int | None = None) -> int:
    """Parse ``$top`` or ``$skip``; raises ApiFailure 400 ODataError when invalid."""
    if not text.isdigit():
        raise _odata_error(f"{option} must be a whole number, not '{text}'")

    count = int(text)
    if maximum is not None and count > maximum:
        raise _odata_error(f"{option} cannot exceed {maximum}, got {count}")
    return count


def matches(comparisons: list[Comparison], record: Mapping[str, object]) -> bool:
    """Whether a record's fields satisfy every comparison."""
    return all(_holds(c, record.get(c.field)) for c in comparisons)


def _holds(comparison: Comparison, actual: object) -> bool:
    wanted = comparison.value
    if comparison.op == "eq":
        return actual == wanted
    if comparison.op == "ne":
        return actual != wanted

    # Ordering applies to times and numbers only; a missing value never matches.
    if not isinstance(actual, int | float) or not isinstance(wanted, int | float):
        return False
    return _ORDERINGS[comparison.op](actual, wanted)


def _tokenise(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            break
        kind = match.lastgroup or "other"
        tokens.append((kind, match.group(kind)))
        position = match.end()
        if not text[position:].strip():
            break

    if not tokens:
        raise _odata_error("the filter is empty")
    return tokens


def _comparison(
    field: str, kind: FieldKind, op: str, literal: tuple[str, str]
) -> Comparison:
    operators = _STRING_OPERATORS if kind is FieldKind.STRING else _ORDER_OPERATORS
    if op not in operators:
        allowed = ", ".join(sorted(operators))
        raise _odata_error(f"operator '{op}' cannot apply to {field} ({allowed})")

    literal_kind, text = literal
    if kind is FieldKind.STRING:
        if literal_kind != "string":
            raise _odata_error(f"{field} takes a quoted string, not {text}")
        return Comparison(field, op, text[1:-1].replace("''", "'"))

    if literal_kind != "bare":
        raise _odata_error(f"{field} takes an unquoted {kind.value}, not {text}")
    if kind is FieldKind.NUMBER:
        if not text.isdigit():
            raise _odata_error(f"{field} takes a whole number, not {text}")
        return Comparison(field, op, int(text))
    return Comparison(field, op, _parse_time(field, text))


def _parse_time(field: str, text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _odata_error(f"{field} takes an ISO 8601 time, not {text}") from None

    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _odata_error(detail: str) -> ApiFailure:
    return ApiFailure(400, "ODataError", f"Invalid OData URI query: {detail}.")
