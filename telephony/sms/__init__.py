"""Inbound SMS: keywords, the rules document, routing decisions, opt-outs."""
