"""The keywords Twilio and the carriers act on: opt-out, opt-in and help.

Apart from routing and rules, which both need them, so neither imports the other.
"""

from __future__ import annotations

from typing import Literal

# Twilio's own keywords, so that the app and Twilio agree on who opted out.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
KeywordKind = Literal["opt_out", "opt_in", "help"]


def keyword_of(text: str) -> tuple[KeywordKind, str] | None:
    """The opt-out, opt-in or help keyword that `text` is (whole message, any case)."""
    word = text.strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return "opt_out", word
    if word in OPT_IN_KEYWORDS:
        return "opt_in", word
    if word in HELP_KEYWORDS:
        return "help", word
    return None
