"""A small HTTP client for the simulator's own tests."""

from __future__ import annotations

import json
from typing import Any

import requests

from simulator import RunningSimulator


class Api:
    """Calls ``/api`` on one simulator with a default bearer token."""

    def __init__(self, simulator: RunningSimulator, token: str) -> None:
        self.simulator = simulator
        self.token = token
        self.session = requests.Session()

    def url(self, path: str) -> str:
        return f"{self.simulator.base_url}/api/{path}"

    def get(
        self,
        path: str,
        *,
        params: dict[str, str] | None = None,
        token: str | None = None,
        timeout: float = 10,
    ) -> requests.Response:
        return self.session.get(
            self.url(path), params=params, headers=self._auth(token), timeout=timeout
        )

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        data: bytes | None = None,
        content_type: str | None = "application/json",
        timeout: float = 10,
    ) -> requests.Response:
        headers = self._auth(token)
        if content_type is not None:
            headers["Content-Type"] = content_type
        payload = data if data is not None else _json_bytes(body)
        return self.session.post(
            self.url(path), data=payload, headers=headers, timeout=timeout
        )

    def quarantine(
        self, machine_id: str, sha1: str, *, token: str | None = None
    ) -> requests.Response:
        return self.post(
            f"machines/{machine_id}/StopAndQuarantineFile",
            {"Comment": "Stop and quarantine file due to alert da1_2", "Sha1": sha1},
            token=token,
        )

    def _auth(self, token: str | None) -> dict[str, str]:
        chosen = self.token if token is None else token
        return {"Authorization": f"Bearer {chosen}"} if chosen else {}

    def close(self) -> None:
        self.session.close()


def _json_bytes(body: Any) -> bytes:
    return b"" if body is None else json.dumps(body).encode()


def error_code(response: requests.Response) -> str:
    body: dict[str, Any] = response.json()
    return str(body["error"]["code"])


def error_message(response: requests.Response) -> str:
    body: dict[str, Any] = response.json()
    return str(body["error"]["message"])
