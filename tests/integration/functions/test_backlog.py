"""The backlog's queue trigger, with real queue messages from Azurite.

Messages are written by the pipeline (or by hand, for the unreadable case),
received from the queue as the host receives them, and handed to the function's
handler as the real ``azure.functions`` message type, dequeue count included.
"""

from __future__ import annotations

import json
import time

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from azure.functions.queue import QueueMessage
from azure.storage.queue import (
    QueueClient,
    QueueServiceClient,
    TextBase64DecodePolicy,
    TextBase64EncodePolicy,
)

from functions.alert_stream import handle_alert_events
from functions.backlog import handle_backlog
from shared.backlog import MAX_DEQUEUE_COUNT
from simulator import RunningSimulator
from simulator.demo import DEVICE_WIN10, FILE_UNSIGNED
from tests.integration.functions.conftest import (
    AppSettings,
    event_batch,
    streaming_message,
)

pytestmark = pytest.mark.integration


def _queue(connection: str, name: str) -> QueueClient:
    return QueueServiceClient.from_connection_string(connection).get_queue_client(
        name,
        message_encode_policy=TextBase64EncodePolicy(),
        message_decode_policy=TextBase64DecodePolicy(),
    )


def _deliver(queue: QueueClient, *, dequeue_count: int | None = None) -> QueueMessage:
    """Receive the next visible message as the host would, and wrap it."""
    [received] = list(queue.receive_messages(max_messages=1))
    return QueueMessage(
        id=received.id,
        body=received.content.encode(),
        dequeue_count=dequeue_count or received.dequeue_count,
        pop_receipt=received.pop_receipt,
        insertion_time=received.inserted_on,
        expiration_time=received.expires_on,
    )


def _deliver_when_visible(queue: QueueClient, wait: float = 15.0) -> QueueMessage:
    """The next message, once its visibility delay has passed."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        received = list(queue.receive_messages(max_messages=1))
        if received:
            message = received[0]
            return QueueMessage(
                id=message.id,
                body=message.content.encode(),
                dequeue_count=message.dequeue_count,
                pop_receipt=message.pop_receipt,
            )
        time.sleep(0.2)
    raise AssertionError(f"no message became visible within {wait} seconds")


def _poisoned(connection: str, prefix: str) -> list[dict[str, object]]:
    poison = _queue(connection, f"{prefix}-backlog-poison")
    return [json.loads(m.content) for m in poison.peek_messages(max_messages=32)]


def test_an_unreadable_message_goes_to_the_poison_queue_with_its_reason(
    app_settings: AppSettings, storage_connection: str, storage_prefix: str
) -> None:
    app_settings()
    backlog = _queue(storage_connection, f"{storage_prefix}-backlog")
    backlog.create_queue()
    backlog.send_message("{this is not a deferred target")

    outcome = handle_backlog(_deliver(backlog))

    assert outcome is None
    [record] = _poisoned(storage_connection, storage_prefix)
    assert str(record["reason"]).startswith("unreadable: not JSON")
    assert record["body"] == "{this is not a deferred target"


def test_a_deferred_target_is_submitted_when_its_message_comes_back(
    app_settings: AppSettings,
    simulator: RunningSimulator,
    storage_connection: str,
    storage_prefix: str,
) -> None:
    app_settings()
    simulator.set_faults(throttle_next=1, throttle_retry_after=1)
    [deferred] = handle_alert_events(
        event_batch(streaming_message((DEVICE_WIN10, FILE_UNSIGNED)))
    )
    backlog = _queue(storage_connection, f"{storage_prefix}-backlog")

    outcome = handle_backlog(_deliver_when_visible(backlog))

    assert (deferred.verdict, deferred.reason) == ("defer", "api_throttled")
    assert deferred.backlog == "queued"
    assert outcome is not None
    assert (outcome.verdict, outcome.submission) == ("submit", "created")


def test_a_message_that_fails_every_delivery_is_set_aside_on_the_last(
    app_settings: AppSettings,
    simulator: RunningSimulator,
    storage_connection: str,
    storage_prefix: str,
) -> None:
    """Storage itself failing (here: the ledger's table is gone) must not lose
    the message: the host redelivers it, and on its last delivery the handler
    writes it to the poison queue with the error as its reason."""
    app_settings()
    simulator.set_faults(throttle_next=1, throttle_retry_after=1)
    handle_alert_events(event_batch(streaming_message((DEVICE_WIN10, FILE_UNSIGNED))))
    message = _deliver_when_visible(
        _queue(storage_connection, f"{storage_prefix}-backlog")
    )
    tables = TableServiceClient.from_connection_string(storage_connection)
    tables.delete_table(f"{storage_prefix}ledger")

    with pytest.raises(ResourceNotFoundError):
        handle_backlog(message)
    last = QueueMessage(
        id=message.id,
        body=message.get_body(),
        dequeue_count=MAX_DEQUEUE_COUNT,
        pop_receipt=message.pop_receipt,
    )
    outcome = handle_backlog(last)

    assert outcome is None
    [record] = _poisoned(storage_connection, storage_prefix)
    assert str(record["reason"]).startswith(f"failed {MAX_DEQUEUE_COUNT} deliveries: ")
    assert record["dequeue_count"] == MAX_DEQUEUE_COUNT
    assert json.loads(str(record["body"]))["target"]["device_id"] == DEVICE_WIN10
