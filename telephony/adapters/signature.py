"""Twilio webhook signatures (X-Twilio-Signature), checked with twilio's RequestValidator."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import parse_qs, urlsplit

from twilio.request_validator import RequestValidator

# The query parameter through which Twilio signs a raw (JSON) body: its SHA-256, in hex.
BODY_HASH_PARAMETER = "bodySHA256"


class FormParams:
    """Form fields in the shape RequestValidator reads, keeping repeated fields."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in pairs:
            self._values.setdefault(name, []).append(value)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._values)

    def getlist(self, name: str) -> list[str]:
        return self._values.get(name, [])

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._values.get(name)
        return values[0] if values else default

    def to_dict(self) -> dict[str, str]:
        """First value of each field."""
        return {name: values[0] for name, values in self._values.items()}


def public_url(request_url: str, public_base_url: str | None) -> str:
    """The URL Twilio signed: PUBLIC_BASE_URL + the request's path and query.

    Behind a proxy or a custom domain the host sees another URL than the one Twilio called.
    """
    if not public_base_url:
        return request_url
    parts = urlsplit(request_url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{public_base_url.rstrip('/')}{parts.path}{query}"


def signs_body_hash(url: str) -> bool:
    """Whether `url` carries the bodySHA256 parameter, exactly as RequestValidator reads it.

    RequestValidator hashes a raw body only when its parse_qs of the query has the
    parameter (a blank value does not count); otherwise it signs the body as form fields,
    and a str body there is a TypeError. So the same parse decides here, not a substring
    of the query (`?xbodySHA256=1` is not the parameter).
    """
    return BODY_HASH_PARAMETER in parse_qs(urlsplit(url).query)


class SignatureValidator:
    """Accepts a request signed with any of the given auth tokens (rotation)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._validators = [RequestValidator(token) for token in tokens if token]

    def is_valid(self, url: str, params: FormParams | str, signature: str | None) -> bool:
        """True when `signature` matches `url` and `params` (form) or body (JSON)."""
        if not signature:
            return False
        if isinstance(params, str) and not signs_body_hash(url):
            # A raw body is only signed through its hash in the query string.
            return False
        # RequestValidator tries the URL with and without the default port itself.
        return any(v.validate(url, params, signature) for v in self._validators)
