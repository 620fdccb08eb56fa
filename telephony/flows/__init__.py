"""Call flows: the document, its checks, the state machine voice_url runs, its TwiML.

A flow is a declarative document of steps (schemas/call-flows.v1.json) that voice_url runs
as a state machine driven by Twilio's signed webhooks. See docs/flows.md.

No Azure SDK here; PyYAML and jsonschema are imported only when a document is loaded.
"""

from __future__ import annotations

from telephony.flows.document import flows_schema, load_flow_book, parse_flow_document
from telephony.flows.model import Flow, FlowBook, Step
from telephony.flows.problems import FlowProblem
from telephony.flows.render import CallEvent, CallUrls, FlowSms, Rendered, apology, render

__all__ = [
    "CallEvent",
    "CallUrls",
    "Flow",
    "FlowBook",
    "FlowProblem",
    "FlowSms",
    "Rendered",
    "Step",
    "apology",
    "flows_schema",
    "load_flow_book",
    "parse_flow_document",
    "render",
]
