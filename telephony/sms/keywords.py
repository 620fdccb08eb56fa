"""The keywords Twilio and the carriers act on: opt-out, opt-in and help.

Apart from routing and rules, which both need them, so neither imports the other.

A message is a keyword only as its only word, and the three kinds are matched with
different tolerance, because their mistakes cost differently:

- **Opt-out** is matched loosely, since a missed STOP means contacting someone who asked
  us not to: case and the whitespace, punctuation and symbols around the word are ignored
  (`Stop.`, `STOP!`, `"stop"`), and so are spaces, dashes and underscores inside it
  (`stop all`, `OPT-OUT`, `opt out`). Twilio documents a narrower match (the whole message,
  any case, no spaces: it takes OPTOUT but not OPT OUT); the app records more opt-outs than
  Twilio blocks, never fewer. The US rules since April 2025 list "opt out" as a revocation.
- **Help** is matched as opt-out is, without joining words (`Help?`): a help text is
  harmless either way.
- **Opt-in** is matched strictly, as Twilio documents: the whole message trimmed, any case
  (`Start`, ` YES `). `Yes!` is an ordinary message: a looser match would contact someone
  again who did not ask for it.
"""

from __future__ import annotations

import unicodedata
from typing import Literal

# Twilio's own keywords, so that the app and Twilio agree on who opted out.
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
)
OPT_IN_KEYWORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})
KeywordKind = Literal["opt_out", "opt_in", "help"]

# Inside an opt-out word: spaces, dashes (Pd), connectors such as "_" (Pc) and invisible
# format characters (Cf: zero-width space, soft hyphen) join its parts ("opt-out").
_JOINING_CATEGORIES = frozenset({"Pd", "Pc", "Cf"})


def keyword_of(text: str) -> tuple[KeywordKind, str] | None:
    """The opt-out, opt-in or help keyword that `text` is, as (kind, KEYWORD), else None.

    KEYWORD is the canonical form (`stop all` gives STOPALL). The rules loader calls this
    too, so a rule that a keyword would shadow is refused by the same test.
    """
    core = _core(text)
    if not core:
        return None
    joined = "".join(ch for ch in core if not _joins(ch))
    if joined in OPT_OUT_KEYWORDS:
        return "opt_out", joined
    exact = text.strip().upper()
    if exact in OPT_IN_KEYWORDS:
        return "opt_in", exact
    if core in HELP_KEYWORDS:
        return "help", core
    return None


def _core(text: str) -> str:
    """`text` without anything but letters and digits at either end, NFKC, upper case."""
    start, end = 0, len(text)
    while start < end and not text[start].isalnum():
        start += 1
    while end > start and not text[end - 1].isalnum():
        end -= 1
    # NFKC after trimming, so a symbol such as ™ at an end cannot turn into letters.
    return unicodedata.normalize("NFKC", text[start:end]).upper()


def _joins(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in _JOINING_CATEGORIES
