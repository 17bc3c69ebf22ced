"""The inbox page, its live rows endpoint and "next ticket", through the HTTP client."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from redis.exceptions import ConnectionError as RedisConnectionError

from inbox.models import AgentProfile, Queue, Ticket
from inbox.selectors import inbox as inbox_selectors
from inbox.selectors.collision import Viewer
from inbox.selectors.inbox import MAX_ROW_IDS
from inbox.services.assignment import ticket_reassign
from inbox.services.desk import ticket_mark_seen
from inbox.services.tickets import ticket_change_status
from tests.factories import AgentProfileFactory, QueueFactory
from tests.selectors.test_inbox import Desk, make_desk, ticket_from

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
ROW = re.compile(r'<tr class="ticket-row[^"]*" data-ticket-id="(\d+)" data-sort-key="([^"]+)"')


@pytest.fixture
def desk(source, default_queue) -> Desk:
    return make_desk(source, default_queue)


def row_ids(html: str) -> list[int]:
    return [int(found) for found, _key in ROW.findall(html)]


def page(client, user, query: str = "", status: int = 200) -> str:
    client.force_login(user)
    response = client.get(f"/{query}")
    assert response.status_code == status, response.content.decode()[:500]
    return response.content.decode()


def gone_of(html: str) -> str:
    return re.search(r'<template data-inbox-fragment data-gone="([^"]*)"', html).group(1)


# --- The page --------------------------------------------------------------------------------------


def test_an_agent_opens_on_their_queues_and_sees_the_rows(client, desk):
    bag = ticket_from(desk.web, "Where is my bag?", handle="jan", name="Jan de Boer", at=T0)
    ticket_from(desk.x, "Invoice is wrong")  # Billing: not Anna's
    html = page(client, desk.anna)
    assert row_ids(html) == [bag.pk]
    assert 'data-tab="queues" aria-current="page"' in html
    assert re.search(r'data-tab="mine">Mine <span class="count" data-count-for="mine">0</span>', html)
    assert 'data-count-for="queues">1</span>' in html
    assert 'data-tab="all"' not in html  # leads only
    assert f'<a class="ticket-link" href="/desk/tickets/{bag.pk}/" data-ticket-link>' in html
    assert "<bdi>Jan de Boer</bdi>" in html and "@<bdi>jan</bdi>" in html
    assert '<span class="platform platform-simulated">Simulated (demo)</span>' in html
    assert '<span class="social-text preview">Where is my bag?</span>' in html
    assert "is-unread" in html
    assert f'<span class="viewers" data-viewers-for="{bag.pk}">' in html
    assert 'data-list-query="view=queues"' in html
    assert '<script src="/static/js/desk/inbox.js" defer></script>' in html
    assert "<script>" not in html and "onclick" not in html


def test_agent_with_tickets_opens_on_mine_and_a_lead_on_unassigned(client, desk):
    ticket = ticket_from(desk.web)
    ticket_from(desk.web)
    ticket_reassign(ticket=ticket, assignee=desk.anna, actor=desk.lena)
    assert row_ids(page(client, desk.anna)) == [ticket.pk]
    html = page(client, desk.lena)
    assert 'data-tab="unassigned" aria-current="page"' in html
    assert len(row_ids(html)) == 1


def test_all_is_for_leads_only(client, desk):
    solved = ticket_from(desk.web)
    ticket_change_status(ticket=solved, status="solved", actor=desk.lena)
    assert row_ids(page(client, desk.lena, "?view=all")) == [solved.pk]
    body = page(client, desk.anna, "?view=all", status=403)
    assert body == "Only team leads can see all tickets."
    assert page(client, desk.anna, "?view=everything", status=400) == "Unknown list 'everything'."


def test_filters_and_search_through_the_query(client, desk):
    dutch = ticket_from(desk.web, "Waar is mijn koffer? Ik wacht al drie dagen op een antwoord van jullie.")
    english = ticket_from(desk.web, "Where is my bag? I have been waiting three days for an answer.")
    x_ticket = ticket_from(desk.x, "Invoice is wrong", handle="pietje")
    assert row_ids(page(client, desk.anna, "?view=queues&language=nl")) == [dutch.pk]
    assert row_ids(page(client, desk.anna, "?view=queues&q=waiting+THREE")) == [english.pk]
    assert row_ids(page(client, desk.lena, "?view=all&platform=x")) == [x_ticket.pk]
    assert row_ids(page(client, desk.lena, "?view=all&q=%40pietje")) == [x_ticket.pk]
    html = page(client, desk.lena, "?view=all&platform=x&q=invoice")
    # Tabs keep the filters; "Clear filters" drops them.
    assert 'href="?view=mine&amp;platform=x&amp;q=invoice"' in html
    assert 'href="?view=all">Clear filters</a>' in html
    assert 'data-list-query="view=all&amp;platform=x&amp;q=invoice"' in html


def test_filter_by_agent_and_unassigned(client, desk):
    mine = ticket_from(desk.web)
    waiting = ticket_from(desk.web)
    ticket_reassign(ticket=mine, assignee=desk.anna, actor=desk.lena)
    assert row_ids(page(client, desk.anna, f"?view=queues&assignee={desk.anna.pk}")) == [mine.pk]
    assert row_ids(page(client, desk.anna, "?view=queues&assignee=none")) == [waiting.pk]


def test_bad_filters_are_a_400_with_the_reason(client, desk):
    ticket_from(desk.web)
    html = page(client, desk.anna, "?view=queues&priority=9", status=400)
    assert "Select a valid choice. 9 is not one of the available choices." in html
    assert row_ids(html) == []
    # Bob is in another queue: not an agent Anna may filter on.
    html = page(client, desk.anna, f"?view=queues&assignee={desk.bob.pk}", status=400)
    assert f"Select a valid choice. {desk.bob.pk} is not one of the available choices." in html
    html = page(client, desk.anna, "?view=queues&status=solved", status=400)  # not in an active list
    assert "solved is not one of the available choices" in html
    assert "Ensure this value is greater than or equal to 1." in page(
        client, desk.anna, "?view=queues&page=0", 400
    )
    assert "Enter a whole number." in page(client, desk.anna, "?view=queues&page=abc", status=400)
    assert page(client, desk.anna, "?view=queues&fragment=table", status=400) == "Unknown fragment 'table'."


def test_pages_of_fifty_and_past_the_end(client, desk):
    tickets = [ticket_from(desk.web, "Question", at=T0 + timedelta(minutes=n)) for n in range(52)]
    html = page(client, desk.anna, "?view=queues")
    assert row_ids(html) == [t.pk for t in tickets[:50]]
    assert "Page 1 of 2" in html and 'href="?view=queues&amp;page=2" rel="next"' in html
    html = page(client, desk.anna, "?view=queues&page=2")
    assert row_ids(html) == [t.pk for t in tickets[50:]]
    assert 'href="?view=queues&amp;page=1" rel="prev"' in html
    html = page(client, desk.anna, "?view=queues&page=5", status=404)
    assert "There is no page 5: this list has 2 page(s) now." in html


def test_sla_order_on_the_page(client, desk):
    later = ticket_from(desk.web, "Question", at=T0)
    sooner = ticket_from(desk.web, "Question", at=T0 + timedelta(minutes=1))
    none = ticket_from(desk.web, "Question", at=T0 - timedelta(minutes=1))
    Ticket.objects.filter(pk=later.pk).update(first_response_due_at=T0 + timedelta(hours=2))
    Ticket.objects.filter(pk=sooner.pk).update(first_response_due_at=T0 + timedelta(hours=1))
    html = page(client, desk.anna, "?view=queues")
    assert row_ids(html) == [sooner.pk, later.pk, none.pk]
    keys = [key for _id, key in ROW.findall(html)]
    assert keys == sorted(keys)


def test_unread_marker_follows_what_the_agent_has_seen(client, desk):
    ticket = ticket_from(desk.web, "Where is my bag?", external_id="bag-1")
    unread_row = f'<tr class="ticket-row prio-1 is-unread" data-ticket-id="{ticket.pk}"'
    read_row = f'<tr class="ticket-row prio-1" data-ticket-id="{ticket.pk}"'
    assert unread_row in page(client, desk.anna, "?view=queues")
    ticket_mark_seen(ticket=ticket, user=desk.anna)
    assert read_row in page(client, desk.anna, "?view=queues")
    ticket_from(desk.web, "Hello??", author=ticket.contact.external_id, reply_to="bag-1")
    assert unread_row in page(client, desk.anna, "?view=queues")


def test_viewers_are_rendered_for_the_first_paint(client, desk, monkeypatch):
    ticket = ticket_from(desk.web)
    monkeypatch.setattr(
        inbox_selectors, "viewers_for",
        lambda ids: {ticket.pk: [Viewer(desk.bob.pk, "Bob <b>", True), Viewer(desk.anna.pk, "Anna", False),
                                 Viewer(desk.lena.pk, "Lena", False)]},
    )  # fmt: skip
    html = page(client, desk.anna, "?view=queues")
    # Others only (Anna is looking at the list), names escaped; as collision.js renders them.
    assert (
        f'<span class="viewers has-viewers" data-viewers-for="{ticket.pk}"><span class="viewer typing">'
        'Bob &lt;b&gt; typing…</span>, <span class="viewer">Lena viewing</span></span>'
    ) in html


def test_the_list_works_while_the_viewers_are_unknown(client, desk, monkeypatch):
    ticket = ticket_from(desk.web)

    def redis_down(ids):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(inbox_selectors, "viewers_for", redis_down)
    html = page(client, desk.anna, "?view=queues")
    assert row_ids(html) == [ticket.pk]
    assert "Who is viewing which ticket is unknown right now (the live service does not answer)." in html


def test_hostile_names_handles_and_previews_are_escaped(client, desk):
    ticket_from(
        desk.web, "<script>alert('text')</script>", name="<script>alert('name')</script>",
        handle='"><img src=x onerror=alert(1)>',
    )  # fmt: skip
    html = page(client, desk.anna, "?view=queues")
    assert "&lt;script&gt;alert(&#x27;text&#x27;)&lt;/script&gt;" in html
    assert "<bdi>&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;</bdi>" in html
    assert "@<bdi>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;</bdi>" in html
    assert "<script>alert" not in html and "<img src=x" not in html


def test_the_page_needs_a_login(client):
    response = client.get("/")
    assert (response.status_code, response.headers["Location"]) == (302, "/login/?next=/")


def test_the_page_costs_the_same_queries_for_five_and_fifty_rows(client, desk):
    client.force_login(desk.anna)

    def queries() -> tuple[int, int]:
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/?view=queues")
        assert response.status_code == 200
        return len(captured), len(row_ids(response.content.decode()))

    for n in range(5):
        ticket_reassign(ticket=ticket_from(desk.web, f"Question {n}"), assignee=desk.anna, actor=desk.lena)
    few, rows = queries()
    assert rows == 5
    for n in range(50):
        ticket_from(desk.web, f"Question {n}")
    many, rows = queries()
    assert rows == 50
    assert few == many


# --- Live rows -------------------------------------------------------------------------------------


def rows(client, user, query: str, status: int = 200) -> str:
    client.force_login(user)
    response = client.get(f"/desk/rows?{query}")
    assert response.status_code == status, response.content.decode()[:500]
    return response.content.decode()


def test_rows_gives_the_matching_rows_and_names_the_gone(client, desk):
    new = ticket_from(desk.web, at=T0)
    pending = ticket_from(desk.web, at=T0 + timedelta(minutes=1))
    billing = ticket_from(desk.x)
    ticket_change_status(ticket=pending, status="pending", actor=desk.anna)
    html = rows(client, desk.anna, f"ids={pending.pk},{billing.pk},{new.pk},424242&view=queues&status=new")
    assert row_ids(html) == [new.pk]
    assert gone_of(html) == f"{pending.pk},{billing.pk},424242"
    assert (
        'data-count-mine="0" data-count-queues="2" data-count-unassigned="2" data-count-pending="1"' in html
    )
    sort_key = ROW.search(html).group(2)
    assert sort_key == inbox_selectors.sort_key(
        inbox_selectors.inbox_ordered(Ticket.objects.filter(pk=new.pk))[0]
    )


def test_rows_with_a_search_drops_tickets_that_no_longer_match(client, desk):
    bag = ticket_from(desk.web, "Where is my bag?")
    flight = ticket_from(desk.web, "Flight delayed")
    html = rows(client, desk.anna, f"ids={bag.pk},{flight.pk}&view=queues&q=bag")
    assert (row_ids(html), gone_of(html)) == ([bag.pk], str(flight.pk))


def test_rows_refuses_bad_input(client, desk):
    assert rows(client, desk.anna, "ids=abc&view=queues", 400) == "'abc' is not a ticket id."
    assert rows(client, desk.anna, "ids=1,-2&view=queues", 400) == "'-2' is not a ticket id."
    assert rows(client, desk.anna, "ids=0&view=queues", 400) == "'0' is not a ticket id."
    assert rows(client, desk.anna, "view=queues", 400) == "ids is required: ticket ids separated by commas."
    assert rows(client, desk.anna, "ids=1", 400) == "view is required."
    too_many = ",".join(str(n) for n in range(1, MAX_ROW_IDS + 2))
    assert (
        rows(client, desk.anna, f"ids={too_many}&view=queues", 400)
        == f"At most {MAX_ROW_IDS} ticket ids at a time."
    )
    assert rows(client, desk.anna, "ids=1&view=all", 403) == "Only team leads can see all tickets."
    assert rows(client, desk.anna, "ids=1&view=queues&sla=late", 400) == (
        "sla: Select a valid choice. late is not one of the available choices."
    )
    client.logout()
    assert client.get("/desk/rows?ids=1&view=queues").status_code == 302


def test_the_rows_of_a_whole_page_for_a_resync(client, desk):
    tickets = [ticket_from(desk.web, at=T0 + timedelta(minutes=n)) for n in range(3)]
    html = page(client, desk.anna, "?view=queues&fragment=rows")
    assert html.startswith('<template data-inbox-fragment data-gone=""')
    assert row_ids(html) == [t.pk for t in tickets]


def test_rows_cost_the_same_queries_for_five_and_fifty_ids(client, desk):
    client.force_login(desk.anna)
    tickets = [ticket_from(desk.web, f"Question {n}") for n in range(50)]

    def queries(asked: list[Ticket]) -> int:
        query = ",".join(str(t.pk) for t in asked)
        with CaptureQueriesContext(connection) as captured:
            response = client.get(f"/desk/rows?ids={query}&view=queues")
        assert len(row_ids(response.content.decode())) == len(asked)
        return len(captured)

    assert queries(tickets[:5]) == queries(tickets)


# --- Next ticket -----------------------------------------------------------------------------------


def test_next_goes_to_my_first_ticket_in_list_order(client, desk):
    later = ticket_from(desk.web, at=T0 + timedelta(minutes=5))
    sooner = ticket_from(desk.web, at=T0)
    for ticket in (later, sooner):
        ticket_reassign(ticket=ticket, assignee=desk.anna, actor=desk.lena)
    client.force_login(desk.anna)
    assert client.get("/desk/next").headers["Location"] == f"/desk/tickets/{sooner.pk}/"
    assert client.get(f"/desk/next?after={sooner.pk}").headers["Location"] == f"/desk/tickets/{later.pk}/"
    assert client.post("/desk/next", {"after": sooner.pk}).headers["Location"] == f"/desk/tickets/{later.pk}/"
    assert client.get("/desk/next?after=x").status_code == 400


def test_next_with_nothing_waiting_says_so(client, desk):
    client.force_login(desk.anna)
    response = client.get("/desk/next", follow=True)
    assert response.redirect_chain == [("/", 302)]
    assert '<p class="notice info">Nothing waiting</p>' in response.content.decode()
    response = client.post("/desk/next", follow=True)
    assert '<p class="notice info">Nothing waiting</p>' in response.content.decode()


@pytest.fixture
def pull_agent(desk, redis_client):
    queue = QueueFactory(name="Social", slug="social", assignment_mode=Queue.AssignmentMode.PULL)
    desk.web.default_queue = queue
    desk.web.save(update_fields=["default_queue"])
    user = AgentProfileFactory(user__username="pia", presence=AgentProfile.Presence.ONLINE).user
    queue.members.add(user)
    return user


def test_next_takes_from_a_pull_queue_only_on_post(client, desk, pull_agent):
    waiting = ticket_from(desk.web)
    assert waiting.assignee_id is None
    client.force_login(pull_agent)
    response = client.get("/desk/next", follow=True)
    assert "Nothing assigned to you. Take the next ticket of your queue." in response.content.decode()
    assert Ticket.objects.get(pk=waiting.pk).assignee_id is None  # GET writes nothing
    assert "Take next ticket" in response.content.decode()
    response = client.post("/desk/next")
    assert response.headers["Location"] == f"/desk/tickets/{waiting.pk}/"
    assert Ticket.objects.get(pk=waiting.pk).assignee_id == pull_agent.pk


def test_next_tells_why_it_cannot_take(client, desk, pull_agent):
    ticket_from(desk.web)
    AgentProfile.objects.filter(user=pull_agent).update(presence=AgentProfile.Presence.AWAY)
    client.force_login(pull_agent)
    response = client.post("/desk/next", follow=True)
    assert '<p class="notice error">Set yourself online to take tickets.</p>' in response.content.decode()


def test_next_needs_a_login_and_get_or_post(client, desk):
    assert client.get("/desk/next").status_code == 302
    client.force_login(desk.anna)
    assert client.put("/desk/next").status_code == 405
