"""Phone numbers: E.164 validation, the destination guard, and masking for logs.

phonenumbers is imported on first use: its metadata costs cold-start time that the
webhook paths never need.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from telephony.errors import InvalidInputError

_E164 = re.compile(r"\+[1-9]\d{1,14}")
# The one channel besides SMS/MMS that a message may go on: Twilio's WhatsApp address is
# this prefix before the E.164 number (whatsapp:+15558675310).
WHATSAPP = "whatsapp:"


def split_address(address: str) -> tuple[str, str]:
    """("whatsapp:", number) for a WhatsApp address, else ("", address): the channel prefix
    and what follows it, which the number rules (E.164, the destination guard) judge."""
    if address.startswith(WHATSAPP):
        return WHATSAPP, address[len(WHATSAPP) :]
    return "", address


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


def check_destination(number: str, allowed_regions: Collection[str] | None, field: str) -> None:
    """Refuse a number the toll-fraud guard does not allow; None: not checked here (a
    producer's own validation, which the worker repeats with the app's settings).

    A number passes when its region is listed and it is not premium-rate. Its region is the
    one phonenumbers assigns it. A number phonenumbers cannot place counts as the country of
    its calling code only when that code has one country, or when it is in a fictional or
    test range (+1 555, +1 500): an unknown +1 or +44 number could be anywhere those codes
    reach (the Caribbean, the Channel Islands), so it is refused. International networks
    (satellite +881/+882, +883, +979) have no country and never pass.
    """
    if allowed_regions is None:
        return
    reason = destination_refusal(number, allowed_regions)
    if reason is not None:
        raise InvalidInputError(f"{field} {reason}", field)


def destination_refusal(number: str, allowed_regions: Collection[str]) -> str | None:
    """Why the guard refuses `number` (completing "<field> ..."), or None when it passes."""
    import phonenumbers

    if not allowed_regions:
        return "cannot be reached: no destination is allowed (set ALLOWED_DESTINATION_COUNTRIES)"
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return "is not a phone number"
    if phonenumbers.number_type(parsed) == phonenumbers.PhoneNumberType.PREMIUM_RATE:
        return "is a premium-rate number, which is never allowed"
    if home_region(number) not in allowed_regions:
        return "is in a destination that is not allowed"
    return None


# Ranges reserved for fiction and testing, which phonenumbers calls invalid: the NANP's 555
# area code (documentation examples) and Twilio's magic test numbers (+1 500 555 ...).
_FICTIONAL_NANP_AREAS = frozenset({"555", "500"})


def _fictional(parsed: object) -> bool:
    national = str(getattr(parsed, "national_number", ""))
    return getattr(parsed, "country_code", None) == 1 and national[:3] in _FICTIONAL_NANP_AREAS


def home_region(number: str) -> str | None:
    """The ISO region of an E.164 number, as the destination guard judges it."""
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return None
    code = parsed.country_code or 0
    if phonenumbers.is_valid_number(parsed):
        region = phonenumbers.region_code_for_number(parsed)
    elif _fictional(parsed) or len(phonenumbers.region_codes_for_country_code(code)) == 1:
        region = phonenumbers.region_code_for_country_code(code)
    else:
        return None  # a shared calling code (+1, +44, +7...): unknown means refused
    return region if region and region.isalpha() else None  # "001": no country


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
    channel, number = split_address(number)
    if channel:  # whatsapp:+1********10: the channel says as much as the country code
        return channel + mask(number)
    digits = number[1:]
    if not number.startswith("+") or not digits.isdigit() or len(digits) < 6:
        # Client identifiers (client:alice) and short codes: keep only the kind.
        return number.split(":", 1)[0] + ":***" if ":" in number else "***"
    code = country_code(digits)
    return f"+{code}{'*' * (len(digits) - len(code) - 2)}{digits[-2:]}"
