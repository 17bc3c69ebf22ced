"""The agent desk end to end: real server, real browser, real worker, live updates.

Each test is one story from issue 4: a ticket appears live and is answered with a Dutch
template; two agents on one ticket; a lead moves work; a dropped connection catches up;
hostile social text stays text.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from inbox.connectors.base import AuthorIdentity, InboundMessage
from inbox.models import Message, OutboundDelivery, ReplyTemplate, ReplyTemplateVariant, Ticket
from inbox.services.assignment import ticket_reassign
from inbox.services.ingest import ingest_batch
from tests.browser.threads import off_loop
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queue(db):
    return QueueFactory(name="KLM NL", slug="klm-nl", assignment_mode="pull")


@pytest.fixture
def source(queue):
    return SourceFactory(name="brand", default_queue=queue)


def agent(queue, username: str, first: str, *, role: str = "agent", languages=("nl", "en")):
    user = AgentProfileFactory(
        user__username=username, user__first_name=first, user__last_name="Test",
        role=role, languages=list(languages),
    ).user
    queue.members.add(user)
    return user


def live(page: Page) -> None:
    expect(page.locator("[data-connection-status]")).to_have_attribute("data-connection-status", "live")


def ticket_of(external_id: str) -> Ticket:
    return Message.objects.select_related("ticket").get(external_id=external_id).ticket


@pytest.mark.worker
def test_ticket_appears_live_and_is_answered_with_an_edited_dutch_template(
    new_page, source, queue, celery_worker, redis_client
):
    anna = agent(queue, "anna", "Anna")
    template = ReplyTemplate.objects.create(name="Vertraging", shortcut="delay")
    ReplyTemplateVariant.objects.create(template=template, language="nl",
                                        body="Hoi {customer_name}, sorry voor de vertraging.")
    ReplyTemplateVariant.objects.create(template=template, language="en",
                                        body="Hi {customer_name}, sorry for the delay.")
    page = new_page(anna)
    page.goto("/?view=queues")
    live(page)

    off_loop(ingest_batch, source=source, messages=[inbound(
        "nl-1", author="sanne", text="Mijn vlucht naar Amsterdam heeft al drie uur vertraging, wat nu?",
    )])
    ticket = ticket_of("nl-1")
    row = page.locator(f'tr[data-ticket-id="{ticket.pk}"]')
    expect(row).to_be_visible()  # arrived without a reload
    assert ticket.language == "nl"

    row.locator("a[data-ticket-link]").click()
    page.wait_for_url(re.compile(rf"/desk/tickets/{ticket.pk}/$"))
    live(page)
    page.keyboard.press("t")
    search = page.locator("[data-picker-search]")
    expect(search).to_be_focused()
    search.fill("delay")
    option = page.get_by_role("option").filter(has_text="Vertraging")
    expect(option).to_be_visible()
    search.press("Enter")
    composer = page.locator("textarea[data-composer]")
    expect(composer).to_have_value("Hoi Sanne, sorry voor de vertraging.")
    composer.press("End")
    composer.type(" We boeken je om naar de volgende vlucht.")
    page.locator("button[data-send]").click()

    reply = page.locator("li.message-out").last
    expect(reply).to_contain_text("We boeken je om naar de volgende vlucht.")
    expect(reply.locator("[data-delivery-state]")).to_have_attribute("data-delivery-state", "sent", timeout=30_000)
    stored = Message.objects.get(ticket=ticket, direction="out")
    assert stored.text == "Hoi Sanne, sorry voor de vertraging. We boeken je om naar de volgende vlucht."
    assert stored.reply_template_id == template.pk
    assert stored.delivery.state == OutboundDelivery.State.SENT
    assert ReplyTemplate.objects.get(pk=template.pk).usage_count == 1


def test_second_agent_sees_viewing_and_typing_and_is_held_back(new_page, source, queue, redis_client):
    anna, pierre = agent(queue, "anna", "Anna"), agent(queue, "pierre", "Pierre")
    off_loop(ingest_batch, source=source, messages=[inbound("c-1", author="joost", text="Is mijn koffer gevonden?")])
    ticket = ticket_of("c-1")
    url = f"/desk/tickets/{ticket.pk}/"
    pierre_page, anna_page = new_page(pierre), new_page(anna)
    pierre_page.goto(url)
    live(pierre_page)
    anna_page.goto(url)
    live(anna_page)

    viewers = pierre_page.locator(f'[data-viewers-for="{ticket.pk}"]').first
    expect(viewers).to_contain_text("Anna")
    pierre_page.locator("textarea[data-composer]").fill("Hoi Joost, ik kijk het na")
    anna_page.locator("textarea[data-composer]").type("Hoi Joost, we")
    expect(viewers).to_contain_text("typ")  # "typing…" / "typt…"

    # Anna sends first; Pierre, still writing, is held back until he has read her reply.
    anna_page.locator("button[data-send]").click()
    expect(anna_page.locator("li.message-out")).to_have_count(1)
    box = pierre_page.locator("[data-held-back-box]")
    expect(box).to_be_visible()
    expect(pierre_page.locator("li.message-out")).to_contain_text("Hoi Joost, we")
    expect(pierre_page.locator("button[data-send]")).to_be_disabled()
    assert list(Message.objects.filter(ticket=ticket, direction="out").values_list("author_user", flat=True)) == [
        anna.pk
    ]
    expect(pierre_page.locator("textarea[data-composer]")).to_have_value("Hoi Joost, ik kijk het na")

    # Once he has read Anna's reply he may send.
    box.locator("[data-held-back-confirm]").click()
    pierre_page.locator("button[data-send]").click()
    expect(pierre_page.locator("li.message-out")).to_have_count(2)
    authors = Message.objects.filter(ticket=ticket, direction="out").order_by("id").values_list(
        "author_user", flat=True)
    assert list(authors) == [anna.pk, pierre.pk]


def test_lead_reassigns_and_both_agents_lists_update_live(new_page, source, queue, redis_client):
    lead = agent(queue, "lead", "Lea", role="lead")
    anna, pierre = agent(queue, "anna", "Anna"), agent(queue, "pierre", "Pierre")
    off_loop(ingest_batch, source=source, messages=[inbound("r-1", author="bram", text="Can I bring my cat?")])
    ticket = off_loop(ticket_reassign, ticket=ticket_of("r-1"), assignee=anna, actor=lead)

    anna_page, pierre_page, lead_page = new_page(anna), new_page(pierre), new_page(lead)
    anna_page.goto("/?view=mine")
    pierre_page.goto("/?view=mine")
    for page in (anna_page, pierre_page):
        live(page)
    expect(anna_page.locator(f'tr[data-ticket-id="{ticket.pk}"]')).to_be_visible()
    expect(pierre_page.locator(f'tr[data-ticket-id="{ticket.pk}"]')).to_have_count(0)

    lead_page.goto(f"/desk/dashboard/?queue={queue.pk}")
    live(lead_page)
    lead_page.locator(f'input[name="ticket"][value="{ticket.pk}"]').check()
    lead_page.locator("#dash-assignee").select_option(str(pierre.pk))
    lead_page.locator('button[data-key="assign-selected"]').click()

    expect(pierre_page.locator(f'tr[data-ticket-id="{ticket.pk}"]')).to_be_visible()
    expect(anna_page.locator(f'tr[data-ticket-id="{ticket.pk}"]')).to_have_count(0)
    assert Ticket.objects.get(pk=ticket.pk).assignee == pierre


def test_a_dropped_connection_catches_up_without_missing_an_event(new_page, source, queue, redis_client):
    anna = agent(queue, "anna", "Anna")
    page = new_page(anna)
    page.goto("/?view=queues")
    live(page)
    page.context.set_offline(True)
    page.evaluate("window.DeskSocket.drop()")
    expect(page.locator("[data-connection-status]")).to_have_attribute("data-connection-status", "offline")

    # While Anna is offline three customers write; nothing can reach her socket.
    off_loop(ingest_batch, source=source, messages=[
        inbound(f"off-{n}", author=f"c{n}", text=f"Question {n} about my booking") for n in range(3)
    ])
    ids = [ticket_of(f"off-{n}").pk for n in range(3)]
    page.wait_for_timeout(300)
    for pk in ids:
        expect(page.locator(f'tr[data-ticket-id="{pk}"]')).to_have_count(0)

    page.context.set_offline(False)
    live(page)
    for pk in ids:
        expect(page.locator(f'tr[data-ticket-id="{pk}"]')).to_be_visible()
    expect(page.locator("tr[data-ticket-id]")).to_have_count(3)  # each once


HOSTILE_NAME = '<img src=x onerror="window.__xss=1">Ïñtérnätiønàl 👩🏽‍✈️'
HOSTILE_HANDLE = '"><script>window.__xss=2</script>'
HOSTILE_TEXT = (
    "<svg onload=\"window.__xss=3\"></svg> javascript:window.__xss=4 "
    "[click](javascript:alert(1)) مرحبا\u200b\u202eevil https://klm.example/ok?a=1&b=<2>"
)


def test_hostile_names_and_text_render_as_text_and_run_nothing(new_page, source, queue, redis_client):
    anna = agent(queue, "anna", "Anna")
    page = new_page(anna)
    page.goto("/?view=queues")
    live(page)
    message = InboundMessage(
        external_id="x-1",
        author=AuthorIdentity(external_id="evil", handle=HOSTILE_HANDLE, display_name=HOSTILE_NAME),
        text=HOSTILE_TEXT,
        created_at=inbound("tmp").created_at,
    )
    off_loop(ingest_batch, source=source, messages=[message])
    ticket = ticket_of("x-1")

    row = page.locator(f'tr[data-ticket-id="{ticket.pk}"]')  # rendered by a live update
    expect(row).to_contain_text("Ïñtérnätiønàl")
    assert '<img src=x onerror="window.__xss=1">' in row.inner_text()
    page.goto(f"/desk/tickets/{ticket.pk}/")
    live(page)
    conversation = page.locator("[data-conversation]")
    expect(conversation).to_contain_text('<svg onload="window.__xss=3"></svg>')
    assert page.locator("main").inner_text().count(HOSTILE_HANDLE) >= 1
    for scope in ("main img[src=x]", "main svg[onload]", 'main script:not([src^="/static/"])'):
        assert page.locator(scope).count() == 0, scope
    assert page.locator('a[href^="javascript:"]').count() == 0
    link = conversation.locator('a[href^="https://klm.example/ok"]')
    expect(link).to_have_attribute("rel", re.compile(r"\bnoopener\b"))
    assert page.evaluate("window.__xss") is None


def test_messenger_windows_are_shown_and_a_closed_one_cannot_be_sent_into(new_page, queue, redis_client):
    from datetime import timedelta

    from django.utils import timezone

    anna = agent(queue, "anna", "Anna")
    messenger = SourceFactory(name="KLM Messenger", platform="messenger", account_id="page-1", default_queue=queue)
    now = timezone.now()
    off_loop(ingest_batch, source=messenger, messages=[
        inbound("old-1", author="psid-1", text="Waar blijft mijn terugbetaling?", public=False,
                conversation="psid-1", at=now - timedelta(days=9)),
        inbound("late-1", author="psid-2", text="Nog nieuws?", public=False, conversation="psid-2",
                at=now - timedelta(hours=30)),
    ])
    page = new_page(anna)

    page.goto(f"/desk/tickets/{ticket_of('old-1').pk}/")
    live(page)  # the page's scripts run: typing now updates the Send button
    notice = page.locator('[data-window-for="private"]')
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("closed until they write again")
    page.locator("textarea[data-composer]").fill("Sorry voor het wachten")
    expect(page.locator("button[data-send]")).to_be_disabled()
    # A note is still possible: the window only concerns replies.
    page.locator('[data-kind][value="note"]').check()
    expect(notice).to_be_hidden()
    expect(page.locator("button[data-send]")).to_be_enabled()

    page.goto(f"/desk/tickets/{ticket_of('late-1').pk}/")
    live(page)
    expect(page.locator('[data-window-for="private"]')).to_contain_text("Human Agent tag")
    page.locator("textarea[data-composer]").fill("Sorry voor het wachten")
    expect(page.locator("button[data-send]")).to_be_enabled()
