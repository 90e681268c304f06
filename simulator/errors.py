"""Error answers in Defender's shapes.

Every failure the API gives is ``{"error": {"code", "message", "target"}}`` with a
fresh correlation GUID in ``target`` (shared/defender-api.md section 1.6), except an
unsupported ``$`` query option, which Defender answers in the bare OData shape with an
empty ``code`` and a ``details`` list (section 11, item 5).
"""

from __future__ import annotations

__all__ = ["ApiFailure", "UnsupportedQueryOption"]

import uuid
from typing import Any


class ApiFailure(Exception):
    """An error answer: raised anywhere in request handling, rendered once."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "target": str(uuid.uuid4()),
            }
        }


class UnsupportedQueryOption(ApiFailure):
    """A ``$`` query option the endpoint does not know, in the OData error shape."""

    def __init__(self, option: str) -> None:
        super().__init__(
            400,
            "",
            "The query specified in the URI is not valid. Custom query option "
            f"'{option}' that starts with '$' is not supported.",
        )

    def body(self) -> dict[str, Any]:
        return {"error": {"code": "", "message": self.message, "details": []}}
