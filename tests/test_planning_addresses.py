"""Address validation in planning: the fast answer for the common shape never disagrees with
email-validator (the real validator, which decides everything else), one by one or for a
whole column at once."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from clvflow.planning.addresses import address_is_valid, common_shape_valid, valid_addresses


def email_validator_says(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


# pieces close to the boundary: dots, hyphens, digits, case, specials, IDNA prefixes
_chars = st.sampled_from([*"aZ09._%+-!#~", "xn--", "--", ".."])
_part = st.lists(_chars, min_size=0, max_size=12).map("".join)
_tld = st.sampled_from(["com", "hu", "example", "test", "local", "c", "c0m", "onion", "x" * 64])
# mostly the common shape (so the fast path is exercised), with lengths near the limits
_atom = st.text("abcXYZ019_%+-", min_size=1, max_size=20)
_label = st.text("abz09-", min_size=1, max_size=66)
common_shaped = st.builds(
    lambda atoms, labels, tld: ".".join(atoms) + "@" + ".".join([*labels, tld]),
    st.lists(_atom, min_size=1, max_size=4),
    st.lists(_label, min_size=1, max_size=4),
    _tld,
)
candidates = st.one_of(
    common_shaped,
    common_shaped,
    st.builds(lambda loc, dom, tld: f"{loc}@{dom}.{tld}", _part, _part, _tld),
    st.builds(lambda loc, dom: f"{loc}@{dom}", _part, _part),
    st.text(max_size=30),
)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(address=candidates)
@example("ann@example.com")
@example("Ann.Berg+news@Mail.Example.COM")
@example("a..b@example.com")
@example("a@b.test")
@example("a@sub.localhost")
@example("a@xn--abc.com")
@example("a@-b.com")
@example("a@b-.com")
@example("a@" + "b" * 64 + ".com")
@example("a" * 65 + "@example.com")
def test_the_fast_answer_agrees_with_email_validator(address: str) -> None:
    truth = email_validator_says(address)
    if common_shape_valid(address):
        assert truth, f"fast path accepted {address!r}, email-validator refuses it"
    assert address_is_valid(address) is truth


@pytest.mark.parametrize(
    ("address", "fast"),
    [
        ("ann@example.com", True),
        ("ann.berg@mail.example.co.uk", True),
        ("ann@example.test", False),  # special-use: refused, by both
        ("zoë@example.com", False),  # not the common shape: email-validator decides
        ("ann@xn--bcher-kva.example", False),
    ],
)
def test_which_addresses_take_the_fast_path(address: str, fast: bool) -> None:
    assert common_shape_valid(address) is fast
    assert address_is_valid(address) is email_validator_says(address)


@settings(max_examples=300, deadline=None)
@given(addresses=st.lists(candidates, max_size=40))
@example(["ann@example.com", "", "a@b.test", "a@Sub.LOCALHOST", "a@" + "b" * 64 + ".com"])
@example(["a" * 64 + "@example.com", "a" * 65 + "@example.com", "a@b--c.com", "a@b-c.com\n"])
@example(["x@" + ".".join(["a" * 63] * 3) + ".com", "x@" + ".".join(["a" * 63] * 4) + ".com"])
@example(["zoë@example.com", "ann@xn--bcher-kva.example", "\ud800@example.com"])
def test_a_column_of_addresses_gets_the_answers_one_by_one_would(addresses: list[str]) -> None:
    assert valid_addresses(addresses) == [bool(a) and address_is_valid(a) for a in addresses]
