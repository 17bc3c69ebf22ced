"""``manage.py seed_demo``: the demo desk, created once, never duplicated, passwords respected."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from inbox.models import AgentProfile, Queue, ReplyTemplate, ReplyTemplateVariant, SlaPolicy, Source
from inbox.services.demo import DEMO_LANGUAGES, TEMPLATES, demo_seed
from tests.factories import QueueFactory

pytestmark = pytest.mark.django_db

User = get_user_model()
DEMO_USERS = {"lead", "anna", "pierre", "jonas", "lucia"}
VARIABLE = re.compile(r"\{(\w+)\}")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "queues": Queue.objects.count(),
        "users": User.objects.count(),
        "profiles": AgentProfile.objects.count(),
        "memberships": Queue.members.through.objects.count(),
        "templates": ReplyTemplate.objects.count(),
        "variants": ReplyTemplateVariant.objects.count(),
        "sources": Source.objects.count(),
        "sla policies": SlaPolicy.objects.count(),
    }


def snapshot() -> dict[str, list[dict]]:
    """Every seeded row, to prove a second run changes nothing at all."""
    return {
        "queues": list(Queue.objects.order_by("pk").values()),
        "users": list(User.objects.order_by("pk").values()),
        "profiles": list(AgentProfile.objects.order_by("pk").values()),
        "memberships": list(Queue.members.through.objects.order_by("pk").values()),
        "templates": list(ReplyTemplate.objects.order_by("pk").values()),
        "variants": list(ReplyTemplateVariant.objects.order_by("pk").values()),
        "sources": list(Source.objects.order_by("pk").values()),
        "sla policies": list(SlaPolicy.objects.order_by("pk").values()),
    }


def test_first_run_creates_the_demo_desk():
    output = seed()

    assert counts() == {
        "queues": 2,
        "users": 5,
        "profiles": 5,
        "memberships": 8,
        "templates": 6,
        "variants": 30,
        "sources": 1,
        "sla policies": 1,
    }
    policy = SlaPolicy.objects.get()
    assert (policy.queue, policy.first_response_minutes, policy.next_response_minutes, policy.resolution_minutes) == (
        None, 60, 60, 1440)
    care, baggage = Queue.objects.get(slug="care"), Queue.objects.get(slug="baggage")
    assert (care.name, care.is_default) == ("Care", True)
    assert (baggage.name, baggage.is_default) == ("Baggage & Refunds", False)
    assert set(User.objects.values_list("username", flat=True)) == DEMO_USERS
    assert "Demo-only data" in output
    assert "Demo logins:" in output
    assert "webcare-demo" in output


def test_team_has_a_staff_lead_and_agents_with_their_languages():
    seed()

    profiles = {
        p.user.username: (p.role, p.languages, p.user.is_staff)
        for p in AgentProfile.objects.select_related("user")
    }
    assert profiles == {
        "lead": (AgentProfile.Role.LEAD, ["nl", "en"], True),
        "anna": (AgentProfile.Role.AGENT, ["nl", "en"], False),
        "pierre": (AgentProfile.Role.AGENT, ["fr", "en"], False),
        "jonas": (AgentProfile.Role.AGENT, ["de", "nl", "en"], False),
        "lucia": (AgentProfile.Role.AGENT, ["es", "en"], False),
    }
    assert all(user.first_name and user.last_name for user in User.objects.all())
    members = {q.slug: {u.username for u in q.members.all()} for q in Queue.objects.all()}
    assert members == {
        "care": {"lead", "anna", "pierre", "jonas"},
        "baggage": {"lead", "pierre", "jonas", "lucia"},
    }


def test_demo_source_streams_into_care():
    seed()

    source = Source.objects.get()
    assert (source.name, source.platform, source.account_id) == ("Demo stream", "simulated", "demo-brand")
    assert source.default_queue == Queue.objects.get(slug="care")
    assert source.poll_interval_seconds == 5
    assert source.config == {"seed": 2010, "rate_per_minute": 20, "max_batch": 50}
    assert source.secrets == {}


def test_every_template_has_all_five_languages_with_the_same_variables():
    seed()

    assert ReplyTemplate.objects.count() == len(TEMPLATES) >= 6
    for template in ReplyTemplate.objects.prefetch_related("variants"):
        bodies = {v.language: v.body for v in template.variants.all()}
        assert sorted(bodies) == sorted(DEMO_LANGUAGES), template.shortcut
        variables = {language: set(VARIABLE.findall(body)) for language, body in bodies.items()}
        assert len({frozenset(v) for v in variables.values()}) == 1, template.shortcut
        assert variables["en"] <= {"customer_name", "agent_first_name", "ticket_number"}
        assert "customer_name" in variables["en"]


def test_second_run_creates_nothing_and_changes_nothing():
    seed()
    before_counts, before_rows = counts(), snapshot()

    output = seed()
    result = demo_seed(password="webcare-demo")

    assert counts() == before_counts
    assert snapshot() == before_rows
    assert result.created == {}
    assert result.passwords_set == []
    assert "Created: none" in output
    assert "nothing to create" in output


def test_demo_users_log_in_with_the_given_password():
    seed("--password", "s3cret-demo-pw")

    for username in DEMO_USERS:
        assert authenticate(username=username, password="s3cret-demo-pw") is not None, username
        assert authenticate(username=username, password="webcare-demo") is None


def test_password_comes_from_the_environment_and_is_not_echoed(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "from-env-pw")

    output = seed()

    assert authenticate(username="anna", password="from-env-pw") is not None
    assert "from-env-pw" not in output


def test_default_password_lets_the_lead_into_the_admin(client):
    seed()

    assert client.login(username="lead", password="webcare-demo")
    assert client.get("/admin/").status_code == 200


def test_rerun_keeps_passwords_users_changed_unless_reset_is_asked():
    seed()
    anna = User.objects.get(username="anna")
    anna.set_password("annas-own")
    anna.save(update_fields=["password"])

    seed()
    assert authenticate(username="anna", password="annas-own") is not None

    output = seed("--reset-passwords")
    assert authenticate(username="anna", password="annas-own") is None
    assert authenticate(username="anna", password="webcare-demo") is not None
    assert "Password set for lead, anna, pierre, jonas, lucia" in output
    assert counts()["users"] == 5


def test_seed_without_password_creates_users_that_cannot_log_in():
    result = demo_seed(password=None)

    assert result.passwords_set == []
    assert not any(user.has_usable_password() for user in User.objects.all())


def test_an_existing_default_queue_keeps_its_flag():
    general = QueueFactory(name="General", slug="general", is_default=True)

    result = demo_seed(password="webcare-demo")

    assert list(Queue.objects.filter(is_default=True)) == [general]
    assert Source.objects.get().default_queue.slug == "care"
    assert result.notes == ["Care is not the default queue: General already is."]
