"""What tests program into the local Twilio API and read back from it.

This module owns the state shared between the test's thread and the proxy's event loop:
the requests answered so far (`RecordedRequest`), the pending fault rules (`FaultRule`),
the faults drawn at random (`RandomFaults`), the added latency and the count of accepted
connections. `PeerState` guards it with a lock, because `TwilioMock`'s methods run on the
test's thread while the proxy handles requests on its own.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request the peer answered, as the client sent it and with the status it got.

    Header names are lower-cased. ``form`` and ``query`` map each name to all its values.
    ``violations`` are Prism's findings (``sl-violations``) against Twilio's contract.
    ``response`` is the JSON body the client got (None when it was not JSON); ``fault`` says
    what was injected (the ``Prefer`` header sent to Prism, ``hang=N`` or ``drop``): after a
    hang or a drop, the client never got the status and response recorded here.
    ``recorded_at`` is when it was recorded, Prism having answered (``time.time()``).
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
    recorded_at: float = field(default_factory=time.time)

    def param(self, name: str) -> str | None:
        """Return the first form value of `name`, or None."""
        values = self.form.get(name)
        return values[0] if values else None


@dataclass
class FaultRule:
    """A programmed fault for matching requests: a Twilio error, a hanging response, or a
    dropped connection.

    `status` and `example` name the error response Prism should give (both None for a
    hang or a drop); `drop` closes the connection without an answer once Prism has
    answered; `remaining` counts the requests left to fault (None: all of them); a request
    matches when its path contains `path_contains` and `method` is None or its method.
    """

    status: int | None
    example: str | None
    hang: float
    remaining: int | None
    path_contains: str
    method: str | None
    drop: bool = False

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with `method` and `path` gets this fault."""
        return self.path_contains in path and self.method in (None, method)

    def describe(self) -> str:
        """The ``Prefer`` header value that asks Prism for the error, ``hang=N`` or ``drop``."""
        if self.drop:
            return "drop"
        if self.status is None:
            return f"hang={self.hang:g}"
        return f"code={self.status}, example={self.example}"


class RandomFaults:
    """Faults drawn at random, one draw per matching request: each of `choices` is a rule
    (with `remaining` None) and the probability that a request gets it.

    The probabilities add up to at most 1; the rest of the requests get no fault. `seed`
    makes the draws repeatable for one sequence of requests.
    """

    def __init__(
        self,
        choices: Sequence[tuple[FaultRule, float]],
        *,
        path_contains: str = "",
        method: str | None = None,
        seed: int | None = None,
    ) -> None:
        total = sum(rate for _, rate in choices)
        if any(rate < 0 for _, rate in choices) or total > 1.0 + 1e-9:
            raise ValueError(f"fault rates must be at least 0 and add up to at most 1: {total}")
        self.choices = list(choices)
        self.path_contains = path_contains
        self.method = method
        self._random = random.Random(seed)  # noqa: S311 - test faults, not secrets

    def matches(self, method: str, path: str) -> bool:
        return self.path_contains in path and self.method in (None, method)

    def draw(self) -> FaultRule | None:
        """The rule for one request, or None."""
        point = self._random.random()
        for rule, rate in self.choices:
            if point < rate:
                return rule
            point -= rate
        return None


class PeerState:
    """What tests program and read; shared between the test thread and the proxy loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RecordedRequest] = []
        self._rules: list[FaultRule] = []
        self._random: RandomFaults | None = None
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

    def set_random_faults(self, faults: RandomFaults | None) -> None:
        with self._lock:
            self._random = faults

    def take_rule(self, method: str, path: str) -> FaultRule | None:
        """The first rule that matches the request, if any, with one use of it spent;
        else a random fault drawn for it, if random faults are on and match."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule
            if self._random is not None and self._random.matches(method, path):
                return self._random.draw()
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
                self._random = None
            if counters:
                self._connections = 0
