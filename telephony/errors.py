"""Errors of the request domain: bad input, refused destinations."""

from __future__ import annotations


class InvalidInputError(ValueError):
    """Input that the caller must fix; `field` names the offending field, if any."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
