"""Rule changes: checked, written with their audit event, and announced to every process."""

from __future__ import annotations

from datetime import time

import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError

from inbox.models import RoutingRule, TicketEvent
from inbox.selectors.routing import RULES_VERSION_KEY
from inbox.services.routing_rules import (
    routing_rule_create,
    routing_rule_delete,
    routing_rule_update,
    routing_rules_reorder,
)
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory
from tests.routing.factories import RoutingRuleFactory, SlaPolicyFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def lead():
    return AgentProfileFactory(role="lead").user


def events() -> list[tuple[str, int | None, dict]]:
    return [(e.type, e.actor_id, e.payload) for e in TicketEvent.objects.order_by("id")]


def test_a_new_rule_is_stored_with_its_sources_after_the_others_and_audited(
    lead, redis_client, django_capture_on_commit_callbacks
):
    RoutingRuleFactory(position=40)
    queue, policy, source = QueueFactory(), SlaPolicyFactory(), SourceFactory()
    cache.set(RULES_VERSION_KEY, "before", timeout=None)

    with django_capture_on_commit_callbacks(execute=True):
        rule = routing_rule_create(
            fields={
                "name": " Press ", "keywords": "journalist\n\n press  office \njournalist", "languages": ["nl", "nl"],
                "active_from": time(22), "active_until": time(6), "active_weekdays": [4, 0, 4],
                "queue_id": queue.pk, "sla_policy_id": policy.pk, "set_priority": 2, "add_tags": [" press ", "press"],
            },
            source_ids=[source.pk],
            actor=lead,
        )  # fmt: skip

    rule.refresh_from_db()
    assert (rule.name, rule.position, rule.keywords, rule.languages, rule.active_weekdays, rule.add_tags) == (
        "Press", 50, "journalist\npress office", ["nl"], [0, 4], ["press"],
    )  # fmt: skip
    assert (rule.queue_id, rule.sla_policy_id, rule.set_priority) == (queue.pk, policy.pk, 2)
    assert list(rule.sources.values_list("pk", flat=True)) == [source.pk]
    assert events() == [
        (
            "routing_rule.created",
            lead.pk,
            {"rule_id": rule.pk, "name": "Press", "position": 50},
        ),
    ]
    assert cache.get(RULES_VERSION_KEY) != "before"


def test_an_invalid_rule_is_refused_with_every_reason_and_nothing_is_written():
    with pytest.raises(ValidationError) as refused:
        routing_rule_create(
            fields={
                "name": "Broken",
                "text_regex": "(abc",
                "set_priority": 7,
                "queue_id": 999_999,
                "visibility": "all",
            },
            source_ids=[888_888],
        )

    assert refused.value.message_dict == {
        "text_regex": ["Not a valid regular expression: missing ) at position 4."],
        "set_priority": ["Priority is 0 (low), 1 (normal), 2 (high) or 3 (urgent)."],
        "visibility": ["Choose public, private or leave empty."],
        "queue": ["No queue with this id."],
        "sources": ["No source with id 888888."],
    }
    assert RoutingRule.objects.count() == 0
    assert TicketEvent.objects.count() == 0


def test_model_limits_are_checked_too():
    with pytest.raises(ValidationError) as refused:
        routing_rule_create(fields={"name": "x" * 121})

    assert refused.value.message_dict == {
        "name": ["Ensure this value has at most 120 characters (it has 121)."]
    }


def test_unknown_fields_are_a_programming_error():
    with pytest.raises(TypeError, match="unknown routing rule fields: \\['colour'\\]"):
        routing_rule_create(fields={"name": "x", "colour": "red"})


def test_an_update_changes_only_the_given_fields_and_names_them_in_the_event(lead):
    rule = RoutingRuleFactory(name="Bags", keywords="bag", sentiment_above=-0.5)
    old_updated = rule.updated_at
    source = SourceFactory()

    routing_rule_update(
        rule_id=rule.pk,
        fields={"keywords": "bag\nsuitcase", "name": "Bags"},
        source_ids=[source.pk],
        actor=lead,
    )

    rule.refresh_from_db()
    assert (rule.name, rule.keywords, rule.sentiment_above) == ("Bags", "bag\nsuitcase", -0.5)
    assert rule.updated_at > old_updated
    assert events() == [
        (
            "routing_rule.updated",
            lead.pk,
            {"rule_id": rule.pk, "name": "Bags", "changed": ["keywords", "sources"]},
        ),
    ]


def test_an_update_is_checked_against_the_values_it_keeps():
    rule = RoutingRuleFactory(sentiment_above=0.2)

    with pytest.raises(ValidationError) as refused:
        routing_rule_update(rule_id=rule.pk, fields={"sentiment_below": -0.3})

    assert refused.value.message_dict == {
        "sentiment_below": ["Sentiment below -0.3 and above 0.2 can never both hold."]
    }
    rule.refresh_from_db()
    assert rule.sentiment_below is None


def test_an_update_that_changes_nothing_writes_nothing():
    rule = RoutingRuleFactory(name="Same", keywords="bag")

    routing_rule_update(rule_id=rule.pk, fields={"name": "Same", "keywords": "bag"}, source_ids=[])

    assert TicketEvent.objects.count() == 0


def test_a_deleted_rule_is_gone_and_audited(lead):
    rule = RoutingRuleFactory(name="Old")

    routing_rule_delete(rule_id=rule.pk, actor=lead)

    assert RoutingRule.objects.count() == 0
    assert events() == [("routing_rule.deleted", lead.pk, {"rule_id": rule.pk, "name": "Old"})]


def test_reordering_puts_every_rule_in_the_given_order(lead):
    a, b, c = (
        RoutingRuleFactory(position=10),
        RoutingRuleFactory(position=20),
        RoutingRuleFactory(position=30),
    )

    ordered = routing_rules_reorder(rule_ids=[c.pk, a.pk, b.pk], actor=lead)

    assert [rule.pk for rule in ordered] == [c.pk, a.pk, b.pk]
    assert list(RoutingRule.objects.order_by("position").values_list("pk", "position")) == [
        (c.pk, 10), (a.pk, 20), (b.pk, 30),
    ]  # fmt: skip
    assert events() == [
        ("routing_rules.reordered", lead.pk, {"rule_ids": [c.pk, a.pk, b.pk]}),
    ]


def test_reordering_needs_every_rule_exactly_once():
    a, b = RoutingRuleFactory(), RoutingRuleFactory()

    with pytest.raises(ValidationError) as refused:
        routing_rules_reorder(rule_ids=[b.pk, b.pk, 999])

    assert refused.value.message_dict == {
        "rule_ids": [f"List every rule exactly once. Missing: {a.pk}. Unknown: 999."],
    }
    assert TicketEvent.objects.count() == 0
