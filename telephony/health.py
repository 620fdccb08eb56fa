"""The app's own health, as GET /api/health reports it: ok, or the first check that failed.

Each check is a callable that raises when what it looks at is not there (a secret that
cannot be read, Storage that does not answer). A HealthCheck keeps its verdict, ok or not,
for `ttl` seconds: a flood of requests to an anonymous route then costs one round of checks
per instance every few seconds, not one Key Vault or Storage request each. The reason goes
to the log (one event per round), never to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from telephony.errors import TelephonyError
from telephony.logs import log_event

logger = logging.getLogger(__name__)

Check = Callable[[], object]

# Long enough that probes and floods share one round, short enough that a probe sees a
# recovery (or an outage) within seconds.
DEFAULT_TTL = 5.0


@dataclass(frozen=True)
class Verdict:
    """Ok, or the check that failed and why (for the log only)."""

    failed: str | None = None
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.failed is None


OK = Verdict()


def unavailable(check: str, exc: BaseException) -> Verdict:
    """The verdict of a failed check, logged once here."""
    verdict = Verdict(check, _reason(exc))
    log_event(logger, "health_unavailable", logging.WARNING, check=check, reason=verdict.reason)
    return verdict


def _reason(exc: BaseException) -> str:
    # The family's messages name settings and operations, never a secret or a number;
    # anything else may carry a URL or a value, so only its type is told.
    return str(exc) if isinstance(exc, TelephonyError) else type(exc).__name__


class HealthCheck:
    """Runs its checks in order, at most once per `ttl` seconds; thread-safe."""

    def __init__(
        self,
        checks: Mapping[str, Check],
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checks = dict(checks)
        self._ttl = ttl
        self._clock = clock
        self._verdict: Verdict | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def verdict(self) -> Verdict:
        """The kept verdict while it is fresh, else a new round's."""
        # Callers that arrive during a round wait for it and share its verdict.
        with self._lock:
            if self._verdict is None or self._clock() - self._checked_at >= self._ttl:
                self._verdict = self._round(self._verdict)
                self._checked_at = self._clock()  # from the end: rounds at least ttl apart
            return self._verdict

    def _round(self, previous: Verdict | None) -> Verdict:
        for name, check in self._checks.items():
            try:
                check()
            except Exception as exc:  # any failure is "unavailable", never a 500
                return unavailable(name, exc)
        if previous is not None and not previous.ok:
            log_event(logger, "health_restored", was=previous.failed)
        return OK
