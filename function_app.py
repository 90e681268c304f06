"""The Azure Functions entry point: build the app and register each blueprint."""

import azure.functions as func

from functions.alert_stream import bp as alert_stream
from functions.replay import bp as replay
from shared.telemetry import start_in_functions_worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(alert_stream)
app.register_functions(replay)

# The worker configures Azure Monitor itself; this only says who exports, once.
start_in_functions_worker()
