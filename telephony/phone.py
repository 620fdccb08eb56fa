"""Phone numbers: E.164 validation, the destination guard, and masking for logs.

phonenumbers is imported on first use: its metadata costs cold-start time that the
webhook paths never need.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from telephony.errors import InvalidInputError

_E164 = re.compile(r"\+[1-9]\d{1,14}")


def parse_e164(value: object, field: str) -> str:
    """Return `value` if it is a possible E.164 number, else raise InvalidInputError.

    Possible, not valid: Twilio's documented example and test numbers (+1555..., +1500...)
    are not assigned ranges, and Twilio itself is the final judge of a number.
    """
    import phonenumbers

    if not isinstance(value, str) or not _E164.fullmatch(value):
        raise InvalidInputError(f"{field} must be an E.164 number such as +15017122661", field)
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise InvalidInputError(f"{field} is not a phone number", field) from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidInputError(f"{field} has the wrong length for its country", field)
    return value


def check_destination(number: str, allowed_regions: Collection[str], field: str) -> None:
    """Refuse a number outside the allowed regions (empty: every region is allowed).

    With a guard set, only numbers assigned to a listed region pass: an unassigned number
    in a shared country code (+1 covers the US and many islands) has no known region.
    """
    if not allowed_regions:
        return
    import phonenumbers

    parsed = phonenumbers.parse(number, None)
    region = (
        phonenumbers.region_code_for_number(parsed)
        if phonenumbers.is_valid_number(parsed)
        else None
    )
    if region not in allowed_regions:
        raise InvalidInputError(f"{field} is in a destination that is not allowed", field)


# Country calling codes of one and two digits (ITU E.164); all others have three. Kept
# here rather than read from phonenumbers so that masking a log field costs no import;
# a unit test checks it against phonenumbers' metadata.
SHORT_COUNTRY_CODES = frozenset(
    (
        "1 7 20 27 30 31 32 33 34 36 39 40 41 43 44 45 46 47 48 49 51 52 53 54 55 56 57 58 "
        "60 61 62 63 64 65 66 81 82 84 86 90 91 92 93 94 95 98"
    ).split()
)


def country_code(digits: str) -> str:
    """The calling code that starts an international number's digits."""
    for length in (1, 2):
        if digits[:length] in SHORT_COUNTRY_CODES:
            return digits[:length]
    return digits[:3]


def mask(number: str | None) -> str:
    """Mask a number for logs: the country code and the last two digits stay readable."""
    if not number:
        return ""
    digits = number[1:]
    if not number.startswith("+") or not digits.isdigit() or len(digits) < 6:
        # Client identifiers (client:alice) and short codes: keep only the kind.
        return number.split(":", 1)[0] + ":***" if ":" in number else "***"
    code = country_code(digits)
    return f"+{code}{'*' * (len(digits) - len(code) - 2)}{digits[-2:]}"
