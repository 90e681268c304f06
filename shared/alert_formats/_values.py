"""Reading single wire values: text, numbers, times, enumerations, positions."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

_SEVERITIES = {"informational", "low", "medium", "high", "unknown"}
_SEVERITY_ALIASES = {"unspecified": "unknown", "unknownfuturevalue": "unknown"}

_STATUSES = {"new", "inprogress", "resolved", "unknown"}
_STATUS_ALIASES = {
    # Sentinel's words for an open alert and for one closed without action.
    "active": "new",
    "dismissed": "resolved",
    "unknownfuturevalue": "unknown",
}

_DETAIL_CHARS = 80


def normalise_severity(value: object) -> str | None:
    """informational, low, medium, high or unknown; None when not stated."""
    word = _word(value)
    if word is None:
        return None
    word = _SEVERITY_ALIASES.get(word, word)
    return word if word in _SEVERITIES else "unknown"


def normalise_status(value: object) -> str | None:
    """new, inprogress, resolved or unknown; None when not stated."""
    word = _word(value)
    if word is None:
        return None
    word = _STATUS_ALIASES.get(word, word)
    return word if word in _STATUSES else "unknown"


def _word(value: object) -> str | None:
    folded = text(value)
    if folded is None:
        return None
    return folded.replace(" ", "").replace("_", "").lower()


def text(value: object) -> str | None:
    """A stripped, non-empty string, or None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def whole_number(value: object) -> int | None:
    """An integer from an int or a string of digits, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdecimal():
        try:
            return int(value.strip())
        except ValueError:
            # Past the interpreter's digit limit: no build number is that long.
            return None
    return None


def timestamp(value: object) -> datetime | None:
    """An aware datetime from an ISO 8601 string; times without a zone are UTC."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def is_absent(value: object) -> bool:
    """Whether a field states nothing: missing, null, or blank."""
    return value is None or (isinstance(value, str) and not value.strip())


def show(value: object) -> str:
    """A short printable form of a value for a rejection's detail."""
    try:
        shown = repr(value)
    except ValueError:
        # An integer past the interpreter's digit limit cannot be printed.
        shown = f"<{type(value).__name__}>"
    if len(shown) > _DETAIL_CHARS:
        return shown[: _DETAIL_CHARS - 3] + "..."
    return shown


def mapping(value: object) -> Mapping[str, object] | None:
    """``value`` if it is a JSON object, else None.

    Any mapping counts: a document handed over read-only (the client's alert
    documents are) is still a JSON object.
    """
    return value if isinstance(value, Mapping) else None


def items(value: object) -> list[object]:
    """``value`` if it is a JSON array, else an empty list."""
    return value if isinstance(value, list) else []


def at(prefix: str, suffix: str) -> str:
    """A position inside ``prefix``: ``records[3]`` + ``AdditionalFields``."""
    if not prefix:
        return suffix
    if not suffix or suffix.startswith("["):
        return prefix + suffix
    return f"{prefix}.{suffix}"
