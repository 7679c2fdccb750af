"""Messages of one batch that differ in a few places, as one SendGrid request.

A request may hold up to 1,000 personalizations: each its own recipient, subject, headers
and custom_args, and ``substitutions`` (at most 10,000 bytes) that SendGrid puts in place of
tags in the request's one content. Messages rendered from the same template differ in a few
lines (the name, the promo code, the recommendations, the unsubscribe link), so a group of
them is sent as the lines they share with a tag where one differs, and each message's own
text of those lines as its substitutions.

How a group is found, per part (HTML, text):

- messages group when they have the same envelope (sender, reply-to, categories), the same
  layout (template and locale: the text around the values is the same) and the same
  number of lines in each part; each address appears once per group;
- a line is *varying* when some message of the group has it differently from the first:
  the content has a tag in its place, each message its own version as the tag's value;
  of a long line (``LONG_LINE``: inlined styles, mostly) the prefix and the suffix all
  its versions share stay in the content and only the middle is a value. No value is
  empty (SendGrid's handling of empty values is not documented);
- a message whose substitutions would pass the limit, or whose text holds the tag marker,
  is sent on its own.

Applying the substitutions gives each message's own parts back, character for character
(the tests check it, with the SendGrid stand-in of ``tests/fakes`` doing what SendGrid
does).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import getitem, itemgetter, ne
from typing import cast

from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.payload import plain_values

MAX_PER_REQUEST = 1000  # SendGrid: personalizations (and recipients) per request
PER_REQUEST = 500  # the default (delivery.sendgrid.recipients_per_request)
MAX_SUBSTITUTION_BYTES = 10_000  # SendGrid: keys and values of one personalization
LONG_LINE = 160  # a varying line this long (inlined styles, mostly) is cut to what differs
_WHOLE = slice(None)  # a str's whole slice is the str itself: no copy
_cut = cast(Callable[[str, slice], str], getitem)  # line[cut], in C


@dataclass(slots=True)
class Group:
    """Messages sent as one request: their places in the batch, the shared parts with
    tags, and each message's substitutions (in the order of ``indices``)."""

    indices: list[int]
    text: str
    html: str
    substitutions: list[dict[str, str]]


def new_marker() -> str:
    """A tag prefix for one sender: random, so no template writes it by chance."""
    return "%clv" + secrets.token_hex(4)


def batch_requests(
    messages: Sequence[OutgoingMessage], per_request: int, marker: str
) -> Iterator[Group | int]:
    """The batch's requests as they are found: a group, or the place of a message sent
    alone. Lazy, so the first requests can be on the wire while the next are factored."""
    if per_request < 2:
        yield from range(len(messages))
        return
    # (sender, its name, reply-to, categories, layout, lines of HTML, lines of text) → members
    buckets: dict[tuple[str, str, str | None, tuple[str, ...], str, int, int], list[_Member]] = {}
    for index, message in enumerate(messages):
        if not _groupable(message, marker):
            yield index
            continue
        lines = message.html.split("\n")
        text = message.text.split("\n")
        key = (
            message.from_email,
            message.from_name,
            message.reply_to,
            message.categories[:10],
            message.layout,
            len(lines),
            len(text),
        )
        lines.extend(text)
        buckets.setdefault(key, []).append((index, lines))
    for key, members in buckets.items():
        html_lines = key[5]
        for chunk in _chunks(members, messages, per_request):
            if len(chunk) == 1:
                yield chunk[0][0]
                continue
            group, left = _factor(chunk, html_lines, marker)
            if group is not None:
                yield group
            yield from left


def _groupable(message: OutgoingMessage, marker: str) -> bool:
    """Values the helper takes as they are, and no marker anywhere SendGrid substitutes."""
    return bool(  # plain_values: subject, text and html are not empty
        plain_values(message)
        and marker not in message.html
        and marker not in message.text
        and marker not in message.subject
        and marker not in (message.reply_to or "")
    )


_Member = tuple[int, list[str]]  # a message's place and its lines: HTML's, then the text's


def _chunks(
    members: list[_Member], messages: Sequence[OutgoingMessage], size: int
) -> Iterator[list[_Member]]:
    """Runs of at most ``size`` members with every address once (a repeated address waits
    for a later run)."""
    pending = members
    while pending:
        later: list[_Member] = []
        chunk: list[_Member] = []
        seen: set[str] = set()
        for member in pending:
            address = messages[member[0]].to_email.lower()
            if address in seen:
                later.append(member)
                continue
            seen.add(address)
            chunk.append(member)
            if len(chunk) == size:
                yield chunk
                chunk, seen = [], set()
        if chunk:
            yield chunk
        pending = later


def _varying(chunk: list[_Member]) -> list[int]:
    """The lines some member has otherwise than the first, in order. (A member is first
    compared on the lines no one has changed so far: one comparison in C, mostly.)"""
    first = chunk[0][1]
    positions = range(len(first))
    varying: set[int] = set()
    same: Callable[[list[str]], object] = tuple
    expected: object = tuple(first)
    for _, lines in chunk[1:]:
        if same(lines) == expected:
            continue
        new = set(compress(positions, map(ne, first, lines))) - varying
        if new:
            varying |= new
            kept = [i for i in positions if i not in varying]
            same = itemgetter(*kept) if kept else _nothing
            expected = same(first)
    return sorted(varying)


def _nothing(lines: list[str]) -> object:
    return ()


def _factor(chunk: list[_Member], html_lines: int, marker: str) -> tuple[Group | None, list[int]]:
    """The group of ``chunk`` and the places of the members it cannot hold (too personal,
    or a line that would leave an empty value)."""
    first = chunk[0][1]
    varying = _varying(chunk)
    picked: list[tuple[str, ...]]
    if len(varying) == 1:
        only = varying[0]
        picked = [(lines[only],) for _, lines in chunk]
    elif varying:
        pick = itemgetter(*varying)
        picked = [pick(lines) for _, lines in chunk]
    else:
        picked = [() for _ in chunk]
    shared = list(first)
    tags = [f"{marker}{number}%" for number in range(len(varying))]
    cuts: list[slice] = []
    columns = zip(*picked, strict=True)
    for line, tag, column in zip(varying, tags, columns, strict=False):
        if len(first[line]) < LONG_LINE:  # travels whole
            shared[line] = tag
            cuts.append(_WHOLE)
            continue
        start, end = _common_ends(column)  # what all its versions share stays in the content
        shared[line] = first[line][:start] + tag + first[line][len(first[line]) - end :]
        cuts.append(slice(start, -end if end else None))
    tag_bytes = sum(map(len, tags))
    values = [tuple(map(_cut, lines, cuts)) for lines in picked]
    sizes = [tag_bytes + _utf8_length("".join(own)) for own in values]
    indices: list[int] = []
    substitutions: list[dict[str, str]] = []
    alone: list[int] = []
    for (index, _), own, size in zip(chunk, values, sizes, strict=True):
        if size > MAX_SUBSTITUTION_BYTES or "" in own:
            alone.append(index)
        else:
            indices.append(index)
            substitutions.append(dict(zip(tags, own, strict=True)))
    if len(indices) < 2:
        return None, [index for index, _ in chunk]
    html = "\n".join(shared[:html_lines])
    text = "\n".join(shared[html_lines:])
    return Group(indices, text, html, substitutions), alone


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def _common_ends(column: Sequence[str]) -> tuple[int, int]:
    """Lengths of the prefix and the suffix every string of ``column`` has, not
    overlapping, and leaving every non-empty string a non-empty middle."""
    start = _prefix_length(min(column), max(column))  # the least and the greatest: all
    shortest = min(map(len, column))
    suffix = column[0][start:]
    if not all(map(str.endswith, column, repeat(suffix))):
        for value in column:
            if not value.endswith(suffix):
                suffix = suffix[len(suffix) - _suffix_length(suffix, value) :]
                if not suffix:
                    break
    end = min(len(suffix), shortest - start)
    if start + end >= shortest > 0:  # the shortest would have an empty value: give it one
        if end:
            end -= 1
        else:
            start -= 1
    return start, end


def _prefix_length(a: str, b: str) -> int:
    """How many first characters ``a`` and ``b`` share (slices compared in C, halving)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _suffix_length(a: str, b: str) -> int:
    """How many last characters ``a`` and ``b`` share."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle - 1
    return low
