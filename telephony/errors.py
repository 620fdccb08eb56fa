"""Errors of the request domain: bad input and refused commands."""

from __future__ import annotations


class InvalidInputError(ValueError):
    """Input that the caller must fix; `field` names the offending field, if any."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class CommandRejectedError(InvalidInputError):
    """An outbound command that can never be sent as it is; `key` is its idempotency key."""

    def __init__(self, message: str, field: str | None = None, key: str | None = None) -> None:
        super().__init__(message, field)
        self.key = key
