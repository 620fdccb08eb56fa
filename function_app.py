"""Composition root: the Function App and its blueprints. Nothing is built at import."""

import logging

import azure.functions as func

from telephony.handlers import (
    calls_api,
    health,
    messages_api,
    outbound_queue,
    reconcile_timer,
    webhooks,
)

# The Azure and Twilio SDKs log every HTTP request's headers at INFO, the host's level:
# noise in Application Insights, and CPU on every queued send. Our own events say enough.
for sdk_logger in ("azure.core.pipeline.policies.http_logging_policy", "twilio.http_client"):
    logging.getLogger(sdk_logger).setLevel(logging.WARNING)

app = func.FunctionApp()
app.register_functions(calls_api.bp)
app.register_functions(webhooks.bp)
app.register_functions(messages_api.bp)
app.register_functions(outbound_queue.bp)
app.register_functions(reconcile_timer.bp)
app.register_functions(health.bp)
