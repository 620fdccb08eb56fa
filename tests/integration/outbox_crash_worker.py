"""A worker that dies (SIGKILL) the moment it would publish an outcome event.

Run as `python -m tests.integration.outbox_crash_worker '<queue message>'` with the app's
settings in the environment: it performs the one command on Azurite and the Twilio mock,
and is killed after the record's write, before any sink hears of it.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence

from telephony.container import build_container


class DyingSink:
    def publish(self, events: Sequence[Mapping[str, object]]) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    container = build_container(os.environ, event_sinks=[DyingSink()])
    container.outbound.handle(sys.argv[1], "crash-message", 1)
    sys.exit("the sink was never asked to publish")
