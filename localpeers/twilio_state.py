"""What tests program into the local Twilio API and read back from it.

This module owns the state shared between the test's thread and the proxy's event loop:
the requests answered so far (`RecordedRequest`), the pending fault rules (`FaultRule`),
the added latency and the count of accepted connections. `PeerState` guards it with a lock,
because `TwilioMock`'s methods run on the test's thread while the proxy handles requests on
its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request the peer answered, as the client sent it and with the status it got.

    Header names are lower-cased. ``form`` and ``query`` map each name to all its values.
    ``violations`` are Prism's findings (``sl-violations``) against Twilio's contract.
    ``response`` is the JSON body the client got (None when it was not JSON); ``fault`` says
    what was injected (the ``Prefer`` header sent to Prism, or ``hang=N``).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    status: int
    response: Any
    violations: list[dict[str, Any]] = field(default_factory=list)
    fault: str | None = None

    def param(self, name: str) -> str | None:
        """Return the first form value of `name`, or None."""
        values = self.form.get(name)
        return values[0] if values else None


@dataclass
class FaultRule:
    """A programmed fault for matching requests: a Twilio error or a hanging response.

    `status` and `example` name the error response Prism should give (both None for a
    hang); `remaining` counts the requests left to fault (None: all of them); a request
    matches when its path contains `path_contains` and `method` is None or its method.
    """

    status: int | None
    example: str | None
    hang: float
    remaining: int | None
    path_contains: str
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with `method` and `path` gets this fault."""
        return self.path_contains in path and self.method in (None, method)

    def describe(self) -> str:
        """The ``Prefer`` header value that asks Prism for the error, or ``hang=N``."""
        if self.status is None:
            return f"hang={self.hang:g}"
        return f"code={self.status}, example={self.example}"


class PeerState:
    """What tests program and read; shared between the test thread and the proxy loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._rules: list[FaultRule] = []
        self._connections = 0
        self.latency = 0.0

    def record(self, entry: RecordedRequest) -> None:
        with self._lock:
            self._records.append(entry)

    def records(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._records)

    def add_rule(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def take_rule(self, method: str, path: str) -> FaultRule | None:
        """The first rule that matches the request, if any, with one use of it spent."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule
        return None

    def count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def clear(self, *, records: bool = True, rules: bool = False, counters: bool = False) -> None:
        with self._lock:
            if records:
                self._records.clear()
            if rules:
                self._rules.clear()
            if counters:
                self._connections = 0
