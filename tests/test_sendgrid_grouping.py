"""Messages sharing one request: what SendGrid makes of a group's request (the stand-in's
``personal_bodies``) is, message by message, the body the message would have had alone;
the limits hold (recipients, one address per request, 10,000 bytes of substitutions); and a
refused group still gives each message its own outcome."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from fakes.sendgrid_standin import FaultConfig, SendGridStandIn, personal_bodies, validate_mail_send
from hypothesis import given, settings
from hypothesis import strategies as st

from clvflow.delivery.grouping import (
    MAX_SUBSTITUTION_BYTES,
    Group,
    batch_requests,
    new_marker,
)
from clvflow.delivery.message import OutgoingMessage
from clvflow.delivery.payload import PayloadBuilder
from clvflow.delivery.sendgrid import RetryPolicy, SendGridSender

KEY = "SG.grouping-test"
MARKER = "%clv0badc0de"

# a template: lines, some with a slot filled per recipient
LAYOUT = [
    "<!DOCTYPE html>",
    '<p style="margin: 0 0 16px; font-family: Georgia">Dear {name},</p>',
    "<p>Your code: <b>{code}</b> (valid until {date})</p>",
    "",
    "<ul>{items}</ul>",
    '<p style="color: #777">Paper &amp; Vows · 12 Rue Exemple · <a href="{link}">unsubscribe</a></p>',
]
TEXT = ["Dear {name},", "", "Your code: {code}", "{items}", "Unsubscribe: {link}"]

slot = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n%"), max_size=30
)
lines_of = st.lists(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40), min_size=1, max_size=4
)


@st.composite
def batches(draw: st.DrawFn) -> list[OutgoingMessage]:
    """Messages from a template or two, with per-recipient values (unicode, empty, line
    breaks of every kind, repeated addresses), now and then a wholly different one, and
    sometimes lines too long to travel whole."""
    count = draw(st.integers(1, 25))
    # long shared lines (inlined styles): whole varying lines would pass the 10,000 bytes
    pad = draw(st.sampled_from(["", '<span style="' + "color: #777; " * 300 + '">']))
    out = []
    for i in range(count):
        values = {k: draw(slot) for k in ("name", "code", "date", "link")}
        values["items"] = "\n".join(draw(lines_of))
        layout = draw(st.sampled_from([LAYOUT, LAYOUT[:4], ["{name}"]]))
        rendered_from = draw(st.sampled_from(["win_back/en", "win_back/hu", ""]))
        html = "\n".join(pad + line.format(**values) + pad for line in layout)
        text = "\n".join(line.format(**values) for line in TEXT)
        if draw(st.booleans()) and draw(st.booleans()):
            html = draw(st.text(max_size=60)) or "x"
        address = draw(st.sampled_from([f"c{i}@example.com", "same@example.com"]))
        out.append(
            OutgoingMessage(
                message_id=i + 1,
                campaign="win-back",
                occurrence="once",
                customer_id=f"C{i}",
                to_email=address,
                to_name=draw(st.sampled_from(["", "Ann Berg", "Zoë"])),
                from_email=draw(st.sampled_from(["shop@example.com", "news@example.com"])),
                from_name="Shop",
                subject=f"Dear {values['name'] or 'you'}",
                html=html,
                text=text or "x",
                headers={"List-Unsubscribe": f"<https://shop.example/u/{i}>"},
                categories=("win-back",),
                layout=rendered_from,
            )
        )
    return out


def group_messages(
    messages: list[OutgoingMessage], per_request: int, marker: str
) -> tuple[list[Group], list[int]]:
    """The batch's requests as the sender gets them: the groups, and the places of the
    messages sent alone (sorted)."""
    requests = list(batch_requests(messages, per_request, marker))
    groups = [r for r in requests if isinstance(r, Group)]
    return groups, sorted(r for r in requests if not isinstance(r, Group))


def _check_groups(messages: list[OutgoingMessage], per_request: int) -> int:
    """Every message in one group or alone; each group's request, as SendGrid makes it,
    gives back every member's own body; the limits hold. Returns the grouped count."""
    groups, alone = group_messages(messages, per_request, MARKER)
    placed = [i for g in groups for i in g.indices] + alone
    assert sorted(placed) == list(range(len(messages)))
    builder = PayloadBuilder(sandbox=False)
    for group in groups:
        assert 2 <= len(group.indices) <= per_request
        body = orjson.loads(orjson.dumps(builder.shared(messages, group)))
        assert validate_mail_send(body, 0.0) == []
        emails = [messages[i].to_email.lower() for i in group.indices]
        assert len(set(emails)) == len(emails)  # one address once a request
        for pers in body["personalizations"]:
            subs = pers.get("substitutions", {})
            assert all(subs.values())  # no empty value
            size = sum(len(k.encode()) + len(v.encode()) for k, v in subs.items())
            assert size <= MAX_SUBSTITUTION_BYTES
        for index, alone_body in zip(group.indices, personal_bodies(body), strict=True):
            assert alone_body == builder.payload(messages[index])
    return sum(len(g.indices) for g in groups)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(messages=batches(), per_request=st.integers(1, 6))
def test_a_group_request_gives_every_member_its_own_body(
    messages: list[OutgoingMessage], per_request: int
) -> None:
    grouped = _check_groups(messages, per_request)
    if per_request == 1:
        assert grouped == 0


def _message(i: int, html: str, **changes: object) -> OutgoingMessage:
    fields: dict[str, object] = {
        "message_id": i, "campaign": "c", "occurrence": "once", "customer_id": f"C{i}",
        "to_email": f"c{i}@example.com", "to_name": "", "from_email": "shop@example.com",
        "from_name": "Shop", "subject": f"Hello {i}", "html": html, "text": f"Hi {i}",
        "headers": {"List-Unsubscribe": f"<https://x.example/u/{i}>"}, "categories": ("c",),
    }  # fmt: skip
    fields.update(changes)
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


def test_shared_lines_stay_in_the_content_and_of_long_ones_only_what_differs_travels() -> None:
    style = '<p style="' + "font-family: Georgia; " * 40 + '">'  # inlined CSS: a long line
    messages = [
        _message(
            i, f"<h1>News</h1>\n{style}Dear {name},</p>\n<b>{name}</b>\n<footer>12 Rue</footer>"
        )
        for i, name in enumerate(["Ann", "Bob", "Zoë"])
    ]
    groups, alone = group_messages(messages, 10, MARKER)
    [group] = groups
    assert alone == []
    assert group.html.count(MARKER) == 2 and "<h1>News</h1>" in group.html
    assert group.html.startswith("<h1>News</h1>\n" + style + "Dear ")  # the style stays
    # the long line's middle, the short lines whole (the HTML's, then the text's)
    values = [list(s.values()) for s in group.substitutions]
    names = ["Ann", "Bob", "Zoë"]
    assert values == [[n, f"<b>{n}</b>", f"Hi {i}"] for i, n in enumerate(names)]
    _check_groups(messages, 10)


def test_too_personal_a_message_goes_alone() -> None:
    big = "x" * (MAX_SUBSTITUTION_BYTES + 10)
    messages = [_message(0, "<p>Hi A</p>"), _message(1, "<p>Hi B</p>"), _message(2, big)]
    groups, alone = group_messages(messages, 10, MARKER)
    assert [g.indices for g in groups] == [[0, 1]] and alone == [2]


def test_what_cannot_share_a_request_does_not() -> None:
    messages = [
        _message(0, "<p>A</p>"),
        _message(1, "<p>B</p>", from_email="other@example.com"),  # another envelope
        _message(2, "<p>C</p>", categories=("other",)),
        _message(3, f"<p>{MARKER}1%</p>"),  # the marker itself in the content
        _message(4, "<p>E</p>", to_email="c0@example.com"),  # 0's address again
        _message(5, "<p>F</p>\n<p>two lines</p>"),  # another shape
        _message(6, "<p>G</p>"),
        _message(7, "<p>H</p>", layout="win_back/hu"),  # rendered from another layout
    ]
    groups, alone = group_messages(messages, 10, MARKER)
    assert [g.indices for g in groups] == [[0, 6]]
    assert alone == [1, 2, 3, 4, 5, 7]
    groups, alone = group_messages(messages, 1, MARKER)
    assert groups == [] and alone == list(range(8))


def test_each_layout_has_its_own_requests() -> None:
    """Messages of two locales with the same number of lines go in requests apart, and
    each request's content keeps what its locale's messages share."""
    style = '<h1 style="' + "font-family: Georgia; " * 10 + '">'  # a long line: cut
    greetings = {"win_back/en": "Dear {}", "win_back/hu": "Kedves {}"}
    people = [("win_back/en", "Ann"), ("win_back/hu", "Bea"), ("win_back/en", "Cy")]
    people.append(("win_back/hu", "Dan"))
    messages = [
        _message(i, f"{style}{greetings[layout].format(name)}</h1>\n<p>{i}</p>", layout=layout)
        for i, (layout, name) in enumerate(people)
    ]
    groups, alone = group_messages(messages, 10, MARKER)
    assert [g.indices for g in groups] == [[0, 2], [1, 3]] and alone == []
    assert groups[0].html.startswith(f"{style}Dear {MARKER}0%</h1>")
    assert groups[1].html.startswith(f"{style}Kedves {MARKER}0%</h1>")
    assert [s[f"{MARKER}0%"] for g in groups for s in g.substitutions] == [
        "Ann", "Cy", "Bea", "Dan"
    ]  # fmt: skip
    _check_groups(messages, 10)


def test_groups_hold_at_most_per_request_messages() -> None:
    messages = [_message(i, f"<p>{i}</p>") for i in range(23)]
    groups, alone = group_messages(messages, 10, MARKER)
    assert [g.indices for g in groups] == [list(range(0, 10)), list(range(10, 20)), [20, 21, 22]]
    assert alone == []
    assert len(new_marker()) == len(MARKER) and new_marker() != new_marker()


@pytest.fixture
def standin() -> SendGridStandIn:
    with SendGridStandIn(api_keys={KEY}, seed=5) as server:
        yield server  # type: ignore[misc]


def test_a_refused_group_is_sent_again_one_by_one_and_only_the_bad_one_fails(
    standin: SendGridStandIn,
) -> None:
    messages = [_message(i, f"<p>Hi {i}</p>") for i in range(1, 6)]
    # a reserved header: SendGrid refuses the whole request that holds it
    messages[2] = _message(3, "<p>Hi 3</p>", headers={"Reply-To": "x@example.com"})
    sender = SendGridSender(KEY, standin.url, per_request=10)
    results = {r.message_id: r for r in sender.send_batch(messages)}
    sender.close()
    assert results[3].status == "failed" and "reserved" in (results[3].reason or "")
    assert all(results[i].status == "sent" for i in (1, 2, 4, 5))
    assert standin.status_counts()[400] == 2  # the group, then message 3 alone
    delivered = Counter(
        d.body["personalizations"][0]["to"][0]["email"] for d in standin.deliveries()
    )
    assert delivered == Counter(f"c{i}@example.com" for i in (1, 2, 4, 5))
    assert [len(m.body["personalizations"]) for m in standin.accepted()] == [1, 1, 1, 1]


def test_a_group_sent_once_shares_one_reply_and_its_faults(standin: SendGridStandIn) -> None:
    messages = [_message(i, f"<p>Hi {i}</p>") for i in range(1, 9)]
    standin.set_faults(FaultConfig(rate_503=0.5))
    sender = SendGridSender(
        KEY, standin.url, per_request=4, retry=RetryPolicy(attempts=20, base_seconds=0.01)
    )
    results = sender.send_batch(messages)
    assert {r.status for r in results} == {"sent"} and len(results) == 8
    assert [len(m.body["personalizations"]) for m in standin.accepted()] == [4, 4]
    by_request = Counter(r.provider_id for r in results)
    assert sorted(by_request.values()) == [4, 4]  # SendGrid's one id for a request
    # a reply that never comes: every message of the request is unknown, never resent
    standin.set_faults(FaultConfig(rate_accept_drop=1.0))
    again = [_message(i, f"<p>Hi {i}</p>") for i in range(11, 15)]
    assert {r.status for r in sender.send_batch(again)} == {"unknown"}
    sender.close()
    assert len(standin.deliveries()) == 12  # the dropped request was accepted: maybe sent
    assert standin.status_counts()[202] == 2


def test_substitutions_restore_every_part_from_the_request() -> None:
    body = {
        "personalizations": [
            {"to": [{"email": "a@example.com"}], "subject": "S -n-", "substitutions": {"-n-": "Ann"},
             "headers": {"X-A": "1"}, "custom_args": {"id": "1"}},
            {"to": [{"email": "b@example.com"}], "substitutions": {"-n-": "Bob"}},
        ],
        "subject": "fallback -n-",
        "headers": {"X-Shop": "s"},
        "custom_args": {"campaign": "c"},
        "from": {"email": "shop@example.com"},
        "content": [{"type": "text/plain", "value": "Hi -n-"}, {"type": "text/html", "value": "<p>-n-</p>"}],
    }  # fmt: skip
    first, second = personal_bodies(body)
    assert first["subject"] == "S Ann" and second["subject"] == "fallback Bob"
    assert first["headers"] == {"X-Shop": "s", "X-A": "1"} and second["headers"] == {"X-Shop": "s"}
    assert first["custom_args"] == {"campaign": "c", "id": "1"}
    assert [c["value"] for c in second["content"]] == ["Hi Bob", "<p>Bob</p>"]
    assert first["personalizations"] == [{"to": [{"email": "a@example.com"}]}]
