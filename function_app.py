"""The Azure Functions entry point: build the app and register each blueprint."""

import azure.functions as func

from functions.action_tracker import bp as action_tracker
from functions.alert_stream import bp as alert_stream
from functions.backlog import bp as backlog
from functions.replay import bp as replay
from shared.telemetry import start_in_functions_worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(alert_stream)
app.register_functions(replay)
app.register_functions(backlog)
app.register_functions(action_tracker)

# The worker configures Azure Monitor itself; this only says who exports, once.
start_in_functions_worker()
