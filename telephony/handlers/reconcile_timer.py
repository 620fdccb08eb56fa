"""The `reconcile` timer: records callbacks never settled, events sinks never took."""

from __future__ import annotations

import logging

import azure.functions as func

from telephony.container import get_container
from telephony.errors import UnavailableError
from telephony.logs import log_event

logger = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]


@bp.function_name("reconcile")
@bp.timer_trigger(arg_name="timer", schedule="%RECONCILE_SCHEDULE%")
def reconcile(timer: func.TimerRequest) -> None:
    """One bounded pass (telephony/outbound/reconcile.py); the next run picks up the rest."""
    try:
        get_container().reconciler.run()
    except UnavailableError as exc:
        # Storage or settings unavailable: nothing was lost, the next run tries again.
        log_event(logger, "reconcile_unavailable", logging.WARNING, reason=str(exc))
