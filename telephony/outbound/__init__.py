"""Outbound sends: the command contract, delivery records, calls, the service, the CLI."""

# The quiet-hours window a command carries to opt out of the QUIET_HOURS default (start equal
# to end is no window): the app's own forwards and flow SMS. Here, so that the webhook paths
# that queue them need not load the quiet-hours arithmetic (telephony/outbound/quiet.py).
NOT_QUIET = {"start": "00:00", "end": "00:00"}
