"""The backlog on an Azurite queue: base64 messages, delayed, never expiring."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue import QueueServiceClient

from shared.backlog import DeferredTarget, PoisonRecord, QueueBacklog
from shared.settings import Settings
from shared.storage import StorageAccount, backlog_poison_queue_name
from shared.targets import Alert, AlertFormat, EvidenceKind, Target

pytestmark = pytest.mark.integration


def _backlog(connection: str, prefix: str) -> QueueBacklog:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": connection,
            "STATE_TABLE_PREFIX": prefix,
            "BACKLOG_QUEUE_NAME": f"{prefix}-backlog",
        }
    )
    account = StorageAccount.from_settings(settings)
    assert account is not None
    name = settings.backlog_queue_name
    return QueueBacklog(
        account.queue(name), account.queue(backlog_poison_queue_name(name))
    )


def _item(retry_in: timedelta) -> DeferredTarget:
    now = datetime.now(UTC)
    return DeferredTarget(
        target=Target(
            alert=Alert(id="da1", format=AlertFormat.MDE),
            device_id="1" * 40,
            sha1="a" * 40,
            evidence=EvidenceKind.FILE,
        ),
        reason="api_budget_exhausted",
        retry_at=now + retry_in,
        attempts=0,
        first_deferred_at=now,
        source="test",
    )


def test_a_deferred_target_is_invisible_until_its_time_and_never_expires(
    storage_connection: str, storage_prefix: str
) -> None:
    backlog = _backlog(storage_connection, storage_prefix)
    raw = QueueServiceClient.from_connection_string(
        storage_connection
    ).get_queue_client(f"{storage_prefix}-backlog")

    backlog.defer(_item(timedelta(seconds=2)))
    hidden = list(raw.receive_messages(max_messages=1))
    time.sleep(2.5)
    [message] = list(raw.receive_messages(max_messages=1))

    assert hidden == []
    assert backlog.depth().messages == 1
    # What the trigger reads: base64 of the JSON document (host.json's encoding).
    document = json.loads(base64.b64decode(message.content))
    assert document["kind"] == "deferred-target"
    assert message.expires_on is not None
    assert message.expires_on.year >= 9999


def test_the_depth_counts_both_queues_and_the_oldest_visible_message(
    storage_connection: str, storage_prefix: str
) -> None:
    backlog = _backlog(storage_connection, storage_prefix)

    backlog.defer(_item(timedelta(0)))
    backlog.defer(_item(timedelta(minutes=10)))
    backlog.poison(
        PoisonRecord(reason="unreadable: x", body="x", poisoned_at=datetime.now(UTC))
    )
    depth = backlog.depth()

    assert (depth.messages, depth.poisoned) == (2, 1)
    assert depth.oldest_age_seconds is not None
    assert 0 <= depth.oldest_age_seconds < 60
