"""Timer trigger: follow open machine actions to their final status.

Every tick (``ACTION_TRACKER_SCHEDULE``, every two minutes by default) runs the
action tracker once, then reads the backlog's depth, which sets the backlog
gauges in Application Insights. The host runs a timer function on one instance at
a time and never starts a tick while the last one still runs, so two runs never
race.

What may escape: an API fault is part of the tracker's report and never raises (the
next tick resumes); a storage fault or invalid settings raise, so that the
invocation shows as failed and someone looks, and the next tick tries again.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.action_tracker import ActionTracker, TrackerReport
from shared.backlog import Backlog
from shared.playbook import get_action_tracker, get_backlog

logger = logging.getLogger(__name__)

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # the library leaves it untyped


@bp.function_name("action_tracker")
@bp.timer_trigger(
    arg_name="timer",
    schedule="%ACTION_TRACKER_SCHEDULE%",
    # Every host start (a scale-out included) would run it again.
    run_on_startup=False,
    # The schedule survives restarts, so a missed tick runs late, not never.
    use_monitor=True,
)
def action_tracker(timer: func.TimerRequest) -> None:
    """Run the action tracker once, then gauge the backlog."""
    handle_tracker_tick(timer, backlog=get_backlog())


def handle_tracker_tick(
    timer: func.TimerRequest,
    tracker: ActionTracker | None = None,
    *,
    backlog: Backlog | None = None,
) -> TrackerReport:
    """Run ``tracker`` (this process's own unless given) and return its report;
    read ``backlog``'s depth afterwards when one is given."""
    if timer.past_due:
        # A late tick does the same work; the warning shows the schedule slipped.
        logger.warning("tracker.past_due", extra={"function": "action_tracker"})

    tracker = tracker or get_action_tracker()
    report = tracker.run()

    if backlog is not None:
        depth = backlog.depth()
        logger.info("backlog.depth", extra=depth.to_json())
    return report
