"""The ticket view: page, fragments, composer, hold-back, controls, customer merge."""

from __future__ import annotations

import factory
import pytest
from bs4 import BeautifulSoup
from django.db import connection
from django.test.utils import CaptureQueriesContext

from inbox.models import (
    Contact,
    Customer,
    Message,
    OutboundDelivery,
    ReplyTemplate,
    Ticket,
    TicketEvent,
    TicketSeen,
)
from inbox.services.ingest import ingest_batch
from inbox.services.replies import note_create, reply_create
from inbox.services.tickets import ticket_change_status
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

pytestmark = pytest.mark.django_db

FETCH = {"HTTP_X_REQUESTED_WITH": "fetch"}
HELD_BACK = "A new message from the customer arrived while you were writing. Read it, then send again."


class ReplyTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReplyTemplate

    name = factory.Sequence(lambda n: f"Template {n}")
    shortcut = factory.Sequence(lambda n: f"template-{n}")


@pytest.fixture
def bram(default_queue):
    user = AgentProfileFactory(user__username="bram", user__first_name="Bram").user
    default_queue.members.add(user)
    return user


@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="lea", user__first_name="Lea", role="lead").user


@pytest.fixture
def ticket(source):
    ingest_batch(source=source, messages=[inbound("c1", author="kim", text="Where is my bag?", minutes=0)])
    return Ticket.objects.get()


@pytest.fixture
def agent_client(client, anna):
    client.force_login(anna)
    return client


def url(ticket, tail=""):
    return f"/desk/tickets/{ticket.pk}/{tail}"


def soup(response) -> BeautifulSoup:
    return BeautifulSoup(response.content.decode(), "html.parser")


def newest_id(ticket) -> int:
    return Message.objects.filter(ticket=ticket).order_by("-pk").values_list("pk", flat=True).first()


def message_items(page: BeautifulSoup) -> list:
    return page.select("[data-conversation] > li[data-message-id]")


# --- The page ----------------------------------------------------------------------------------


def test_page_shows_every_message_kind_and_delivery_state(source, ticket, anna, bram, client):
    ingest_batch(
        source=source,
        messages=[inbound("c2", author="kim", text="Hello??", reply_to="c1", minutes=1, language="en")],
    )
    replies = [
        reply_create(ticket=ticket, author=anna, text=f"Reply {state}", is_public=state != "sent")
        for state in ("queued", "sending", "sent", "failed", "awaiting_approval")
    ]
    for delivery in replies[1:]:
        state = delivery.message.text.split()[-1]
        OutboundDelivery.objects.filter(pk=delivery.pk).update(
            state=state, last_error="403 This account cannot reply to this post" if state == "failed" else ""
        )
    note = note_create(ticket=ticket, author=bram, text="Checked the tracing system.")
    client.force_login(anna)

    page = soup(client.get(url(ticket)))

    items = message_items(page)
    assert [i["data-direction"] for i in items] == ["in", "in", "out", "out", "out", "out", "out", "note"]
    assert [i.select_one(".message-text").get_text(strip=True) for i in items] == [
        "Where is my bag?",
        "Hello??",
        "Reply queued",
        "Reply sending",
        "Reply sent",
        "Reply failed",
        "Reply awaiting_approval",
        "Checked the tracing system.",
    ]
    states = [i.select_one("[data-delivery-state]")["data-delivery-state"] for i in items[2:7]]
    assert states == ["queued", "sending", "sent", "failed", "awaiting_approval"]
    assert items[0].select_one(".author").get_text(strip=True) == "Kim"
    assert items[0].select_one(".handle").get_text(strip=True) == "@kim"
    assert items[1].select_one(".badge.lang").get_text(strip=True) == "EN"
    assert items[2].select_one(".author").get_text(strip=True) == "Anna de Vries"
    assert items[4].select_one(".badge.private") is not None  # sent as a private reply
    assert items[3].select_one(".badge.public") is not None
    failed = items[5]
    assert (
        failed.select_one(".delivery-error").get_text(strip=True)
        == "403 This account cannot reply to this post"
    )
    assert failed.select_one("form")["action"] == url(ticket, f"deliveries/{replies[3].pk}/retry")
    waiting = items[6].select_one(".delivery")
    assert waiting.select("form") == []  # agents wait for a lead
    assert "A team lead checks this reply before it is sent." in waiting.get_text()
    assert "message-note" in items[7]["class"] and items[7].select_one(".badge.note") is not None
    assert items[7]["id"] == f"message-{note.pk}"


def test_lead_gets_approve_and_reject_for_replies_awaiting_approval(ticket, anna, lead, client):
    Ticket.objects.filter(pk=ticket.pk).update(reply_approval_required=True)
    delivery = reply_create(ticket=Ticket.objects.get(pk=ticket.pk), author=anna, text="Statement")
    client.force_login(lead)

    page = soup(client.get(url(ticket)))

    actions = [form["action"] for form in page.select(f"#message-{delivery.message_id} .delivery form")]
    assert actions == [
        url(ticket, f"deliveries/{delivery.pk}/approve"),
        url(ticket, f"deliveries/{delivery.pk}/reject"),
    ]


def test_page_is_the_live_root_and_marks_the_ticket_seen(ticket, anna, agent_client):
    response = agent_client.get(url(ticket))

    assert response.status_code == 200
    page = soup(response)
    root = page.select_one("[data-ticket-page]")
    assert root["data-watch-ticket"] == str(ticket.pk)
    assert page.select_one(f'span[data-viewers-for="{ticket.pk}"]') is not None
    assert page.select_one("textarea[data-composer]")["name"] == "text"
    assert page.select_one("input[name=seen_message_id]")["value"] == str(newest_id(ticket))
    assert page.select_one("input[name=reply_template]")["value"] == ""
    assert page.select_one('script[src$="js/desk/ticket.js"]') is not None
    assert page.select_one('a[aria-current="page"]')["href"] == "/"
    assert TicketSeen.objects.get(user=anna, ticket=ticket).last_message_id == newest_id(ticket)


def test_page_has_no_inline_script_or_handlers(ticket, agent_client):
    page = soup(agent_client.get(url(ticket)))
    assert [s for s in page.find_all("script") if not s.get("src")] == []
    assert [t.name for t in page.find_all(True) if any(a.startswith("on") for a in t.attrs)] == []
    assert all("javascript:" not in (a.get("href") or "") for a in page.find_all("a"))


def test_seen_endpoint_marks_live_messages_read(source, ticket, anna, agent_client):
    agent_client.get(url(ticket))
    ingest_batch(source=source, messages=[inbound("c2", author="kim", reply_to="c1", minutes=3)])

    response = agent_client.post(url(ticket, "seen"), **FETCH)

    assert response.status_code == 204
    assert TicketSeen.objects.get(user=anna, ticket=ticket).last_message_id == newest_id(ticket)


def test_follow_up_links_to_the_earlier_conversation(source, ticket, anna, agent_client):
    ticket_change_status(ticket=ticket, status="solved", actor=anna)
    ingest_batch(source=source, messages=[inbound("c9", author="kim", minutes=60 * 24 * 40)])
    follow_up = Ticket.objects.exclude(pk=ticket.pk).get()
    Ticket.objects.filter(pk=follow_up.pk).update(previous_ticket=ticket)

    page = soup(agent_client.get(url(follow_up)))

    assert page.select_one(".follow-up a")["href"] == url(ticket)
    assert [a["href"] for a in page.select(".earlier-tickets a")] == [url(ticket)]


# --- Scoping -----------------------------------------------------------------------------------


def test_ticket_of_another_queue_is_not_found(ticket, outsider, client):
    client.force_login(outsider)

    assert client.get(url(ticket)).status_code == 404
    assert client.get(url(ticket, "messages?after=0")).status_code == 404
    assert client.get(url(ticket, "panel")).status_code == 404
    assert client.get(url(ticket, "customer/search?q=kim")).status_code == 404
    assert client.post(url(ticket, "reply"), {"text": "Hi"}, **FETCH).status_code == 404
    assert client.post(url(ticket, "status"), {"status": "solved"}, **FETCH).status_code == 404
    assert not Message.objects.filter(direction="out").exists()
    assert Ticket.objects.get(pk=ticket.pk).status == "new"


def test_lead_sees_any_ticket(ticket, lead, client):
    client.force_login(lead)
    assert client.get(url(ticket)).status_code == 200


def test_anonymous_is_sent_to_login(ticket, client):
    response = client.get(url(ticket))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


# --- Hostile text ------------------------------------------------------------------------------


def test_hostile_text_name_and_handle_render_as_text(source, agent_client):
    ingest_batch(
        source=source,
        messages=[
            inbound(
                "x1",
                author='"><img/src=x/onerror=alert(1)>',  # the display name is its title case
                handle="<script>alert('h')</script>",
                text='<script>alert(1)</script> javascript:alert(2) <a href="javascript:alert(3)">x</a> https://example.org/ok',
                minutes=0,
            )
        ],
    )
    ticket = Ticket.objects.get()

    response = agent_client.get(url(ticket))
    html = response.content.decode()
    page = soup(response)

    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert('h')</script>" not in html
    assert page.find("img") is None
    text = page.select_one("[data-conversation] .social-text")
    links = text.find_all("a")
    assert [a["href"] for a in links] == ["https://example.org/ok"]
    assert "noopener" in links[0]["rel"]
    assert "javascript:alert(2)" in text.get_text()
    handle = page.select_one("[data-conversation] .handle")
    assert handle.get_text(strip=True) == "@<script>alert('h')</script>"


# --- Composer: replies ---------------------------------------------------------------------------


def test_reply_is_queued_with_its_template_and_returns_its_fragment(ticket, agent_client):
    template = ReplyTemplateFactory(usage_count=2)

    response = agent_client.post(
        url(ticket, "reply"),
        {
            "kind": "reply",
            "text": "We found your bag!",
            "seen_message_id": newest_id(ticket),
            "reply_template": template.pk,
            "visibility": "public",
        },
        **FETCH,
    )

    assert response.status_code == 200
    message = Message.objects.get(direction="out")
    assert (message.text, message.reply_template, message.is_public) == ("We found your bag!", template, True)
    assert message.delivery.state == "queued"
    template.refresh_from_db()
    assert template.usage_count == 3
    fragment = soup(response)
    (item,) = fragment.select("li[data-message-id]")
    assert item["data-message-id"] == str(message.pk)
    assert item.select_one("[data-delivery-state]")["data-delivery-state"] == "queued"


def test_reply_without_javascript_redirects_back(ticket, agent_client):
    response = agent_client.post(url(ticket, "reply"), {"text": "Hi!", "seen_message_id": newest_id(ticket)})

    message = Message.objects.get(direction="out")
    assert response.status_code == 302
    assert response["Location"] == url(ticket) + f"#message-{message.pk}"


def test_new_customer_message_holds_the_reply_back(source, ticket, agent_client):
    seen = newest_id(ticket)
    ingest_batch(
        source=source, messages=[inbound("c2", author="kim", text="Found it!", reply_to="c1", minutes=4)]
    )
    template = ReplyTemplateFactory()

    response = agent_client.post(
        url(ticket, "reply"),
        {"text": "Looking into it", "seen_message_id": seen, "reply_template": template.pk},
        **FETCH,
    )

    assert response.status_code == 409
    fragment = soup(response)
    assert fragment.select_one("[data-held-back-notice]").get_text(strip=True) == HELD_BACK
    held = fragment.select("li[data-message-id]")
    assert [i["data-message-id"] for i in held] == [str(Message.objects.get(external_id="c2").pk)]
    assert "is-new" in held[0]["class"]
    assert not Message.objects.filter(direction="out").exists()
    assert not OutboundDelivery.objects.exists()
    template.refresh_from_db()
    assert template.usage_count == 0


def test_another_agents_reply_holds_the_reply_back(ticket, bram, agent_client):
    seen = newest_id(ticket)
    reply_create(ticket=ticket, author=bram, text="Bram here, on it.")

    response = agent_client.post(
        url(ticket, "reply"), {"text": "Anna here", "seen_message_id": seen}, **FETCH
    )

    assert response.status_code == 409
    assert "Another agent replied while you were writing." in response.content.decode()
    assert list(Message.objects.filter(direction="out").values_list("text", flat=True)) == [
        "Bram here, on it."
    ]


def test_own_earlier_reply_does_not_hold_back(ticket, anna, agent_client):
    seen = newest_id(ticket)
    reply_create(ticket=ticket, author=anna, text="One moment please.")

    response = agent_client.post(
        url(ticket, "reply"), {"text": "Found it.", "seen_message_id": seen}, **FETCH
    )

    assert response.status_code == 200
    assert list(Message.objects.filter(direction="out").order_by("pk").values_list("text", flat=True)) == [
        "One moment please.",
        "Found it.",
    ]


def test_reply_is_stored_once_the_agent_confirmed_the_new_message(source, ticket, agent_client):
    seen = newest_id(ticket)
    ingest_batch(
        source=source, messages=[inbound("c2", author="kim", text="Found it!", reply_to="c1", minutes=4)]
    )
    assert (
        agent_client.post(
            url(ticket, "reply"), {"text": "Great!", "seen_message_id": seen}, **FETCH
        ).status_code
        == 409
    )

    response = agent_client.post(
        url(ticket, "reply"), {"text": "Great!", "seen_message_id": newest_id(ticket)}, **FETCH
    )

    assert response.status_code == 200
    assert Message.objects.get(direction="out").in_reply_to.external_id == "c2"


def test_held_back_without_javascript_shows_the_page_with_the_draft(source, ticket, agent_client):
    seen = newest_id(ticket)
    ingest_batch(
        source=source, messages=[inbound("c2", author="kim", text="Found it!", reply_to="c1", minutes=4)]
    )

    response = agent_client.post(url(ticket, "reply"), {"text": "My careful draft", "seen_message_id": seen})

    assert response.status_code == 409
    page = soup(response)
    assert page.select_one("textarea[data-composer]").get_text() == "My careful draft"
    assert page.select_one("[data-held-back-box]").get("hidden") is None
    assert page.select_one("[data-held-back-text]").get_text(strip=True) == HELD_BACK
    assert page.select_one("input[name=seen_message_id]")["value"] == str(newest_id(ticket))
    new = page.select("li.message.is-new")
    assert [i["data-message-id"] for i in new] == [str(newest_id(ticket))]


@pytest.mark.parametrize(
    ("platform", "text", "error"),
    [
        ("x", "a" * 281, "This reply is 281 characters long; X allows 280."),
        ("bluesky", "ü" * 301, "This reply is 301 characters long; Bluesky allows 300."),
        # Mastodon: with the "@kim " the connector puts in front.
        ("mastodon", "a" * 496, "This reply is 501 characters long; Mastodon allows 500."),
    ],
)
def test_reply_over_the_platform_limit_is_a_400(default_queue, agent_client, platform, text, error):
    brand = SourceFactory(name=platform, platform=platform, default_queue=default_queue)
    ingest_batch(source=brand, messages=[inbound("p1", author="kim", minutes=0)])
    ticket = Ticket.objects.get()

    response = agent_client.post(
        url(ticket, "reply"), {"text": text, "seen_message_id": newest_id(ticket)}, **FETCH
    )

    assert (response.status_code, response.content.decode()) == (400, error)
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert not Message.objects.filter(direction="out").exists()


def test_composer_carries_the_platform_limit(default_queue, agent_client):
    brand = SourceFactory(name="x", platform="x", default_queue=default_queue)
    ingest_batch(source=brand, messages=[inbound("p1", author="kim", minutes=0)])
    ticket = Ticket.objects.get()

    page = soup(agent_client.get(url(ticket)))

    choices = [
        (i["value"], i["data-max-length"], i["data-counting"], i["data-url-length"], i.has_attr("checked"))
        for i in page.select("input[data-visibility]")
    ]
    # One way to reply (X takes public replies only): a hidden input, no choice shown.
    assert choices == [("public", "280", "x", "23", False)]
    assert page.select_one("input[data-visibility]")["type"] == "hidden"
    assert page.select_one("textarea[data-composer]")["data-platform"] == "X"


def test_error_without_javascript_keeps_the_draft(ticket, agent_client):
    response = agent_client.post(
        url(ticket, "reply"), {"text": "x" * 501, "seen_message_id": newest_id(ticket)}
    )

    assert response.status_code == 400
    page = soup(response)
    assert page.select_one("textarea[data-composer]").get_text() == "x" * 501
    assert page.select_one("[data-composer-error]").get_text(strip=True) == (
        "This reply is 501 characters long; Simulated (demo) allows 500."
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"text": "Hi", "seen_message_id": "abc"}, "seen_message_id must be a whole number, not 'abc'."),
        ({"text": "Hi", "kind": "tweet"}, "kind must be reply or note."),
        ({"text": "Hi", "visibility": "secret"}, "visibility must be public or private."),
        ({"text": "Hi", "reply_template": "999999"}, "This template is not available for this ticket."),
        ({"text": "   "}, "reply text is empty"),
    ],
)
def test_bad_reply_input_is_a_400(ticket, agent_client, data, error):
    response = agent_client.post(url(ticket, "reply"), data, **FETCH)

    assert (response.status_code, response.content.decode()) == (400, error)
    assert not Message.objects.filter(direction="out").exists()


def test_template_of_another_queue_is_refused(ticket, agent_client):
    foreign = ReplyTemplateFactory(queue=QueueFactory(name="Other", slug="other-templates"))

    response = agent_client.post(url(ticket, "reply"), {"text": "Hi", "reply_template": foreign.pk}, **FETCH)

    assert response.status_code == 400
    assert not Message.objects.filter(direction="out").exists()


def test_note_is_added(ticket, anna, agent_client):
    response = agent_client.post(
        url(ticket, "reply"), {"kind": "note", "text": "Customer called too.", "seen_message_id": 0}, **FETCH
    )

    assert response.status_code == 200
    note = Message.objects.get(direction="note")
    assert (note.text, note.author_user, note.is_public) == ("Customer called too.", anna, False)
    assert TicketEvent.objects.get(type="message.created", actor=anna).payload["direction"] == "note"
    assert "message-note" in soup(response).select_one("li")["class"]
    assert Ticket.objects.get(pk=ticket.pk).status == "new"


# --- Messages fragment -------------------------------------------------------------------------


def test_messages_fragment_after_and_ids(source, ticket, anna, agent_client):
    first = newest_id(ticket)
    ingest_batch(source=source, messages=[inbound("c2", author="kim", reply_to="c1", minutes=2)])
    reply = reply_create(ticket=ticket, author=anna, text="Hi").message

    def ids(response):
        assert response.status_code == 200
        return [int(i["data-message-id"]) for i in soup(response).select("li[data-message-id]")]

    assert ids(agent_client.get(url(ticket, f"messages?after={first}"))) == [newest_id(ticket) - 1, reply.pk]
    assert ids(agent_client.get(url(ticket, f"messages?ids={reply.pk},{first}"))) == [first, reply.pk]
    assert ids(agent_client.get(url(ticket, f"messages?after={reply.pk}"))) == []


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("ids=abc", "ids must be whole numbers separated by commas."),
        ("after=x", "after must be a whole number, not 'x'."),
        ("", "Give after=<message id> or ids=<message ids>."),
        ("ids=" + ",".join(["1"] * 201), "Ask for at most 200 messages at once."),
    ],
)
def test_messages_fragment_rejects_bad_input(ticket, agent_client, query, error):
    response = agent_client.get(url(ticket, f"messages?{query}"))
    assert (response.status_code, response.content.decode()) == (400, error)


def test_messages_fragment_ignores_other_tickets_messages(source, ticket, agent_client):
    ingest_batch(source=source, messages=[inbound("d1", author="lou", minutes=1)])
    foreign = Message.objects.get(external_id="d1")
    assert foreign.ticket_id != ticket.pk

    response = agent_client.get(url(ticket, f"messages?ids={foreign.pk}"))

    assert soup(response).select("li") == []


# --- Query count -------------------------------------------------------------------------------


def _conversation(source, ticket, anna, bram, n: int, prefix: str) -> None:
    template = ReplyTemplateFactory()
    for i in range(n):
        ingest_batch(
            source=source, messages=[inbound(f"{prefix}{i}", author="kim", reply_to="c1", minutes=i + 1)]
        )
        reply_create(
            ticket=ticket, author=anna if i % 2 else bram, text=f"Reply {i}", reply_template=template
        )
        note_create(ticket=ticket, author=bram, text=f"Note {i}")


def _page_queries(client, ticket) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url(ticket))
    assert response.status_code == 200
    return len(queries)


def test_page_queries_do_not_grow_with_the_conversation(source, ticket, anna, bram, lead, client):
    client.force_login(lead)
    _conversation(source, ticket, anna, bram, 2, "a")
    client.get(url(ticket))  # first visit creates the seen marker
    few = _page_queries(client, ticket)

    _conversation(source, ticket, anna, bram, 12, "b")
    many = _page_queries(client, ticket)

    assert Message.objects.filter(ticket=ticket).count() == 1 + 3 * 14
    assert many == few


# --- Controls ----------------------------------------------------------------------------------


def test_status_change_returns_the_panel_and_writes_the_event(ticket, anna, agent_client):
    response = agent_client.post(url(ticket, "status"), {"status": "pending"}, **FETCH)

    assert response.status_code == 200
    parts = [p["data-part"] for p in soup(response).select("[data-part]")]
    assert parts == ["header", "controls", "customer"]
    assert Ticket.objects.get(pk=ticket.pk).status == "pending"
    event = TicketEvent.objects.get(type="ticket.status_changed")
    assert (event.actor, event.payload["old"], event.payload["new"]) == (anna, "new", "pending")
    pressed = soup(response).select_one('[data-part="controls"] button[aria-pressed="true"][name=status]')
    assert pressed["value"] == "pending"


def test_status_without_javascript_redirects(ticket, agent_client):
    response = agent_client.post(url(ticket, "status"), {"status": "solved"})
    assert (response.status_code, response["Location"]) == (302, url(ticket))
    assert Ticket.objects.get(pk=ticket.pk).status == "solved"


def test_status_errors(ticket, anna, agent_client):
    bad = agent_client.post(url(ticket, "status"), {"status": "closed"}, **FETCH)
    assert (bad.status_code, bad.content.decode()) == (400, "status must be open, pending or solved.")
    ticket_change_status(ticket=ticket, status="closed", actor=anna)

    conflict = agent_client.post(url(ticket, "status"), {"status": "open"}, **FETCH)

    assert (conflict.status_code, conflict.content.decode()) == (
        409,
        "a ticket cannot go from closed to open",
    )
    assert Ticket.objects.get(pk=ticket.pk).status == "closed"


def test_priority_change_and_errors(ticket, anna, agent_client):
    response = agent_client.post(url(ticket, "priority"), {"priority": "3"}, **FETCH)

    assert response.status_code == 200
    assert Ticket.objects.get(pk=ticket.pk).priority == 3
    event = TicketEvent.objects.get(type="ticket.priority_changed")
    assert (event.actor, event.payload["old"], event.payload["new"]) == (anna, 1, 3)
    assert agent_client.post(url(ticket, "priority"), {"priority": "9"}, **FETCH).status_code == 400
    assert agent_client.post(url(ticket, "priority"), {"priority": "high"}, **FETCH).status_code == 400
    assert agent_client.post(url(ticket, "priority"), {}, **FETCH).status_code == 400
    assert Ticket.objects.get(pk=ticket.pk).priority == 3


def test_tags_are_added_and_removed_with_events(ticket, anna, agent_client):
    added = agent_client.post(url(ticket, "tags"), {"add": "Lost bag, press ,"}, **FETCH)

    assert added.status_code == 200
    assert sorted(ticket.tags.values_list("name", flat=True)) == ["Lost bag", "press"]
    assert [t.get_text(strip=True) for t in soup(added).select(".tag-name")] == ["Lost bag", "press"]

    removed = agent_client.post(url(ticket, "tags"), {"remove": "press"}, **FETCH)

    assert removed.status_code == 200
    assert list(ticket.tags.values_list("name", flat=True)) == ["Lost bag"]
    payloads = [
        (e.payload["added"], e.payload["removed"])
        for e in TicketEvent.objects.filter(type="ticket.tags_changed").order_by("id")
    ]
    assert payloads == [(["Lost bag", "press"], []), ([], ["press"])]


def test_tag_errors(ticket, agent_client):
    empty = agent_client.post(url(ticket, "tags"), {"add": " , "}, **FETCH)
    too_long = agent_client.post(url(ticket, "tags"), {"add": "x" * 61}, **FETCH)

    assert (empty.status_code, empty.content.decode()) == (400, "Type a tag to add.")
    assert too_long.status_code == 400
    assert too_long.content.decode().startswith("A tag is at most 60 characters long")
    assert not ticket.tags.exists()


def test_lead_assigns_to_a_queue_agent(ticket, anna, lead, client):
    client.force_login(lead)

    response = client.post(url(ticket, "assignee"), {"assignee": anna.pk}, **FETCH)

    assert response.status_code == 200
    assert Ticket.objects.get(pk=ticket.pk).assignee == anna
    event = TicketEvent.objects.get(type="ticket.assigned")
    assert (event.actor, event.payload["assignee_id"]) == (lead, anna.pk)

    back = client.post(url(ticket, "assignee"), {"assignee": ""}, **FETCH)
    assert back.status_code == 200
    assert Ticket.objects.get(pk=ticket.pk).assignee is None


def test_assignee_errors(ticket, anna, outsider, lead, client):
    client.force_login(anna)
    forbidden = client.post(url(ticket, "assignee"), {"assignee": anna.pk}, **FETCH)
    assert forbidden.status_code == 403

    client.force_login(lead)
    not_in_queue = client.post(url(ticket, "assignee"), {"assignee": outsider.pk}, **FETCH)
    assert (not_in_queue.status_code, not_in_queue.content.decode()) == (
        400,
        "This agent cannot take this ticket (not in its queue).",
    )
    assert Ticket.objects.get(pk=ticket.pk).assignee is None


def test_agent_sees_the_assignee_without_a_control(ticket, agent_client):
    page = soup(agent_client.get(url(ticket)))
    assert page.select("select[name=assignee]") == []


def test_lead_sees_queue_agents_to_assign(ticket, anna, bram, lead, client):
    client.force_login(lead)
    page = soup(client.get(url(ticket)))
    options = [o["value"] for o in page.select("select[name=assignee] option")]
    assert options == ["", str(anna.pk), str(bram.pk)]


# --- Delivery actions --------------------------------------------------------------------------


def test_retry_of_a_failed_reply(ticket, anna, agent_client):
    delivery = reply_create(ticket=ticket, author=anna, text="Hi")
    OutboundDelivery.objects.filter(pk=delivery.pk).update(state="failed", last_error="503 busy")

    response = agent_client.post(url(ticket, f"deliveries/{delivery.pk}/retry"), **FETCH)

    assert response.status_code == 200
    assert OutboundDelivery.objects.get(pk=delivery.pk).state == "queued"
    assert soup(response).select_one("[data-delivery-state]")["data-delivery-state"] == "queued"
    again = agent_client.post(url(ticket, f"deliveries/{delivery.pk}/retry"), **FETCH)
    assert (again.status_code, again.content.decode()) == (
        409,
        "only failed replies can be retried; this one is queued",
    )


def test_approve_and_reject_need_a_lead_and_a_reason(ticket, anna, lead, client):
    Ticket.objects.filter(pk=ticket.pk).update(reply_approval_required=True)
    first = reply_create(ticket=Ticket.objects.get(pk=ticket.pk), author=anna, text="One")
    second = reply_create(ticket=Ticket.objects.get(pk=ticket.pk), author=anna, text="Two")
    client.force_login(anna)
    assert client.post(url(ticket, f"deliveries/{first.pk}/approve"), **FETCH).status_code == 403

    client.force_login(lead)
    assert client.post(url(ticket, f"deliveries/{first.pk}/approve"), **FETCH).status_code == 200
    no_reason = client.post(url(ticket, f"deliveries/{second.pk}/reject"), {"reason": " "}, **FETCH)
    assert (no_reason.status_code, no_reason.content.decode()) == (400, "Say why the reply is rejected.")
    assert (
        client.post(url(ticket, f"deliveries/{second.pk}/reject"), {"reason": "Tone"}, **FETCH).status_code
        == 200
    )

    states = dict(OutboundDelivery.objects.values_list("pk", "state"))
    assert states == {first.pk: "queued", second.pk: "failed"}
    assert OutboundDelivery.objects.get(pk=second.pk).last_error == "rejected by lea: Tone"


def test_delivery_of_another_ticket_or_unknown_action_is_not_found(source, ticket, anna, agent_client):
    ingest_batch(source=source, messages=[inbound("d1", author="lou", minutes=1)])
    other = Ticket.objects.exclude(pk=ticket.pk).get()
    delivery = reply_create(ticket=other, author=anna, text="Hi")
    OutboundDelivery.objects.filter(pk=delivery.pk).update(state="failed")

    assert agent_client.post(url(ticket, f"deliveries/{delivery.pk}/retry"), **FETCH).status_code == 404
    assert agent_client.post(url(other, f"deliveries/{delivery.pk}/delete"), **FETCH).status_code == 404
    assert OutboundDelivery.objects.get(pk=delivery.pk).state == "failed"


# --- Customer panel and merge ------------------------------------------------------------------


def test_customer_panel_shows_identities_vip_and_other_tickets(source, ticket, anna, agent_client):
    Contact.objects.filter(external_id="kim").update(
        followers_count=1200, verified=True, display_name="Kim <3"
    )
    Customer.objects.filter(pk=ticket.customer_id).update(vip=True)

    page = soup(agent_client.get(url(ticket)))

    panel = page.select_one('[data-part="customer"]')
    assert panel.select_one(".badge.vip") is not None
    (identity,) = panel.select(".identity")
    assert identity.select_one(".handle").get_text(strip=True) == "@kim"
    assert identity.select_one(".name").get_text(strip=True) == "Kim <3"
    assert identity.select_one(".followers").get_text(strip=True) == "1200 followers"
    assert identity.select_one(".verified") is not None
    assert panel.select("form") == []  # the VIP toggle is for leads


def test_lead_toggles_vip(ticket, lead, anna, client):
    client.force_login(anna)
    assert client.post(url(ticket, "customer/vip"), {"vip": "1"}, **FETCH).status_code == 403
    client.force_login(lead)

    response = client.post(url(ticket, "customer/vip"), {"vip": "1"}, **FETCH)

    assert response.status_code == 200
    assert Customer.objects.get(pk=ticket.customer_id).vip is True
    assert TicketEvent.objects.filter(type="customer.vip_changed", ticket=ticket).count() == 1
    assert client.post(url(ticket, "customer/vip"), {"vip": "yes"}, **FETCH).status_code == 400


@pytest.fixture
def other_customer(source):
    """The same person writing from a second account, with a ticket in the same queue."""
    ingest_batch(source=source, messages=[inbound("k2", author="kim_alt", minutes=10)])
    return Contact.objects.get(external_id="kim_alt").customer


@pytest.fixture
def hidden_customer(db):
    """A customer whose only ticket is in a queue the agent is not in."""
    hidden = SourceFactory(name="hidden", default_queue=QueueFactory(name="Hidden", slug="hidden"))
    ingest_batch(source=hidden, messages=[inbound("h1", author="kim_secret", minutes=10)])
    return Contact.objects.get(external_id="kim_secret").customer


def test_customer_search_is_scoped(ticket, other_customer, hidden_customer, agent_client):
    response = agent_client.get(url(ticket, "customer/search?q=kim"), **FETCH)

    assert response.status_code == 200
    page = soup(response)
    sources = [i["value"] for i in page.select("input[name=source]")]
    assert sources == [str(other_customer.pk)]  # not the ticket's own customer, not the hidden one
    assert page.select_one("form")["data-confirm"].startswith("Merge “Kim_Alt” into “Kim”?")
    empty = soup(agent_client.get(url(ticket, "customer/search?q=nobody"), **FETCH))
    assert empty.get_text(strip=True) == "No customer matches “nobody”."


def test_merge_moves_the_other_customer_into_this_one(ticket, other_customer, anna, agent_client):
    other_ticket = Ticket.objects.get(customer=other_customer)

    response = agent_client.post(url(ticket, "customer/merge"), {"source": other_customer.pk}, **FETCH)

    assert response.status_code == 200
    assert not Customer.objects.filter(pk=other_customer.pk).exists()
    assert sorted(Contact.objects.filter(customer=ticket.customer).values_list("handle", flat=True)) == [
        "kim",
        "kim_alt",
    ]
    assert Ticket.objects.get(pk=other_ticket.pk).customer_id == ticket.customer_id
    assert sorted(
        TicketEvent.objects.filter(type="customer.merged").values_list("ticket_id", flat=True)
    ) == sorted([ticket.pk, other_ticket.pk])
    handles = [h.get_text(strip=True) for h in soup(response).select('[data-part="customer"] .handle')]
    assert handles == ["@kim", "@kim_alt"]


def test_merge_into_itself_is_a_400(ticket, agent_client):
    response = agent_client.post(url(ticket, "customer/merge"), {"source": ticket.customer_id}, **FETCH)

    assert (response.status_code, response.content.decode()) == (
        400,
        "A customer cannot be merged into itself.",
    )
    assert Customer.objects.filter(pk=ticket.customer_id).exists()


def test_merging_an_invisible_customer_is_not_found(ticket, hidden_customer, agent_client):
    response = agent_client.post(url(ticket, "customer/merge"), {"source": hidden_customer.pk}, **FETCH)

    assert response.status_code == 404
    assert Customer.objects.filter(pk=hidden_customer.pk).exists()
    assert Contact.objects.get(external_id="kim_secret").customer_id == hidden_customer.pk
    assert not TicketEvent.objects.filter(type="customer.merged").exists()


def test_panel_fragment(ticket, agent_client):
    response = agent_client.get(url(ticket, "panel"), **FETCH)

    assert response.status_code == 200
    assert [p["data-part"] for p in soup(response).select("[data-part]")] == [
        "header",
        "controls",
        "customer",
    ]


# --- Viewers -----------------------------------------------------------------------------------


def test_viewers_are_rendered_for_the_first_paint_without_myself(
    ticket, anna, bram, agent_client, monkeypatch
):
    from inbox.selectors.collision import Viewer

    monkeypatch.setattr(
        "inbox.views.ticket.viewers_for",
        lambda ids: {ticket.pk: [Viewer(anna.pk, "Anna", False), Viewer(bram.pk, "Bram <b>", True)]},
    )

    page = soup(agent_client.get(url(ticket)))

    viewers = page.select_one(f'[data-viewers-for="{ticket.pk}"]')
    assert [(v.get_text(), v["class"]) for v in viewers.select(".viewer")] == [
        ("Bram <b> typing…", ["viewer", "typing"])
    ]
    assert viewers["data-i18n-viewing"] == "{name} viewing"


def test_page_still_renders_when_viewers_are_unavailable(ticket, agent_client, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    def down(ids):
        raise RedisConnectionError("connection refused")

    monkeypatch.setattr("inbox.views.ticket.viewers_for", down)

    response = agent_client.get(url(ticket))

    assert response.status_code == 200
    viewers = soup(response).select_one(f'[data-viewers-for="{ticket.pk}"]')
    assert viewers.get_text(strip=True) == "Viewers unknown (live service unavailable)"
