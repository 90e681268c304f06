"""The function app's storage account, where the playbook keeps its state.

Everything durable lives in the account the Functions host already needs
(``AzureWebJobsStorage``), so a deployment adds no service:

- tables ``<prefix>ledger`` (targets and machine actions), ``<prefix>budget``
  (the shared count of Defender API calls) and ``<prefix>facts`` (device and
  file facts, with expiry);
- the queue ``BACKLOG_QUEUE_NAME`` of deferred targets, and its ``-poison`` twin.

The account is reached the two ways the host itself accepts: a connection string
(Azurite's included), or ``AzureWebJobsStorage__accountName`` with the app's
managed identity (``__clientId`` for a user-assigned one), which needs the roles
Storage Table Data Contributor and Storage Queue Data Contributor.

Limitation: with an account name, the endpoints are those of Azure's public
cloud (``<account>.table.core.windows.net``); a sovereign cloud's account is
reached with a connection string until its endpoints are settings too.

Queue messages are base64-encoded on the way in and out: that is what the queue
trigger expects by default (host.json ``messageEncoding``), while the Python SDK's
default is to send text as it is, which the trigger would move straight to the
poison queue.
"""

from __future__ import annotations

__all__ = ["StorageAccount", "backlog_poison_queue_name"]

import contextlib
import logging
import threading

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient
from azure.identity import ManagedIdentityCredential
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from shared.errors import SettingsError
from shared.settings import Settings

logger = logging.getLogger(__name__)

LEDGER_TABLE = "ledger"
BUDGET_TABLE = "budget"
FACTS_TABLE = "facts"


def backlog_poison_queue_name(queue_name: str) -> str:
    """The queue the host moves a message to after its last failed try."""
    return f"{queue_name}-poison"


class StorageAccount:
    """Table and queue clients of one account, each created on first use.

    Creating a table or queue that exists is one cheap call, made once per
    process and name.
    """

    def __init__(
        self, tables: TableServiceClient, queues: QueueServiceClient, *, prefix: str
    ) -> None:
        self._tables = tables
        self._queues = queues
        self._prefix = prefix
        self._table_clients: dict[str, TableClient] = {}
        self._queue_clients: dict[str, QueueClient] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageAccount | None:
        """The configured account, or None when no storage is configured.

        Raises:
            SettingsError: both a connection string and an account name are set.
        """
        connection = settings.storage_connection_string
        account = settings.storage_account_name
        if connection and account:
            raise SettingsError(
                [
                    "AzureWebJobsStorage and AzureWebJobsStorage__accountName are "
                    "both set; keep one"
                ]
            )

        prefix = settings.state_table_prefix
        if connection:
            return cls(
                TableServiceClient.from_connection_string(connection),
                QueueServiceClient.from_connection_string(connection),
                prefix=prefix,
            )
        if account:
            credential = _identity(settings.storage_client_id)
            return cls(
                TableServiceClient(
                    endpoint=f"https://{account}.table.core.windows.net",
                    credential=credential,
                ),
                QueueServiceClient(
                    account_url=f"https://{account}.queue.core.windows.net",
                    credential=credential,
                ),
                prefix=prefix,
            )
        return None

    @property
    def account_name(self) -> str:
        return self._tables.account_name or "?"

    def table(self, suffix: str) -> TableClient:
        """The table ``<prefix><suffix>``, created if missing."""
        name = self._prefix + suffix
        with self._lock:
            client = self._table_clients.get(name)
            if client is None:
                client = self._tables.create_table_if_not_exists(name)
                self._table_clients[name] = client
            return client

    def queue(self, name: str) -> QueueClient:
        """The queue ``name`` with base64 message encoding, created if missing."""
        with self._lock:
            client = self._queue_clients.get(name)
            if client is None:
                client = self._queues.get_queue_client(
                    name,
                    message_encode_policy=TextBase64EncodePolicy(),
                    message_decode_policy=TextBase64DecodePolicy(),
                )
                _create_queue_if_missing(client)
                self._queue_clients[name] = client
            return client


def _create_queue_if_missing(client: QueueClient) -> None:
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()


def _identity(client_id: str | None) -> TokenCredential:
    # The host's own rule for AzureWebJobsStorage: a client id names a
    # user-assigned identity; without one, the system-assigned identity.
    if client_id:
        return ManagedIdentityCredential(client_id=client_id)
    return ManagedIdentityCredential()
