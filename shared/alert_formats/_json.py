"""Decoding JSON from untrusted message bodies, with bounds on size and nesting."""

from __future__ import annotations

import json

# Event Hubs caps a message at 1 MB; an alert fetched from the API with all its
# evidence stays far below this. Anything larger is not an alert.
MAX_BODY_BYTES = 4 * 1024 * 1024

# Real alerts nest a dozen levels at most (a Sentinel entity inside an image file
# inside a process). The bound keeps every walk over a document shallow.
MAX_DEPTH = 64


class JsonRejected(Exception):
    """A body or an embedded JSON string that cannot be read; never leaves the package.

    ``reason`` is the stable rejection code, ``detail`` says why for people.
    """

    def __init__(self, reason: str, detail: str, position: str = "") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.position = position


def decode_body(body: bytes | str) -> object:
    """The JSON value of a message body.

    Raises:
        JsonRejected: too large, not UTF-8, not JSON, truncated or too deep.
    """
    if len(body) > MAX_BODY_BYTES:
        raise JsonRejected(
            "too_large", f"{len(body)} bytes or characters, over {MAX_BODY_BYTES}"
        )

    if isinstance(body, bytes):
        try:
            # utf-8-sig also accepts a leading byte order mark, which some
            # producers put in front of JSON.
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonRejected(
                "not_utf8", f"invalid UTF-8 at byte {exc.start}", f"byte {exc.start}"
            ) from None
    else:
        text = body.removeprefix("\ufeff")

    # Depth is bounded item by item later, so that one deep record does not cost
    # the others in the same message.
    return _loads(text)


def decode_text(text: str) -> object:
    """The JSON value of a string field, within ``MAX_DEPTH`` levels.

    Raises:
        JsonRejected: not JSON, truncated or too deep.
    """
    value = _loads(text)
    if exceeds_depth(value, MAX_DEPTH):
        raise JsonRejected("too_deep", f"nested deeper than {MAX_DEPTH} levels")
    return value


def _loads(text: str) -> object:
    try:
        value: object = json.loads(text)
    except RecursionError:
        # The decoder recurses once per level; input nested past the interpreter's
        # limit ends here rather than in the caller.
        raise JsonRejected(
            "too_deep", f"nested deeper than {MAX_DEPTH} levels"
        ) from None
    except json.JSONDecodeError as exc:
        reason = "truncated" if exc.pos >= len(text.rstrip()) else "not_json"
        position = f"line {exc.lineno} column {exc.colno}"
        raise JsonRejected(reason, exc.msg, position) from None
    except ValueError as exc:
        # Integers longer than the interpreter's digit limit land here.
        raise JsonRejected("not_json", str(exc)) from None
    return value


def exceeds_depth(value: object, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` arrays and objects deep.

    Walks with an explicit stack, so no input can exhaust the interpreter's stack.
    """
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children: list[object] = list(current.values())
        elif isinstance(current, list):
            children = current
        else:
            continue

        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)

    return False
