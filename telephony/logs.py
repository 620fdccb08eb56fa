"""Structured log events: one JSON object per line, phone numbers masked.

The Functions host forwards `logging` records to Application Insights; `extra` fields
become custom dimensions, and the message stays readable in a plain console.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from telephony.phone import mask

# Field names that carry phone numbers, in our own and Twilio's spelling.
PHONE_FIELDS = frozenset({"to", "from", "To", "From", "Caller", "Called", "ForwardedFrom"})


def log_event(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `event` with `fields`; numbers in PHONE_FIELDS are masked, None fields dropped."""
    if not logger.isEnabledFor(level):
        return
    safe = {
        name: mask(str(value)) if name in PHONE_FIELDS else value
        for name, value in fields.items()
        if value is not None
    }
    safe["event"] = event
    logger.log(
        level, json.dumps(safe, default=str, sort_keys=True), extra={"custom_dimensions": safe}
    )
