"""TwiML documents, built with twilio's own builders so any text is escaped."""

from __future__ import annotations

import re

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse


def say_response(text: str) -> str:
    """A call answer that says `text` and hangs up (characters XML cannot carry dropped)."""
    response = VoiceResponse()
    response.say(xml_text(text))
    return str(response)


def message_reply(text: str | None) -> str:
    """A reply to an inbound SMS; no text gives an empty <Response/> (no reply)."""
    response = MessagingResponse()
    text = xml_text(text or "")
    if text:
        response.message(text)
    return str(response)


# Characters XML 1.0 cannot carry at all, escaped or not (C0 controls but tab, CR and LF,
# lone surrogates, U+FFFE and U+FFFF). The builders escape markup but pass these through.
# Spelled as the excluded set: the complement of the allowed ranges compiles ten times slower,
# and this module loads on every cold start.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` without the characters that would make a TwiML document ill-formed."""
    return _NOT_XML.sub("", text)
