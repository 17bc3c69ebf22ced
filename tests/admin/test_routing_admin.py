"""Routing rules in the Django admin: saved through the services, checked, and the "Try it" page."""

from __future__ import annotations

from datetime import time

import pytest
from django.urls import reverse

from inbox.models import RoutingRule, TicketEvent
from inbox.selectors.routing import forget_compiled_rules
from tests.factories import QueueFactory, SourceFactory
from tests.routing.factories import RoutingRuleFactory

pytestmark = pytest.mark.django_db

TRY = reverse("admin:inbox_routingrule_try")
ADD = reverse("admin:inbox_routingrule_add")
CHANGELIST = reverse("admin:inbox_routingrule_changelist")


@pytest.fixture(autouse=True)
def fresh_process(redis_client, settings):
    settings.WEBCARE = {**settings.WEBCARE, "ROUTING_RULES_CHECK_SECONDS": 0.0}
    forget_compiled_rules()
    yield
    forget_compiled_rules()


def rule_form(**changes) -> dict:
    form = {
        "name": "Press",
        "position": "10",
        "enabled": "on",
        "visibility": "",
        "keywords": "journalist\npress office",
        "text_regex": "",
        "verified": "unknown",
        "vip": "unknown",
        "has_open_ticket": "unknown",
        "add_tags": "press, media",
        "set_priority": "2",
    }
    form.update(changes)
    return form


def test_the_changelist_links_to_try_it(admin_client):
    page = admin_client.get(CHANGELIST).content.decode()
    assert f'href="{TRY}"' in page


def test_try_it_shows_the_matching_rule_and_why_the_others_did_not_match(admin_client, default_queue):
    press = QueueFactory(name="Press desk")
    RoutingRuleFactory(name="French only", position=10, languages=["fr"], queue=QueueFactory(name="France"))
    matching = RoutingRuleFactory(
        name="Journalists", position=20, keywords="journalist", queue=press, set_priority=3
    )
    source = SourceFactory(name="x-main", platform="x", default_queue=default_queue)

    response = admin_client.post(
        TRY,
        {
            "text": "I am a journalist, where is my bag?",
            "source": source.pk,
            "is_public": "on",
            "language": "",
        },
    )

    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.language == "en"
    assert (preview.decision.queue_id, preview.decision.rule_ids, preview.decision.priority) == (
        press.pk,
        (matching.pk,),
        3,
    )
    page = response.content.decode()
    assert '<td id="routing-try-queue">Press desk</td>' in page
    assert f'<td id="routing-try-reason">rule #{matching.pk} &quot;Journalists&quot;</td>' in page
    assert "<strong>matched</strong>" in page
    assert "<code>languages</code>: language “en” is not one of fr" in page
    assert TicketEvent.objects.count() == 0


def test_try_it_escapes_hostile_text(admin_client):
    RoutingRuleFactory(
        name='<img src=x onerror="alert(1)">', keywords="<script>", queue=QueueFactory(name="<b>Q</b>")
    )

    response = admin_client.post(
        TRY, {"text": "<script>alert('x')</script> where is my bag", "is_public": "on"}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert" not in page
    assert '<img src=x onerror="alert(1)">' not in page
    assert "<b>Q</b>" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "&lt;b&gt;Q&lt;/b&gt;" in page


def test_try_it_without_text_shows_the_form_error(admin_client):
    response = admin_client.post(TRY, {"text": ""})

    assert response.status_code == 200
    assert response.context["preview"] is None
    assert response.context["form"].errors == {"text": ["This field is required."]}


def test_try_it_needs_admin_access(client):
    response = client.get(TRY)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_adding_a_rule_goes_through_the_service(admin_client, admin_user):
    source = SourceFactory()

    response = admin_client.post(
        ADD,
        rule_form(
            sources=[source.pk], platforms=["x", "facebook"], languages=["nl"], active_weekdays=["4", "5"]
        ),
    )

    assert response.status_code == 302
    rule = RoutingRule.objects.get()
    assert (rule.name, rule.keywords, rule.add_tags, rule.set_priority) == (
        "Press", "journalist\npress office", ["press", "media"], 2,
    )  # fmt: skip
    assert (rule.platforms, rule.languages, rule.active_weekdays) == (["x", "facebook"], ["nl"], [4, 5])
    assert list(rule.sources.values_list("pk", flat=True)) == [source.pk]
    assert list(TicketEvent.objects.values_list("type", "actor_id")) == [
        ("routing_rule.created", admin_user.pk)
    ]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        (
            {"text_regex": "(unclosed"},
            "text_regex",
            "Not a valid regular expression: missing ) at position 9.",
        ),
        (
            {"active_from": "08:00", "active_until": "08:00"},
            "active_until",
            "The window is empty: from and until are the same time.",
        ),
        (
            {"sentiment_below": "-0.5", "sentiment_above": "0.5"},
            "sentiment_below",
            "Sentiment below -0.5 and above 0.5 can never both hold.",
        ),
    ],
)
def test_an_invalid_rule_is_shown_back_with_a_precise_error(admin_client, changes, field, message):
    response = admin_client.post(ADD, rule_form(**changes))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {field: [message]}
    assert RoutingRule.objects.count() == 0


def test_changing_a_rule_names_the_changed_fields_in_the_event(admin_client):
    rule = RoutingRuleFactory(
        name="Press", position=10, keywords="journalist", add_tags=["press"], set_priority=2
    )

    response = admin_client.post(
        reverse("admin:inbox_routingrule_change", args=[rule.pk]),
        rule_form(
            keywords="journalist\nreporter", add_tags="press", active_from="22:00", active_until="06:00"
        ),
    )

    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.keywords, rule.active_from, rule.active_until) == ("journalist\nreporter", time(22), time(6))
    assert [e.payload["changed"] for e in TicketEvent.objects.all()] == [
        ["active_from", "active_until", "keywords"]
    ]


def test_positions_edited_in_the_list_go_through_the_service(admin_client):
    a, b = RoutingRuleFactory(position=10), RoutingRuleFactory(position=20)

    response = admin_client.post(
        CHANGELIST,
        {
            "form-TOTAL_FORMS": "2", "form-INITIAL_FORMS": "2",
            "form-0-id": a.pk, "form-0-position": "30", "form-0-enabled": "on",
            "form-1-id": b.pk, "form-1-position": "20", "form-1-enabled": "on",
            "_save": "Save",
        },
    )  # fmt: skip

    assert response.status_code == 302
    assert list(RoutingRule.objects.order_by("position").values_list("pk", flat=True)) == [b.pk, a.pk]
    assert [(e.type, e.payload["changed"]) for e in TicketEvent.objects.all()] == [
        ("routing_rule.updated", ["position"])
    ]


def test_deleting_from_the_admin_goes_through_the_service(admin_client):
    a, b = RoutingRuleFactory(), RoutingRuleFactory()

    admin_client.post(reverse("admin:inbox_routingrule_delete", args=[a.pk]), {"post": "yes"})
    admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [b.pk], "post": "yes"})

    assert RoutingRule.objects.count() == 0
    assert list(TicketEvent.objects.values_list("type", flat=True)) == [
        "routing_rule.deleted",
        "routing_rule.deleted",
    ]
