"""Queue trigger: deferred targets come back when their wait is over.

The pipeline puts a target it could not finish (no API budget, a 429, a passing
fault) on the backlog queue with a visibility delay, so this function sees it
only once it may be tried again. Everything it does is in
``shared.backlog_runner``: judge the target again, or set an unreadable or
hopeless message aside in the poison queue with its reason.

The host decodes each message from base64 (host.json ``messageEncoding``) before
this function sees it, and redelivers a message whose function raised, up to
``maxDequeueCount`` times.
"""

from __future__ import annotations

import azure.functions as func

from shared.backlog_runner import handle_backlog_message
from shared.pipeline import Outcome
from shared.playbook import get_pipeline

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves it untyped


@bp.function_name("backlog")
@bp.queue_trigger(
    arg_name="message",
    queue_name="%BACKLOG_QUEUE_NAME%",
    connection="AzureWebJobsStorage",
)
def backlog(message: func.QueueMessage) -> None:
    """Judge the message's target again."""
    handle_backlog(message)


def handle_backlog(message: func.QueueMessage) -> Outcome | None:
    """Hand the message to the runner with the pipeline of this process."""
    pipeline = get_pipeline()
    return handle_backlog_message(
        message.get_body(),
        dequeue_count=message.dequeue_count,
        pipeline=pipeline,
        backlog=pipeline.backlog,
    )
