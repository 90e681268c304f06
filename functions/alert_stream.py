"""Event Hub trigger: Defender alerts from the streaming API, in batches.

The host checkpoints a batch whether this function returns or raises, and a retry
policy only holds the checkpoint until its retries run out (see the Functions notes
in the docs). So the choice of what may escape matters:

- a malformed event, or a target Defender refuses, is an outcome: recorded, logged,
  and the rest of the batch goes on;
- a target that cannot be submitted now (no API budget, a 429, a passing fault) is
  put on the backlog queue before this function returns, so the checkpoint that
  follows loses nothing; the function never waits for budget itself;
- a systemic fault (the settings are invalid, storage is unreachable) raises, and
  the retry policy below never gives up, so the partition waits for a fix instead
  of skipping events. Targets already submitted before the fault are in the
  ledger, and the retried batch skips them as duplicates.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.pipeline import Message, Outcome
from shared.playbook import get_pipeline

logger = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves it untyped


@bp.function_name("alert_stream")
@bp.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:05",
    maximum_interval="00:15:00",
)
@bp.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%ALERTS_EVENTHUB_NAME%",
    connection="ALERTS_EVENTHUB",
    consumer_group="%ALERTS_EVENTHUB_CONSUMER_GROUP%",
    cardinality=func.Cardinality.MANY,
    data_type=func.DataType.BINARY,
)
def alert_stream(events: list[func.EventHubEvent]) -> None:
    """Run every event of the batch through the pipeline."""
    handle_alert_events(events)


def handle_alert_events(events: list[func.EventHubEvent]) -> list[Outcome]:
    """Decode a batch into messages, run them, and summarise the batch in the log."""
    pipeline = get_pipeline()

    messages = [_message(index, event) for index, event in enumerate(events)]
    outcomes = pipeline.run(messages)

    logger.info(
        "batch.processed",
        extra={
            "events": len(events),
            "outcomes": len(outcomes),
            "rejected": sum(1 for o in outcomes if o.verdict == "rejected"),
            "deferred": sum(1 for o in outcomes if o.verdict == "defer"),
            "submitted": sum(1 for o in outcomes if o.submission is not None),
        },
    )
    return outcomes


def _message(index: int, event: func.EventHubEvent) -> Message:
    # Partition and sequence number name an event uniquely on its hub; the batch
    # index stands in when the host gave no metadata (as in local tests).
    partition = _partition_id(event)
    sequence = event.sequence_number
    source = (
        f"partition {partition} sequence {sequence}"
        if sequence is not None
        else f"batch event {index}"
    )
    return Message(
        body=event.get_body(), source=source, enqueued_time=event.enqueued_time
    )


def _partition_id(event: func.EventHubEvent) -> str:
    metadata = event.metadata or {}
    context = metadata.get("PartitionContext")
    if isinstance(context, dict):
        return str(context.get("PartitionId", "?"))
    return "?"
