"""Errors of the request domain: bad input and refused commands."""

from __future__ import annotations


class InvalidInputError(ValueError):
    """Input that the caller must fix; `field` names the offending field, if any."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class StorageUnavailableError(Exception):
    """Azure Storage (a queue or a table) could not be reached or failed: retry later.

    Messages name the operation and the SDK's error type, never a key or a number.
    """


class CommandRejectedError(InvalidInputError):
    """An outbound command that can never be sent as it is; `key` is its idempotency key."""

    def __init__(self, message: str, field: str | None = None, key: str | None = None) -> None:
        super().__init__(message, field)
        self.key = key
