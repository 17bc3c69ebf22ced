"""socket.js and collision.js in Debian's chromium against the real ASGI server.

The page under test is a small probe page served into the desk server's origin (so the
session cookie and the origin check apply as on any desk page), with the desk's
Content-Security-Policy; it loads the real static scripts from the server. It depends on
no other desk page, so it checks exactly the live-update client.
"""

from __future__ import annotations

import json

import pytest
from django.utils.html import escape
from playwright.sync_api import Page, expect

from inbox.models import Ticket, TicketEvent
from inbox.selectors.realtime import last_event_id
from inbox.services.ingest import ingest_batch
from tests.browser import conftest as browser_conftest
from tests.browser.threads import off_loop
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, inbound

# The browser suite's fixtures (uvicorn on the test database, chromium, signed-in pages),
# made visible to this module: its conftest only serves tests/browser/.
browser = browser_conftest.browser
desk_server = browser_conftest.desk_server
open_contexts = browser_conftest.open_contexts
new_page = browser_conftest.new_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROBE_PATH = "/__realtime_probe__/"

# Recorders for the DOM events, installed before any page script runs (not subject to the CSP).
RECORDERS = """
window.__desk = {events: [], batches: [], states: [], resets: 0, collisions: [], errors: []};
document.addEventListener("desk:events", (e) => {
  window.__desk.batches.push({ids: e.detail.events.map((x) => x.id), catchup: e.detail.catchup});
  window.__desk.events.push(...e.detail.events);
});
document.addEventListener("desk:connection", (e) => window.__desk.states.push(e.detail.state));
document.addEventListener("desk:reset", () => { window.__desk.resets += 1; });
document.addEventListener("desk:collision", (e) => window.__desk.collisions.push(e.detail));
document.addEventListener("desk:error", (e) => window.__desk.errors.push(e.detail));
"""


def ingest(**kwargs) -> None:
    off_loop(ingest_batch, **kwargs)


def probe_html(*, user, last_id: int, watch: int | None, show: int | None, i18n: dict | None = None) -> str:
    i18n_attrs = "".join(f' data-i18n-{k}="{escape(v)}"' for k, v in (i18n or {}).items())
    watched = (
        f'<section data-watch-ticket="{watch}"><label for="c">Reply</label>'
        f'<form><textarea id="c" data-composer></textarea><button type="submit">Send</button></form></section>'
        if watch else ""
    )  # fmt: skip
    shown = f'<p>Ticket {show}: <span data-viewers-for="{show}" aria-live="polite"></span></p>' if show else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>probe</title></head>
<body data-user-id="{user.pk}" data-last-event-id="{last_id}" data-ws-path="/ws/desk/"{i18n_attrs}>
<span class="connection" data-connection-status="connecting" role="status" aria-live="polite"
  data-label-live="Verbonden" data-label-offline="Offline"><span class="label">Connecting…</span></span>
{watched}{shown}
<script src="/static/js/desk/socket.js" defer></script>
<script src="/static/js/desk/collision.js" defer></script>
</body></html>"""


@pytest.fixture
def probe(new_page, desk_server):
    """``probe(user, watch=ticket id | None, show=ticket id | None, last_id=..., i18n=...)``."""

    def make(user, **kwargs) -> Page:
        page = new_page(user)
        # The probe is served by the test (page.route), which Chromium's Local Network Access
        # checks treat as a public page talking to loopback; a real desk page is local already.
        page.context.grant_permissions(["local-network-access"], origin=desk_server)
        html = probe_html(user=user, last_id=kwargs.pop("last_id", last_event_id()), **kwargs)
        page.add_init_script(RECORDERS)
        page.route(
            f"**{PROBE_PATH}",
            lambda route: route.fulfill(
                status=200, content_type="text/html; charset=utf-8", body=html,
                headers={"Content-Security-Policy": "default-src 'self'; script-src 'self'; connect-src 'self'"},
            ),
        )  # fmt: skip
        page.goto(PROBE_PATH)
        return page

    return make


def desk(page: Page) -> dict:
    return page.evaluate("window.__desk")


def wait_live(page: Page) -> None:
    page.wait_for_function("() => window.DeskSocket && window.DeskSocket.state === 'live'")


@pytest.fixture
def care(db, redis_client):
    return QueueFactory(name="Care", slug="care", assignment_mode="pull")


def agent_of(queue, username: str, first_name: str):
    user = AgentProfileFactory(user__username=username, user__first_name=first_name).user
    queue.members.add(user)
    return user


def test_live_events_then_a_dropped_connection_catches_up_without_missing_or_repeating(probe, care):
    anna = agent_of(care, "anna", "Anna")
    source = SourceFactory(name="care-src", default_queue=care)
    page = probe(anna, watch=None, show=None)
    wait_live(page)
    status = page.locator("[data-connection-status]")
    expect(status).to_have_attribute("data-connection-status", "live")
    expect(status.locator(".label")).to_have_text("Verbonden")  # the page's translated label

    ingest(source=source, messages=[inbound("c1", author="carla")])
    page.wait_for_function("() => window.__desk.events.length >= 2")

    # The network goes away: the browser says so, the socket drops, reconnecting fails.
    page.context.set_offline(True)
    page.wait_for_function("() => window.DeskSocket.state !== 'live'")
    ingest(source=source, messages=[inbound("c2", author="chris")])  # pushed to nobody
    page.context.set_offline(False)  # "online": reconnect at once, resume, catch up
    page.wait_for_function("() => window.__desk.events.length >= 4", timeout=20_000)
    wait_live(page)

    recorded = desk(page)
    expected = list(TicketEvent.objects.filter(queue=care).order_by("id").values_list("id", "type"))
    assert [(e["id"], e["type"]) for e in recorded["events"]] == expected  # none missed, none twice
    assert len(expected) == 4
    c2 = Ticket.objects.get(messages__external_id="c2")
    caught_up = [b for b in recorded["batches"] if b["catchup"]]
    assert caught_up and caught_up[-1]["ids"][-2:] == [i for i, _ in expected[2:]]
    assert {e["ticket_id"] for e in recorded["events"][2:]} == {c2.pk}
    assert "offline" in recorded["states"] and recorded["states"][-1] == "live"
    assert recorded["resets"] == 0
    expect(status).to_have_attribute("data-connection-status", "live")
    assert page.evaluate("window.DeskSocket.lastEventId") >= expected[-1][0]


def test_drop_reconnects_by_itself_and_resumes(probe, care):
    anna = agent_of(care, "anna", "Anna")
    source = SourceFactory(name="care-src", default_queue=care)
    page = probe(anna, watch=None, show=None)
    wait_live(page)
    page.evaluate("window.DeskSocket.drop()")
    ingest(source=source, messages=[inbound("c1", author="carla")])
    page.wait_for_function("() => window.__desk.events.length >= 2", timeout=20_000)
    wait_live(page)
    assert [e["type"] for e in desk(page)["events"]] == ["ticket.created", "message.created"]


def test_a_page_rendered_too_long_ago_is_reset(probe, care):
    """A page whose position is ahead of the log (rendered from another database, e.g. before
    a restore) is reset to the server's position.

    The position must really be ahead of every id the log will have when the page resumes:
    ids are never reused (SQLite AUTOINCREMENT, PostgreSQL sequences), so after earlier tests
    flushed the table, ``last_event_id()`` of an empty log is 0 while the next id can be in
    the thousands, and the connection itself logs its agent's ``presence.changed`` before it
    resumes. An event written first makes ``last_event_id()`` the id high-water mark.
    """
    anna = agent_of(care, "anna", "Anna")
    other = QueueFactory(name="Other", slug="other")
    ingest(source=SourceFactory(name="other-src", default_queue=other), messages=[inbound("o1")])
    ahead = last_event_id() + 500
    page = probe(anna, watch=None, show=None, last_id=ahead)
    wait_live(page)  # the server does not know that position: it resets the page
    page.wait_for_function("() => window.__desk.resets === 1")
    recorded = desk(page)
    assert recorded["resets"] == 1
    assert recorded["events"] == []
    assert page.evaluate("window.DeskSocket.lastEventId") == last_event_id() < ahead


def test_viewing_and_typing_show_on_the_other_agents_page(probe, care):
    anna = agent_of(care, "anna", "Anna")
    pierre = agent_of(care, "pierre", "Pierre")
    ingest(source=SourceFactory(name="care-src", default_queue=care), messages=[inbound("c1")])
    ticket = Ticket.objects.get(queue=care)

    watcher = probe(pierre, watch=None, show=ticket.pk,
                         i18n={"viewing": "{name} bekijkt", "typing": "{name} typt…"})  # fmt: skip
    wait_live(watcher)
    viewers = watcher.locator(f'[data-viewers-for="{ticket.pk}"]')

    writer = probe(anna, watch=ticket.pk, show=ticket.pk)
    expect(viewers).to_have_text("Anna bekijkt")
    expect(viewers).to_have_attribute("data-viewer-count", "1")
    # Anna's own page leaves her out.
    expect(writer.locator(f'[data-viewers-for="{ticket.pk}"]')).to_have_attribute("data-viewer-count", "0")

    writer.locator("textarea[data-composer]").press_sequentially("Hello there", delay=20)
    expect(viewers).to_have_text("Anna typt…")
    expect(viewers).to_contain_class("typing has-viewers")
    expect(viewers.locator(".viewer.typing")).to_have_count(1)
    writer.locator("textarea[data-composer]").blur()  # leaving the field ends typing
    expect(viewers).to_have_text("Anna bekijkt")
    expect(viewers).to_contain_class("has-viewers")
    expect(viewers).not_to_contain_class("typing")

    writer.close()  # pagehide: unwatch
    expect(viewers).to_have_text("")
    expect(viewers).to_have_attribute("data-viewer-count", "0")
    versions = [c["version"] for c in desk(watcher)["collisions"]]
    assert versions == sorted(set(versions))


def test_names_are_rendered_as_text(probe, care):
    hostile = AgentProfileFactory(
        user__username="mallory", user__first_name='<img src=x onerror="window.__pwned=1">', user__last_name="$&"
    ).user
    care.members.add(hostile)
    pierre = agent_of(care, "pierre", "Pierre")
    ingest(source=SourceFactory(name="care-src", default_queue=care), messages=[inbound("c1")])
    ticket = Ticket.objects.get(queue=care)

    watcher = probe(pierre, watch=None, show=ticket.pk)
    wait_live(watcher)
    probe(hostile, watch=ticket.pk, show=None)
    viewers = watcher.locator(f'[data-viewers-for="{ticket.pk}"]')
    expect(viewers).to_have_text('<img src=x onerror="window.__pwned=1"> $& viewing')
    assert viewers.locator("img").count() == 0
    assert watcher.evaluate("window.__pwned") is None


def test_watching_an_invisible_ticket_is_reported_not_shown(probe, care):
    anna = agent_of(care, "anna", "Anna")
    other = QueueFactory(name="Other", slug="other")
    ingest(source=SourceFactory(name="other-src", default_queue=other), messages=[inbound("o1")])
    ticket = Ticket.objects.get(queue=other)
    page = probe(anna, watch=ticket.pk, show=None)
    page.wait_for_function("() => window.__desk.errors.length === 1")
    assert json.loads(json.dumps(desk(page)["errors"])) == [
        {"type": "error", "code": "forbidden", "message": "you may not see this ticket", "ticket_id": ticket.pk}
    ]
