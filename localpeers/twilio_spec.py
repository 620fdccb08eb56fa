"""The mock's copy of Twilio's OpenAPI description (REST API 2010-04-01), for Prism to serve.

This module owns everything the mock knows about Twilio's contract before any process
starts: where npm put Twilio's description (`TWILIO_SPEC`), the Twilio error codes the mock
can answer with (`ERROR_EXAMPLES`), and `derive_spec`, which writes the copy Prism loads.

Twilio's description defines no error responses, so the copy adds 400, 401, 404, 429, 500
and 503 responses in Twilio's error shape to every operation. Each error response carries
one named example per Twilio error code in `ERROR_EXAMPLES`, and
``Prefer: code=400, example=twilio-21408`` picks one. The copy also spells out the form
encoding of array fields, which Prism needs to accept Twilio's own requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from localpeers.twilio_prism import TwilioMockStartError

TWILIO_SPEC = (
    Path(__file__).resolve().parents[1]
    / "node_modules/@twilio-alpha/mcp/twilio-oai/spec/json/twilio_api_v2010.json"
)
# Twilio's Messaging API (messaging.twilio.com/v1: Messaging Services), for tests that need
# it beside the 2010 API: `derive_spec(..., also=[MESSAGING_V1_SPEC])`.
MESSAGING_V1_SPEC = TWILIO_SPEC.with_name("twilio_messaging_v1.json")

# Twilio error codes the derived spec offers, per HTTP status; the first is the default.
# Extend here when a test needs another code: fault injection can only ask Prism for
# examples that the spec carries.
ERROR_EXAMPLES: dict[int, dict[int, str]] = {
    400: {
        21211: "Invalid 'To' Phone Number",
        21408: "Permission to send an SMS has not been enabled for the region indicated by "
        "the 'To' number",
        21610: "Attempt to send to unsubscribed recipient",
        21614: "'To' number is not a valid mobile number",
        21606: "The 'From' phone number provided is not a valid message-capable Twilio phone "
        "number for this destination",
        21612: "The 'To' phone number is not currently reachable via SMS",
        21201: "No 'To' number is specified",
        21604: "A 'To' phone number is required",
        21602: "Message body is required",
        21617: "The concatenated message body exceeds the 1600 character limit",
        21215: "Geo Permission configuration is not permitting call",
        21217: "Phone number does not appear to be valid",
        21210: "'From' phone number not verified",
        63016: "Failed to send freeform message because you are outside the allowed window. "
        "If you are using WhatsApp, please use a Message Template.",
    },
    401: {20003: "Authenticate"},
    404: {20404: "The requested resource was not found"},
    429: {20429: "Too Many Requests"},
    500: {20500: "Internal Server Error"},
    503: {20503: "Service Unavailable"},
}

_HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def twilio_error(status: int, code: int, message: str) -> dict[str, Any]:
    """Return an error body in the shape the Twilio REST API uses."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["code", "message", "more_info", "status"],
        "properties": {
            "code": {"type": "integer"},
            "message": {"type": "string"},
            "more_info": {"type": "string", "format": "uri"},
            "status": {"type": "integer"},
            "details": {"type": "object"},
        },
    }


def example_name(twilio_code: int) -> str:
    """Name of the spec example that carries `twilio_code` (``Prefer: example=<name>``)."""
    # Not the bare number: JavaScript orders integer-like keys numerically, and Prism's
    # default (first) example must stay the first code listed in ERROR_EXAMPLES.
    return f"twilio-{twilio_code}"


def _error_response(status: int, codes: Mapping[int, str]) -> dict[str, Any]:
    examples = {
        example_name(code): {"value": twilio_error(status, code, message)}
        for code, message in codes.items()
    }
    return {
        "description": f"Twilio error ({status})",
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/twilio.error"},
                "examples": examples,
            }
        },
    }


def declare_form_arrays(spec: dict[str, Any]) -> dict[str, Any]:
    """Spell out the default form encoding of array fields (MediaUrl...), in place.

    OpenAPI's default (``style: form, explode: true``) is what Twilio and its clients use,
    but Prism only reads repeated fields into an array when the encoding is written down,
    and rejects a single ``MediaUrl`` as "must be array" otherwise.
    """
    for path_item in spec["paths"].values():
        for method in _HTTP_METHODS:
            body = path_item.get(method, {}).get("requestBody", {})
            form = body.get("content", {}).get("application/x-www-form-urlencoded")
            if form is None:
                continue
            properties = form.get("schema", {}).get("properties", {})
            encoding = form.setdefault("encoding", {})
            for name, schema in properties.items():
                if schema.get("type") == "array":
                    encoding.setdefault(name, {"style": "form", "explode": True})
    return spec


def add_error_responses(spec: dict[str, Any]) -> dict[str, Any]:
    """Add Twilio-shaped error responses (`ERROR_EXAMPLES`) to every operation, in place."""
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {})["twilio.error"] = _error_schema()
    responses = components.setdefault("responses", {})
    for status, codes in ERROR_EXAMPLES.items():
        responses[f"TwilioError{status}"] = _error_response(status, codes)
    for path_item in spec["paths"].values():
        for method in _HTTP_METHODS:
            operation = path_item.get(method)
            if operation is None:
                continue
            for status in ERROR_EXAMPLES:
                ref = {"$ref": f"#/components/responses/TwilioError{status}"}
                operation["responses"].setdefault(str(status), ref)
    return spec


def merge_spec(spec: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Add `other`'s paths and components to `spec`, in place: one Prism serves both.

    Twilio's descriptions of its APIs use disjoint path prefixes (/2010-04-01, /v1) and
    component names prefixed by API (api.v2010..., messaging.v1...), so nothing collides.
    """
    spec["paths"].update(other["paths"])
    for kind, entries in other.get("components", {}).items():
        spec.setdefault("components", {}).setdefault(kind, {}).update(entries)
    return spec


def _read_spec(source: Path) -> dict[str, Any]:
    if not source.is_file():
        raise TwilioMockStartError(f"Twilio's OpenAPI spec is missing at {source}; npm install")
    spec: dict[str, Any] = json.loads(source.read_text(encoding="utf-8"))
    return spec


def derive_spec(target_dir: Path, source: Path = TWILIO_SPEC, also: Sequence[Path] = ()) -> Path:
    """Write the mock's copy of Twilio's spec (with the APIs of `also` merged in) into
    `target_dir`; return its path."""
    spec = _read_spec(source)
    for other in also:
        merge_spec(spec, _read_spec(other))
    spec = declare_form_arrays(add_error_responses(spec))
    target = target_dir / "twilio_api_v2010.mock.json"
    # Compact JSON: Prism parses this on every start.
    target.write_text(json.dumps(spec, separators=(",", ":")), encoding="utf-8")
    return target
