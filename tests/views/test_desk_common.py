"""What every desk page shares: security headers, the agent's language, safe social text."""

from datetime import timedelta

import pytest
from django.utils import timezone

from inbox.models import AgentProfile
from inbox.templatetags.desk import bidi, sla_clock, social_text
from tests.factories import AgentProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent():
    return AgentProfileFactory(user__username="sanne").user


def test_every_page_carries_a_content_security_policy_without_inline_scripts(client, agent):
    client.force_login(agent)
    response = client.get("/login/")
    policy = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    assert directives["script-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_agents_profile_language_wins_over_the_browser(client, agent):
    AgentProfile.objects.filter(user=agent).update(ui_language="nl")
    client.force_login(agent)
    response = client.get("/login/", headers={"accept-language": "en"})
    assert response.headers["Content-Language"] == "nl"
    assert "Inloggen" in response.content.decode()


def test_language_switch_is_stored_on_the_profile(client, agent):
    client.force_login(agent)
    response = client.post("/desk/language", {"language": "nl", "next": "/login/"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login/"
    assert AgentProfile.objects.get(user=agent).ui_language == "nl"


def test_language_switch_rejects_unknown_languages_and_foreign_redirects(client, agent):
    client.force_login(agent)
    assert client.post("/desk/language", {"language": "xx"}).status_code == 400
    assert AgentProfile.objects.get(user=agent).ui_language == "en"
    response = client.post("/desk/language", {"language": "nl", "next": "https://evil.example/"})
    assert response.headers["Location"] == "/"


def test_language_switch_needs_a_post_and_a_login(client, agent):
    assert client.post("/desk/language", {"language": "nl"}).status_code == 302  # to the login page
    client.force_login(agent)
    assert client.get("/desk/language").status_code == 405


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;"),
        ('"><img src=x onerror=alert(1)>', "\"&gt;&lt;img src=x onerror=alert(1)&gt;"),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ("a\nb", "a<br>b"),
        ("مرحبا 👋🏽 \u200b", "مرحبا 👋🏽 \u200b"),
        (None, ""),
    ],
)
def test_social_text_is_escaped(text, expected):
    assert social_text(text) == expected


def test_social_text_links_only_http_and_opens_them_safely():
    html = social_text("see https://klm.com/a?b=1&c=2 now")
    assert html == (
        'see <a href="https://klm.com/a?b=1&amp;c=2" target="_blank" '
        'rel="noopener noreferrer nofollow ugc">https://klm.com/a?b=1&amp;c=2</a> now'
    )
    assert "<a" not in social_text("data:text/html,<b>x</b> and javascript://%0aalert(1)")


def test_bidi_isolates_and_escapes_names():
    assert bidi("<b>ليلى</b>") == "<bdi>&lt;b&gt;ليلى&lt;/b&gt;</bdi>"


class _Ticket:
    def __init__(self, **fields):
        defaults = {"status": "open", "first_response_at": None, "first_response_due_at": None,
                    "next_response_due_at": None, "resolution_due_at": None, "sla_state": ""}
        self.__dict__.update(defaults | fields)


def test_sla_clock_shows_the_nearest_open_target_and_its_state():
    now = timezone.now()
    first = now + timedelta(minutes=30)
    clock = sla_clock(_Ticket(first_response_due_at=first, resolution_due_at=now + timedelta(days=1),
                              sla_state="at_risk"), now)
    assert (clock["due"], clock["state"], clock["paused"]) == (first, "at_risk", False)
    answered = _Ticket(first_response_at=now, first_response_due_at=first,
                       next_response_due_at=now + timedelta(hours=2), sla_state="ok")
    assert sla_clock(answered, now)["due"] == now + timedelta(hours=2)


def test_sla_clock_is_red_once_due_and_paused_while_pending():
    now = timezone.now()
    late = _Ticket(first_response_due_at=now - timedelta(minutes=1), sla_state="ok")
    assert sla_clock(late, now)["state"] == "breached"
    pending = _Ticket(status="pending", first_response_due_at=now + timedelta(hours=1))
    assert sla_clock(pending, now) | {"ticket": None} == {"due": None, "state": "", "paused": True,
                                                           "ticket": None}


def test_agent_sets_themselves_away_from_the_top_bar(client, agent, redis_client):
    client.force_login(agent)
    response = client.post("/desk/presence", {"presence": "away"}, headers={"x-requested-with": "fetch"})
    assert response.status_code == 200
    assert redis_client.get(f"webcare:presence:manual:{agent.pk}") == b"away"
    assert client.post("/desk/presence", {"presence": "lunch"}).status_code == 400
    assert client.post("/desk/presence", {"presence": "online", "next": "/login/"}).headers["Location"] == "/login/"
    assert redis_client.get(f"webcare:presence:manual:{agent.pk}") is None
