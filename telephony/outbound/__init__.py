"""Outbound sends: the command contract, delivery records, calls, the service, the CLI."""
