"""The Azure Functions entry point: build the app and register each blueprint."""

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
