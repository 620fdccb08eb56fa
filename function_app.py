"""Composition root: the Function App and its blueprints. Nothing is built at import."""

import logging

import azure.functions as func

from telephony.blueprints import calls, outbound, webhooks

# The Azure SDKs log every HTTP request's headers at INFO, the host's level: noise in
# Application Insights, and CPU on every queued send.
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

app = func.FunctionApp()
app.register_functions(calls.bp)
app.register_functions(webhooks.bp)
app.register_functions(outbound.bp)
