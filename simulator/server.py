"""The HTTP face of the simulator: a threaded loopback server and its handle.

Requests under ``/api`` go through faults (``simulator.faults``) and then
``simulator.api.handle``; requests under ``/_control`` steer the simulator from
outside the process (faults, clock, device health, the request log). Every request
under ``/api`` is recorded in the request log with what became of it.
"""

from __future__ import annotations

__all__ = ["RunningSimulator", "start_simulator"]

import contextlib
import json
import logging
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from simulator.api import handle
from simulator.calls import ApiRequest, ApiResponse
from simulator.clock import Clock, ManualClock, ScaledClock
from simulator.control import control
from simulator.demo import demo_tenant
from simulator.errors import ApiFailure
from simulator.faults import DropMode, FaultInjector, FaultKind, Faults
from simulator.state import LoggedRequest, SimulatorState
from simulator.tenant import Tenant

logger = logging.getLogger(__name__)

# A server bound to every interface is reached through loopback.
_ANY_ADDRESS = frozenset({"", "0.0.0.0"})  # noqa: S104 (compared against, not bound)

# An idle keep-alive connection is closed after this long, so that its thread ends.
_IDLE_SECONDS = 60.0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connection attempts from a burst of clients,
    # and each dropped attempt costs the client a one-second retransmission.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SimulatorState) -> None:
        self.state = state
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open connection, so that no handler thread outlives a stop."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            # A connection the client closed already refuses the shutdown.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "DefenderSimulator/1.0"
    sys_version = ""
    timeout = _IDLE_SECONDS
    # Headers and body go out in two writes; without this, Nagle's algorithm holds
    # the body back until the client's delayed acknowledgement (about 40 ms).
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("simulator.http", extra={"detail": format % args})

    def _dispatch(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/api" or url.path.startswith("/api/"):
            self._serve_api(url)
            return

        body = self._read_body()
        if body is None:
            return
        if url.path.startswith("/_control/"):
            status, answer = control(self.server.state, self.command, url, body)
            self._send(status, answer)
            return
        failure = ApiFailure(
            404, "NotFound", f"No API matches {self.command} {url.path}."
        )
        self._send(failure.status, failure.body())

    def _serve_api(self, url: urllib.parse.SplitResult) -> None:
        state = self.server.state
        arrived = state.now()
        fault, faults = state.draw_fault()
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))

        if faults.latency_ms and self.server.stopping.wait(faults.latency_ms / 1000):
            self._drop()
            return

        if fault is FaultKind.DROP_BEFORE:
            self._record(url.path, query, arrived, None, fault)
            self._drop()
            return

        body = self._read_body()
        if body is None:
            return
        response = self._answer(fault, faults, url, query, body)
        self._record(url.path, query, arrived, response, fault)

        if fault is FaultKind.DROP_AFTER:
            self._drop()
            return
        self._send(response.status, response.body, response.headers)

    def _answer(
        self,
        fault: FaultKind,
        faults: Faults,
        url: urllib.parse.SplitResult,
        query: dict[str, str],
        body: bytes,
    ) -> ApiResponse:
        if fault is FaultKind.ERROR:
            failure = ApiFailure(
                500,
                "InternalServerError",
                "Internal server error. Retry the operation.",
            )
            return ApiResponse(500, failure.body())
        if fault is FaultKind.THROTTLE:
            seconds = faults.throttle_retry_after
            failure = ApiFailure(429, "TooManyRequests", "Rate limit is exceeded.")
            if not seconds:
                return ApiResponse(429, failure.body())
            return ApiResponse(429, failure.body(), (("Retry-After", str(seconds)),))

        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address)
        request = ApiRequest(
            method=self.command,
            path=url.path,
            query=query,
            body=body,
            authorization=self.headers.get("Authorization"),
            content_type=self.headers.get("Content-Type"),
            base_url=f"http://{host}",
        )
        return handle(self.server.state, request)

    def _record(
        self,
        path: str,
        query: dict[str, str],
        arrived: float,
        response: ApiResponse | None,
        fault: FaultKind,
    ) -> None:
        entry = LoggedRequest(
            method=self.command,
            path=path,
            query=query,
            status=None if response is None else response.status,
            timestamp=arrived,
            machine_id=None if response is None else response.machine_id,
            sha1=None if response is None else response.sha1,
            action_id=None if response is None else response.action_id,
            app_id=None if response is None else response.app_id,
            fault=fault,
        )
        self.server.state.record(entry)
        logger.debug(
            "simulator.request",
            extra={
                "method": entry.method,
                "path": entry.path,
                "status": entry.status,
                "fault": entry.fault.value,
            },
        )

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering a body it cannot read."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # Limitation: chunked request bodies are not read; clients send a length.
            self.close_connection = True
            failure = ApiFailure(411, "BadRequest", "A Content-Length is required.")
            self._send(failure.status, failure.body())
            return None

        length = self.headers.get("Content-Length", "0")
        if not length.isdigit():
            self.close_connection = True
            failure = ApiFailure(400, "BadRequest", "Content-Length is not a number.")
            self._send(failure.status, failure.body())
            return None
        return self.rfile.read(int(length))

    def _send(
        self,
        status: int,
        body: dict[str, Any],
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _drop(self) -> None:
        # Close without a byte of answer: the client sees the connection end.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class RunningSimulator:
    """A simulator serving on a background thread; stop it, or use ``with``."""

    def __init__(self, server: _Server, thread: threading.Thread, clock: Clock) -> None:
        self._server = server
        self._thread = thread
        self._clock = clock
        host, port = server.server_address[:2]
        self.host = str(host)
        self.port = int(port)
        self.base_url = f"http://{self.host}:{self.port}"

    @property
    def state(self) -> SimulatorState:
        return self._server.state

    @property
    def tenant(self) -> Tenant:
        """The tenant as it is now (device health changes included)."""
        return self._server.state.tenant

    def now(self) -> float:
        """The simulator's clock, in seconds since the epoch."""
        return self._clock()

    def advance(self, seconds: float) -> float:
        """Move the manual clock forward; returns the new time."""
        if not isinstance(self._clock, ManualClock):
            raise RuntimeError("advance needs a simulator started with a ManualClock")
        return self._clock.advance(seconds)

    def request_log(self) -> list[LoggedRequest]:
        """Every ``/api`` call received since the start or the last clear, in order."""
        return self._server.state.request_log()

    def clear_log(self) -> None:
        self._server.state.clear_log()

    def set_faults(
        self,
        *,
        latency_ms: int = 0,
        error_rate: float = 0.0,
        drop_rate: float = 0.0,
        drop_mode: DropMode = DropMode.BEFORE,
        throttle_next: int = 0,
        error_next: int = 0,
        drop_next: int = 0,
        throttle_retry_after: int = 1,
        seed: int = 0,
    ) -> Faults:
        """Replace every fault setting (what is not named goes back to no fault)."""
        faults = Faults(
            latency_ms=latency_ms,
            error_rate=error_rate,
            drop_rate=drop_rate,
            drop_mode=drop_mode,
            throttle_next=throttle_next,
            error_next=error_next,
            drop_next=drop_next,
            throttle_retry_after=throttle_retry_after,
            seed=seed,
        )
        self._server.state.set_faults(faults)
        return faults

    def set_device_health(self, machine_id: str, health_status: str) -> None:
        """Take a device offline ("Inactive") or bring it back ("Active")."""
        self._server.state.set_device_health(machine_id, health_status)

    def reset(self) -> None:
        """Forget actions, indicators, limit counts, faults and the log."""
        self._server.state.reset()

    def stop(self) -> None:
        """Stop serving and close every connection; safe to call twice."""
        if self._server.stopping.is_set():
            return

        self._server.stopping.set()
        stopper = threading.Thread(target=self._server.shutdown)
        stopper.start()
        self._wake_serving_loop()
        stopper.join()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join()

    def _wake_serving_loop(self) -> None:
        # The loop notices a stop only between waits for a connection; one
        # connection ends the wait now instead of at the next poll.
        host = "127.0.0.1" if self.host in _ANY_ADDRESS else self.host
        with contextlib.suppress(OSError):
            socket.create_connection((host, self.port), timeout=1).close()

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def start_simulator(
    *,
    tenant: Tenant | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    time_scale: float = 1.0,
    accept_any_token: bool = False,
    clock: Clock | None = None,
    faults: Faults | None = None,
) -> RunningSimulator:
    """Start serving on a background thread; connections are accepted on return.

    ``port`` 0 picks a free port (read it from ``base_url``). ``time_scale`` speeds
    the wall clock; a ``clock`` of your own (a ``ManualClock`` in tests) replaces it,
    and then ``time_scale`` must stay 1.
    """
    if clock is not None and time_scale != 1.0:
        raise ValueError("time_scale speeds the wall clock; it cannot apply to a clock")
    clock = clock or ScaledClock(time_scale)

    state = SimulatorState(
        seed=tenant or demo_tenant(),
        clock=clock,
        time_scale=time_scale,
        accept_any_token=accept_any_token,
        faults=FaultInjector(faults),
    )
    server = _Server((host, port), state)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"simulator-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()

    running = RunningSimulator(server, thread, clock)
    logger.info("simulator.started", extra={"base_url": running.base_url})
    return running
