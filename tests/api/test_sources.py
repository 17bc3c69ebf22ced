"""REST: sources (leads only), secrets write-only, health shown, poll now."""

from __future__ import annotations

import json
import logging

import pytest
from rest_framework.test import APIClient

from inbox.models import Source, TicketEvent
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory

pytestmark = pytest.mark.django_db

SOURCES = "/api/v1/sources/"
TOKEN = "mastodon-token-do-not-leak"


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def lead_api(db):
    return client_for(AgentProfileFactory(user__username="lea", role="lead").user)


@pytest.fixture
def agent_api(db):
    return client_for(AgentProfileFactory(user__username="anna").user)


def test_agents_may_not_see_or_connect_sources(agent_api):
    SourceFactory(name="brand")
    assert agent_api.get(SOURCES).status_code == 403
    assert agent_api.post(SOURCES, {"name": "x", "platform": "mastodon"}, format="json").status_code == 403


def test_a_lead_connects_a_source_and_its_secrets_never_come_back(lead_api, caplog):
    queue = QueueFactory(name="Care", slug="care")
    caplog.set_level(logging.DEBUG)
    response = lead_api.post(SOURCES, {
        "name": "KLM on Mastodon", "platform": "mastodon", "config": {"instance_url": "https://mastodon.social"},
        "secrets": {"access_token": TOKEN}, "account_id": "109", "default_queue": queue.pk,
        "poll_interval_seconds": 30,
    }, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert "secrets" not in body
    assert body["secret_names"] == ["access_token"]
    assert (body["platform"], body["default_queue"], body["enabled"], body["needs_reauth"]) == (
        "mastodon", queue.pk, True, False)
    source = Source.objects.get(pk=body["id"])
    assert source.secrets == {"access_token": TOKEN}
    assert source.next_poll_at is not None  # polling starts at once
    for read in (lead_api.get(SOURCES), lead_api.get(f"{SOURCES}{source.pk}/")):
        assert TOKEN not in read.content.decode()
    event = TicketEvent.objects.get(type="source.created")
    assert TOKEN not in json.dumps(event.payload)
    assert TOKEN not in caplog.text


def test_bad_sources_are_refused_with_the_reason(lead_api):
    SourceFactory(name="taken")
    cases = [
        ({"name": "taken", "platform": "mastodon"}, "name"),
        ({"name": "a", "platform": "myspace"}, "platform"),
        ({"name": "b", "platform": "mastodon", "config": ["not", "an", "object"]}, "non_field_errors"),
        ({"name": "c", "platform": "mastodon", "poll_interval_seconds": 1}, "non_field_errors"),
        ({"name": "d", "platform": "import"}, "non_field_errors"),
    ]
    for payload, field in cases:
        response = lead_api.post(SOURCES, payload, format="json")
        assert response.status_code == 400, payload
        assert field in response.json(), (payload, response.json())
    assert Source.objects.count() == 1


def test_new_secrets_replace_the_old_ones_and_clear_needs_reauth(lead_api):
    source = SourceFactory(name="x", platform="x", secrets={"access_token": "old"}, needs_reauth=True,
                           consecutive_failures=4, enabled=True)
    response = lead_api.patch(f"{SOURCES}{source.pk}/", {"secrets": {"access_token": "new"}}, format="json")
    assert response.status_code == 200, response.content
    source.refresh_from_db()
    assert (source.secrets, source.needs_reauth, source.consecutive_failures) == ({"access_token": "new"}, False, 0)
    event = TicketEvent.objects.get(type="source.updated")
    assert event.payload == {"source_id": source.pk, "source": "x",
                             "changed": ["consecutive_failures", "needs_reauth", "secrets"]}


def test_editing_keeps_secrets_unless_given_and_the_platform_is_fixed(lead_api):
    source = SourceFactory(name="x", platform="x", secrets={"access_token": "keep"})
    response = lead_api.patch(f"{SOURCES}{source.pk}/", {"enabled": False, "config": {"api_base": "http://h"}},
                              format="json")
    assert response.status_code == 200
    source.refresh_from_db()
    assert (source.enabled, source.config, source.secrets) == (False, {"api_base": "http://h"},
                                                              {"access_token": "keep"})
    response = lead_api.patch(f"{SOURCES}{source.pk}/", {"platform": "mastodon"}, format="json")
    assert response.status_code == 400
    assert Source.objects.get(pk=source.pk).platform == "x"


def test_health_is_shown(lead_api):
    source = SourceFactory(name="h", last_error="429 rate limited", consecutive_failures=2, needs_reauth=True,
                           lag_seconds=12.5)
    body = lead_api.get(f"{SOURCES}{source.pk}/").json()
    assert (body["last_error"], body["consecutive_failures"], body["needs_reauth"], body["lag_seconds"]) == (
        "429 rate limited", 2, True, 12.5)


def test_poll_now_queues_a_poll_or_says_why_not(lead_api, monkeypatch, django_capture_on_commit_callbacks):
    from inbox.tasks import polling

    queued: list[int] = []
    monkeypatch.setattr(polling.poll_source, "delay", queued.append)
    source = SourceFactory(name="p", enabled=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = lead_api.post(f"{SOURCES}{source.pk}/poll-now/")
    assert response.status_code == 202
    assert queued == [source.pk]

    Source.objects.filter(pk=source.pk).update(needs_reauth=True)
    response = lead_api.post(f"{SOURCES}{source.pk}/poll-now/")
    assert (response.status_code, response.json()["detail"]) == (
        409, "the source needs re-authorization: give it new credentials first")
    Source.objects.filter(pk=source.pk).update(needs_reauth=False, enabled=False)
    assert lead_api.post(f"{SOURCES}{source.pk}/poll-now/").json()["detail"] == "the source is disabled"
    assert lead_api.post(f"{SOURCES}999999/poll-now/").status_code == 404
    assert queued == [source.pk]


def test_admin_polls_the_selected_sources_now(client, monkeypatch, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    from inbox.tasks import polling

    queued: list[int] = []
    monkeypatch.setattr(polling.poll_source, "delay", queued.append)
    admin_user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin_user)
    ok, stuck = SourceFactory(name="ok"), SourceFactory(name="stuck", needs_reauth=True)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/admin/inbox/source/", {"action": "poll_now", "_selected_action": [ok.pk, stuck.pk]},
                               follow=True)
    assert queued == [ok.pk]
    notes = [str(m) for m in response.context["messages"]]
    assert "ok: poll queued." in notes
    assert "stuck: the source needs re-authorization: give it new credentials first" in notes


# --- Profile note ----------------------------------------------------------------------------


class _NoteConnector:
    """Stands in for a platform: records the note, or raises what the test asks for."""

    platform = "notetest"
    notes: list[str] = []
    raise_error: Exception | None = None

    def __init__(self, source) -> None:
        self.source = source
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.closed = True

    def update_profile_note(self, text: str) -> None:
        if self.raise_error is not None:
            raise self.raise_error
        self.notes.append(text)


@pytest.fixture
def note_source(db, monkeypatch):
    from inbox.connectors import registry

    registry._registry()
    _NoteConnector.notes = []
    _NoteConnector.raise_error = None
    monkeypatch.setitem(registry._REGISTRY, "notetest", _NoteConnector)
    return SourceFactory(name="notes", platform="notetest")


def note_url(source) -> str:
    return f"/api/v1/sources/{source.pk}/profile-note/"


def test_a_lead_sets_the_profile_note(lead_api, note_source):
    text = "We answer within 15 minutes, 24/7 ✈️ — ‏ישראל‏"
    response = lead_api.post(note_url(note_source), {"text": text}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["id"] == note_source.pk
    assert _NoteConnector.notes == [text]
    event = TicketEvent.objects.get(type="source.profile_note_updated")
    assert event.payload == {"source_id": note_source.pk, "source": "notes", "length": len(text)}


@pytest.mark.parametrize(
    ("error", "status", "reason"),
    [
        ("not_supported", 501, "has no profile note"),
        ("refused", 502, "500 characters"),
        ("auth", 502, "credentials refused"),
        ("later", 503, "rate limited"),
    ],
)
def test_profile_note_errors_say_why(lead_api, note_source, error, status, reason):
    from inbox.connectors.base import AuthenticationFailed, NotSupported, PermanentError, RateLimited

    _NoteConnector.raise_error = {
        "not_supported": NotSupported("notetest has no profile note the desk can set"),
        "refused": PermanentError("422 Validation failed: Note is too long (maximum is 500 characters)"),
        "auth": AuthenticationFailed("401 The access token is invalid"),
        "later": RateLimited("rate limited: 429", retry_after=30),
    }[error]

    response = lead_api.post(note_url(note_source), {"text": "x" * 600}, format="json")

    assert response.status_code == status
    assert reason in response.json()["detail"]
    note_source.refresh_from_db()
    assert note_source.needs_reauth == (error == "auth")
    assert not TicketEvent.objects.filter(type="source.profile_note_updated").exists()


def test_profile_note_needs_text_an_enabled_source_and_a_lead(lead_api, agent_api, note_source):
    assert lead_api.post(note_url(note_source), {}, format="json").status_code == 400
    assert agent_api.post(note_url(note_source), {"text": "hi"}, format="json").status_code == 403
    note_source.enabled = False
    note_source.save()
    response = lead_api.post(note_url(note_source), {"text": "hi"}, format="json")
    assert (response.status_code, response.json()["detail"]) == (409, "the source is disabled")
    assert _NoteConnector.notes == []


def test_profile_note_through_the_api_lands_on_a_mastodon_instance(lead_api, default_queue):
    from tests.connectors.fake_mastodon import BRAND_ID, TOKEN, FakeMastodonServer

    with FakeMastodonServer() as fake:
        source = SourceFactory(name="mastodon", platform="mastodon", account_id=BRAND_ID,
                               default_queue=default_queue, config={"instance_url": fake.url},
                               secrets={"access_token": TOKEN})
        ok = lead_api.post(note_url(source), {"text": "We answer within 12 minutes 🛫"}, format="json")
        too_long = lead_api.post(note_url(source), {"text": "x" * 501}, format="json")

        assert ok.status_code == 200
        assert fake.brand_source["note"] == "We answer within 12 minutes 🛫"
        assert too_long.status_code == 502
        assert too_long.json()["detail"] == "422 Validation failed: Note character limit of 500 exceeded"
