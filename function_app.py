"""Composition root: the Function App and its blueprints. Nothing is built at import."""

import azure.functions as func

from telephony.blueprints import calls, outbound, webhooks

app = func.FunctionApp()
app.register_functions(calls.bp)
app.register_functions(webhooks.bp)
app.register_functions(outbound.bp)
