"""Valid email addresses, by the syntax rules of email-validator (no DNS: planning never
touches the network). The common shape is answered column-wise in Arrow; every other
address goes to email-validator itself."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache, reduce

import pyarrow as pa
import pyarrow.compute as pc
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

# The common shape: an ASCII dot-atom local part and a lower-risk hostname (letters, digits,
# inner hyphens, no "xn--"-style labels, a letter-only top-level domain). email-validator
# accepts every such address that also passes the length and special-use checks below
# (a property test compares the two); everything else goes to email-validator itself.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?!-))*[A-Za-z0-9]|[A-Za-z0-9]"
_COMMON_ADDRESS = re.compile(
    r"[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@(?:(?:" + _LABEL + r")\.)+[A-Za-z]{2,63}\Z"
)
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)


def common_shape_valid(address: str) -> bool:
    if len(address) > 254 or not _COMMON_ADDRESS.match(address):
        return False
    local, _, domain = address.rpartition("@")
    domain = domain.lower()
    return (
        len(local) <= 64
        and len(domain) <= 253
        and all(len(label) <= 63 for label in domain.split("."))
        and not any(domain == d or domain.endswith("." + d) for d in _SPECIAL_USE)
    )


# the same test column-wise, in Arrow's regular expressions (RE2: no lookahead, so a label
# is letter-or-digit runs joined by single hyphens, which is what ``_LABEL`` allows)
_COMMON_SHAPE = (
    r"^[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@"
    r"(?:[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*\.)+[A-Za-z]{2,63}$"
)
_LONG_LABEL = r"@(?:[^.]+\.)*[^.]{64}"
_SPECIAL_END = r"(?i)[@.](?:" + "|".join(re.escape(d) for d in _SPECIAL_USE) + r")$"


def valid_addresses(addresses: Sequence[str]) -> list[bool]:
    """:func:`address_is_valid` of each address ("" is not valid): the common shape is
    checked for all at once in Arrow, the rest one by one."""
    try:
        column = pa.array(addresses, type=pa.string())
    except (pa.ArrowException, UnicodeEncodeError):  # e.g. a lone surrogate: one by one
        return [bool(address) and address_is_valid(address) for address in addresses]
    at = pc.find_substring(column, "@")  # the local part's length (the shape has one @)
    length = pc.utf8_length(column)
    tests = [
        pc.match_substring_regex(column, _COMMON_SHAPE),
        pc.less_equal(length, 254),
        pc.less_equal(at, 64),
        pc.less_equal(pc.subtract(length, at), 254),  # the domain: at most 253
        pc.invert(pc.match_substring_regex(column, _LONG_LABEL)),
        pc.invert(pc.match_substring_regex(column, _SPECIAL_END)),
    ]
    common = reduce(pc.and_, tests).to_pylist()
    return [
        fast or (bool(address) and address_is_valid(address))
        for fast, address in zip(common, addresses, strict=True)
    ]


@lru_cache(maxsize=65536)
def address_is_valid(address: str) -> bool:
    """A syntax check by email-validator; the common shape is checked by a regular
    expression first."""
    if common_shape_valid(address):
        return True
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True
