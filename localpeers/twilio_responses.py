"""Making Prism's example answers look like Twilio's answer to the request at hand.

Prism answers every request with the one example in Twilio's spec, so every created call
would share one SID (and delivery records and status callbacks are keyed by SID), and a
fetched resource would carry another resource's SIDs. This module owns the rewriting that
the proxy applies to Prism's JSON: a new SID per created resource (`new_sid`,
`personalize`), SIDs taken from the request path, echoed request parameters, and rejection
messages that name the contract rule a request broke (`explain_rejection`, from Prism's
``sl-violations`` header read by `parse_violations`).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping
from typing import Any

_SID = re.compile(r"^[A-Z]{2}[0-9a-fA-F]{32}$")
_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def new_sid(prefix: str) -> str:
    """Return a fresh SID in Twilio's format: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


def _snake(name: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", name).lower()


def _path_sids(path: str) -> list[str]:
    segments = (segment.removesuffix(".json") for segment in path.split("/"))
    return [segment for segment in segments if _SID.match(segment)]


def _created_prefix(path: str, form: Mapping[str, list[str]], example_sid: str) -> str:
    if path.endswith("/Messages.json") and form.get("MediaUrl"):
        return "MM"
    return example_sid[:2]


def _sid_replacements(
    body: Mapping[str, Any], method: str, path: str, form: Mapping[str, list[str]]
) -> dict[str, str]:
    # Example SIDs whose prefix matches a SID in the path take that SID (account_sid,
    # call_sid, the fetched resource's sid); a create gets a new sid.
    in_path = {sid[:2]: sid for sid in _path_sids(path)}
    replacements = {
        value: in_path[value[:2]]
        for value in body.values()
        if isinstance(value, str) and _SID.match(value) and value[:2] in in_path
    }
    sid = body.get("sid")
    to_collection = not _SID.match(path.rsplit("/", 1)[-1].removesuffix(".json"))
    if method == "POST" and to_collection and isinstance(sid, str) and _SID.match(sid):
        replacements[sid] = new_sid(_created_prefix(path, form, sid))
    return replacements


def _echo_params(body: dict[str, Any], form: Mapping[str, list[str]]) -> None:
    # Prism's example never matches what was sent; echo plain fields like to, from, body.
    for name, values in form.items():
        key = _snake(name)
        if len(values) == 1 and key in body and isinstance(body[key], str | None):
            body[key] = values[0]


def personalize(
    body: dict[str, Any], method: str, path: str, form: Mapping[str, list[str]]
) -> dict[str, Any]:
    """Make Prism's example look like the answer to this request.

    A create gets a new SID (``MM`` for a message with media) and echoes plain parameters
    (``to``, ``from``, ``body``...); SIDs in the path replace the example's SIDs of the same
    prefix; URIs in the body follow.
    """
    text = json.dumps(body)
    for old, new in _sid_replacements(body, method, path, form).items():
        text = text.replace(old, new)
    result: dict[str, Any] = json.loads(text)
    if method == "POST":
        _echo_params(result, form)
    return result


def parse_violations(header: str | None) -> list[dict[str, Any]]:
    """Prism's contract findings from its ``sl-violations`` header (none when absent)."""
    if not header:
        return []
    try:
        parsed = json.loads(header)
    except ValueError:
        return [{"message": header}]
    return parsed if isinstance(parsed, list) else [parsed]


def explain_rejection(body: Any, violations: list[dict[str, Any]]) -> Any:
    """Prism's 400 `body`, its message naming the request's contract `violations`."""
    # A request Prism rejects gets the default error example; name the broken rule in the
    # message so a failing test says why.
    request_findings = [v for v in violations if "request" in v.get("location", [])[:1]]
    if not request_findings or not isinstance(body, dict) or "message" not in body:
        return body
    detail = "; ".join(str(v.get("message")) for v in request_findings)
    return {**body, "message": f"{body['message']} (contract check: {detail})"}
