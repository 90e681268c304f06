"""Azurite, the Azure Storage emulator, started for the tests and the demo.

The playbook keeps its ledger, budget and backlog in the function app's storage
account. Locally that account is Azurite, installed from npm by ``make`` (the
version is pinned in ``package.json`` and ``package-lock.json``). ``start_azurite``
runs it in memory on free loopback ports, reads the ports it chose from its own
start-up lines, and hands back a connection string in the form Azure gives:
the same code then talks to Azurite as it would to a real account.

Azurite's account name and key are the emulator's published, well-known values;
they open nothing but a local emulator.
"""

from __future__ import annotations

__all__ = ["AZURITE_ACCOUNT", "RunningAzurite", "azurite_command", "start_azurite"]

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

AZURITE_ACCOUNT = "devstoreaccount1"
_AZURITE_KEY = (  # the emulator's documented development key, not a secret
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
    "K1SZFPTOtr/KBHBeksoGMGw=="
)
_LISTENING = re.compile(
    r"Azurite (Blob|Queue|Table) service is successfully listening at "
    r"(http://127\.0\.0\.1:\d+)"
)
_START_TIMEOUT_SECONDS = 60.0
_REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunningAzurite:
    """An Azurite process and the endpoints it listens on."""

    process: subprocess.Popen[str]
    endpoints: dict[str, str]
    workspace: Path
    output: list[str] = field(default_factory=list)

    @property
    def connection_string(self) -> str:
        """What ``AzureWebJobsStorage`` holds to reach this Azurite."""
        parts = [
            "DefaultEndpointsProtocol=http",
            f"AccountName={AZURITE_ACCOUNT}",
            f"AccountKey={_AZURITE_KEY}",
        ]
        for service in ("Blob", "Queue", "Table"):
            parts.append(
                f"{service}Endpoint={self.endpoints[service]}/{AZURITE_ACCOUNT}"
            )
        return ";".join(parts) + ";"

    def stop(self) -> None:
        """Stop the process and remove its workspace."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.workspace, ignore_errors=True)


def azurite_command() -> Path:
    """The Azurite launcher that ``npm ci`` installed into this checkout.

    Raises:
        FileNotFoundError: Node packages are not installed; ``make`` installs them.
    """
    launcher = _REPO / "node_modules" / ".bin" / "azurite"
    if not launcher.exists():
        raise FileNotFoundError(
            f"{launcher.relative_to(_REPO)} is missing: run `make test` or "
            "`make demo`, which install the Node packages of package.json"
        )
    return launcher


def start_azurite() -> RunningAzurite:
    """Start Azurite in memory on free ports and wait until every service listens.

    Raises:
        RuntimeError: Azurite exited or did not report its ports in time; its
            output is in the message.
    """
    workspace = Path(tempfile.mkdtemp(prefix="azurite-"))
    command = [
        str(azurite_command()),
        "--inMemoryPersistence",
        "--skipApiVersionCheck",
        "--disableTelemetry",
        "--silent",
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        "0",
        "--queueHost",
        "127.0.0.1",
        "--queuePort",
        "0",
        "--tableHost",
        "127.0.0.1",
        "--tablePort",
        "0",
    ]
    process = subprocess.Popen(  # noqa: S603 - a fixed command line, no shell
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workspace,
        env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
    )
    running = RunningAzurite(process=process, endpoints={}, workspace=workspace)
    ready = threading.Event()
    threading.Thread(target=_read_output, args=(running, ready), daemon=True).start()

    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while not ready.wait(timeout=0.05):
        if process.poll() is not None or time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(
                "Azurite did not start:\n" + "\n".join(running.output[-20:])
            )
    return running


def _read_output(running: RunningAzurite, ready: threading.Event) -> None:
    """Collect Azurite's output (for error messages) and note each service's port.

    Reading continues for the life of the process so that its pipe never fills.
    """
    stream = running.process.stdout
    if stream is None:
        return
    for line in stream:
        running.output.append(line.rstrip())
        del running.output[:-200]
        match = _LISTENING.search(line)
        if match:
            running.endpoints[match.group(1)] = match.group(2)
            if len(running.endpoints) == 3:
                ready.set()
