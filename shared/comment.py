"""The comment sent with each StopAndQuarantineFile request.

Defender keeps the comment as the machine action's ``requestorComment``, so it
is how an analyst traces an action back to its alert and to this product. It
names both, and nothing else: the alert id is reduced to letters, digits,
``_``, ``-`` and ``.``, because it comes from the event stream and must not be
able to inject lines, quotes or markup into Defender's records.

``MAX_COMMENT_LENGTH`` is 250 characters. The API documents no limit for
``Comment``, so this is a conservative bound of our own: far above the longest
real alert id (a Defender id such as ``da638034938542195558_2006612345`` is 31
characters, a Sentinel GUID 36) and short enough to read at a glance in a
list of actions. When an id would pass it, the id is cut and marked with
``...``; the product name is never cut.
"""

from __future__ import annotations

__all__ = ["MAX_COMMENT_LENGTH", "PRODUCT_NAME", "quarantine_comment"]

import re

PRODUCT_NAME = "defender-quarantine"
MAX_COMMENT_LENGTH = 250

_PREFIX = "Stop and quarantine file on machine due to alert "
_SUFFIX = f" ({PRODUCT_NAME})"
_TRUNCATED = "..."
_ID_ROOM = MAX_COMMENT_LENGTH - len(_PREFIX) - len(_SUFFIX)

# ASCII only: str.isalnum would let through look-alike letters from other scripts.
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9_.-]+")
_SOMETHING_READABLE = re.compile(r"[A-Za-z0-9]")


def _safe_alert_id(alert_id: str) -> str:
    """The id with each run of unsafe characters replaced by one ``_``.

    An id left with no letter or digit names nothing, and reads ``unknown``.
    """
    safe = _UNSAFE_RUN.sub("_", alert_id.strip())
    if not _SOMETHING_READABLE.search(safe):
        return "unknown"

    if len(safe) > _ID_ROOM:
        safe = safe[: _ID_ROOM - len(_TRUNCATED)] + _TRUNCATED
    return safe


def quarantine_comment(alert_id: str) -> str:
    """The comment for a quarantine of a file named by alert ``alert_id``."""
    return _PREFIX + _safe_alert_id(alert_id) + _SUFFIX
