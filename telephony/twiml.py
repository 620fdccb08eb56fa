"""TwiML documents, built with twilio's own builders so any text is escaped."""

from __future__ import annotations

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse


def say_response(text: str) -> str:
    """A call answer that says `text` and hangs up."""
    response = VoiceResponse()
    response.say(text)
    return str(response)


def message_reply(text: str | None) -> str:
    """A reply to an inbound SMS; no text gives an empty <Response/> (no reply)."""
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response)
