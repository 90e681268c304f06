"""A local Application Insights ingestion endpoint for tests.

It speaks the part of the ingestion protocol the Azure Monitor exporter uses:
``POST /v2.1/track`` with a JSON array or JSON lines of envelopes, gzip-encoded or
not, answered with ``{"itemsReceived": n, "itemsAccepted": n, "errors": []}``. It
keeps every envelope and every raw body it received, so a test can assert both
what arrived and what must never have been sent.
"""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

TRACK_PATH = "/v2.1/track"


class IngestionServer:
    """Serves the ingestion endpoint on 127.0.0.1 and a free port, in a thread."""

    def __init__(self) -> None:
        self.instrumentation_key = str(uuid.uuid4())
        self._lock = threading.Lock()
        self._envelopes: list[dict[str, Any]] = []
        self._bodies: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    @property
    def connection_string(self) -> str:
        return (
            f"InstrumentationKey={self.instrumentation_key};"
            f"IngestionEndpoint={self.endpoint}"
        )

    def envelopes(self) -> list[dict[str, Any]]:
        """Every envelope received so far, in order."""
        with self._lock:
            return list(self._envelopes)

    def raw_text(self) -> str:
        """Everything received, decoded, as one string (for searching)."""
        with self._lock:
            return "\n".join(self._bodies)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _receive(self, body: bytes, encoding: str | None) -> int:
        if encoding == "gzip":
            body = gzip.decompress(body)
        text = body.decode("utf-8")
        items = _parse_items(text)
        with self._lock:
            self._bodies.append(text)
            self._envelopes.extend(items)
        return len(items)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != TRACK_PATH:
                    self._answer(HTTPStatus.NOT_FOUND, {"error": self.path})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                try:
                    count = server._receive(body, self.headers.get("Content-Encoding"))
                except ValueError as exc:
                    self._answer(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
                    return
                self._answer(
                    HTTPStatus.OK,
                    {"itemsReceived": count, "itemsAccepted": count, "errors": []},
                )

            def _answer(self, status: HTTPStatus, document: dict[str, Any]) -> None:
                payload = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                # The test reads what arrived from the server, not from stderr.
                return

        return Handler


def _parse_items(text: str) -> list[dict[str, Any]]:
    """Envelopes from a JSON array, or from JSON lines."""
    stripped = text.strip()
    if stripped.startswith("["):
        document = json.loads(stripped)
        return [item for item in document if isinstance(item, dict)]
    return [json.loads(line) for line in stripped.splitlines() if line.strip()]
