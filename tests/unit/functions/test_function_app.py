"""The app the host indexes: every function, its trigger and its binding metadata.

Functions Core Tools cannot run here, so these tests assert what the host would read
from ``function_app.py`` when it indexes the app (worker indexing, the v2 model).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from function_app import app
from shared.backlog import MAX_DEQUEUE_COUNT
from shared.settings import SETTINGS

# get_functions() builds every registered function and refuses to build a name
# twice, as the host's indexing does; build once, as the host does.
_FUNCTIONS = {
    function.get_function_name(): function for function in app.get_functions()
}


def _functions() -> dict[str, Any]:
    return _FUNCTIONS


def _trigger_binding(name: str) -> dict[str, Any]:
    function = _functions()[name]
    bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
    triggers = [binding for binding in bindings if binding["type"].endswith("Trigger")]
    assert len(triggers) == 1, bindings
    binding: dict[str, Any] = triggers[0]
    return binding


def test_app_registers_exactly_the_expected_functions() -> None:
    assert sorted(_functions()) == [
        "action_tracker",
        "alert_stream",
        "backlog",
        "replay",
    ]


def test_alert_stream_reads_a_batch_from_the_configured_hub() -> None:
    binding = _trigger_binding("alert_stream")

    assert binding["type"] == "eventHubTrigger"
    assert binding["direction"] == "IN"
    assert binding["name"] == "events"
    assert binding["cardinality"] == "MANY"
    assert binding["connection"] == "ALERTS_EVENTHUB"
    assert binding["eventHubName"] == "%ALERTS_EVENTHUB_NAME%"
    assert binding["consumerGroup"] == "%ALERTS_EVENTHUB_CONSUMER_GROUP%"
    assert binding["dataType"] == "BINARY"


def test_alert_stream_retries_forever_with_backoff() -> None:
    """A systemic fault must hold the partition, never skip the batch."""
    retry = _functions()["alert_stream"].get_settings_dict("retry_policy")

    assert retry is not None
    assert retry["strategy"] == "exponential_backoff"
    assert retry["max_retry_count"] == "-1"
    assert retry["minimum_interval"] == "00:00:05"
    assert retry["maximum_interval"] == "00:15:00"


def test_replay_is_a_post_route_behind_a_function_key() -> None:
    binding = _trigger_binding("replay")

    assert binding["type"] == "httpTrigger"
    assert binding["route"] == "replay"
    assert binding["methods"] == ["POST"]
    assert binding["authLevel"] == "FUNCTION"


def test_backlog_reads_the_configured_queue_of_host_storage() -> None:
    binding = _trigger_binding("backlog")

    assert binding["type"] == "queueTrigger"
    assert binding["name"] == "message"
    assert binding["queueName"] == "%BACKLOG_QUEUE_NAME%"
    assert binding["connection"] == "AzureWebJobsStorage"


def test_host_queue_options_match_what_the_backlog_expects(repo: Path) -> None:
    """The handler poisons a message itself on the host's last delivery, and
    writes base64: both only hold if host.json says the same."""
    queues = json.loads((repo / "host.json").read_text())["extensions"]["queues"]

    assert queues["maxDequeueCount"] == MAX_DEQUEUE_COUNT
    assert queues["messageEncoding"] == "base64"


def test_action_tracker_runs_on_the_configured_schedule() -> None:
    binding = _trigger_binding("action_tracker")

    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%ACTION_TRACKER_SCHEDULE%"
    assert binding["runOnStartup"] is False
    assert binding["useMonitor"] is True


@pytest.mark.parametrize(
    "name", ["alert_stream", "replay", "backlog", "action_tracker"]
)
def test_binding_names_match_the_handler_parameters(name: str) -> None:
    """The worker refuses to index a function whose arg_name has no parameter."""
    function = _functions()[name]
    parameters = set(inspect.signature(function.get_user_function()).parameters)
    bound = {json.loads(raw)["name"] for raw in function.get_raw_bindings()}

    assert bound - {"$return"} <= parameters


def test_settings_named_by_bindings_are_declared() -> None:
    declared = {spec.name for spec in SETTINGS}
    binding = _trigger_binding("alert_stream")

    assert binding["connection"] in declared
    assert binding["eventHubName"].strip("%") in declared
    assert binding["consumerGroup"].strip("%") in declared
    assert _trigger_binding("backlog")["queueName"].strip("%") in declared
    assert _trigger_binding("backlog")["connection"] in declared
    assert _trigger_binding("action_tracker")["schedule"].strip("%") in declared


def test_the_app_defaults_to_function_key_auth() -> None:
    assert isinstance(app, func.FunctionApp)
    assert app.auth_level == func.AuthLevel.FUNCTION
