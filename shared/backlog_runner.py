"""One backlog message, handled: read it, judge its target again, or set it aside.

The queue trigger hands over each message with how many times it has been
delivered (its dequeue count). What happens then:

- the message cannot be read (not JSON, another kind, a bad identifier): it can
  never succeed, so it goes to the poison queue now, with the reason;
- it is read: its target goes through ``Pipeline.run_deferred``, which submits
  it, skips it, or defers it again as a new message (the old one is then done);
- handling raises (storage unreachable, a bug): the exception propagates and
  the host delivers the message again later, unless this was the last delivery
  the host allows (``MAX_DEQUEUE_COUNT``); then the message is set aside here,
  with the exception as its reason, rather than moved by the host without one.
"""

from __future__ import annotations

__all__ = ["handle_backlog_message"]

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from shared.backlog import MAX_DEQUEUE_COUNT, Backlog, DeferredTarget, PoisonRecord
from shared.codec import CodecError
from shared.pipeline import Outcome, Pipeline

logger = logging.getLogger(__name__)


def handle_backlog_message(
    body: bytes,
    *,
    dequeue_count: int | None,
    pipeline: Pipeline,
    backlog: Backlog,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome | None:
    """Handle one message; None when it was set aside instead.

    Raises:
        Exception: whatever handling raised, on every delivery but the last.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        item = DeferredTarget.from_message(body)
    except CodecError as exc:
        backlog.poison(
            PoisonRecord(
                reason=f"unreadable: {exc}",
                body=text,
                poisoned_at=now(),
                dequeue_count=dequeue_count,
            )
        )
        return None

    try:
        return pipeline.run_deferred(item)
    except Exception as exc:
        if (dequeue_count or 1) < MAX_DEQUEUE_COUNT:
            logger.warning(
                "backlog.retry_later",
                extra={
                    "dequeue_count": dequeue_count,
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
            raise

        backlog.poison(
            PoisonRecord(
                reason=f"failed {dequeue_count} deliveries: "
                f"{type(exc).__name__}: {exc}",
                body=text,
                poisoned_at=now(),
                dequeue_count=dequeue_count,
            )
        )
        return None
