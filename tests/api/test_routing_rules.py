"""REST API for routing rules: who may read and write, precise errors, the preview, fresh rules."""

from __future__ import annotations

from datetime import time

import pytest
from rest_framework.test import APIClient

from inbox.models import AgentProfile, RoutingRule, TicketEvent
from inbox.routing.engine import decide
from inbox.selectors.routing import forget_compiled_rules, routing_rules_compiled
from tests.factories import AgentProfileFactory, QueueFactory, SourceFactory, UserFactory
from tests.routing.factories import FactsFactory, RoutingRuleFactory, SlaPolicyFactory

pytestmark = pytest.mark.django_db

RULES = "/api/v1/routing-rules/"
PREVIEW = "/api/v1/routing-rules/preview/"
REORDER = "/api/v1/routing-rules/reorder/"


@pytest.fixture(autouse=True)
def fresh_process(redis_client, settings):
    settings.WEBCARE = {**settings.WEBCARE, "ROUTING_RULES_CHECK_SECONDS": 60.0}
    forget_compiled_rules()
    yield
    forget_compiled_rules()


@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="lea", role=AgentProfile.Role.LEAD).user


@pytest.fixture
def agent(db):
    return AgentProfileFactory(user__username="anna").user


def as_user(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def rule_body(**changes) -> dict:
    return {"name": "Bags", "keywords": "bag\nsuitcase", **changes}


# --- Who may do what ------------------------------------------------------------------------


def test_agents_and_leads_read_the_rules_in_order(agent, lead):
    second = RoutingRuleFactory(name="Second", position=20)
    first = RoutingRuleFactory(name="First", position=10)

    for user in (agent, lead):
        response = as_user(user).get(RULES)
        assert response.status_code == 200
        assert [(r["id"], r["name"]) for r in response.json()["results"]] == [
            (first.pk, "First"),
            (second.pk, "Second"),
        ]


def test_anonymous_callers_and_users_outside_the_desk_read_nothing():
    RoutingRuleFactory()
    stranger = UserFactory(username="stranger")

    assert as_user(None).get(RULES).status_code == 403
    response = as_user(stranger).get(RULES)
    assert response.status_code == 403
    assert response.json() == {"detail": "Only desk users may see routing rules."}


def test_only_leads_create_change_delete_and_reorder(agent):
    rule = RoutingRuleFactory()
    client = as_user(agent)

    refused = [
        client.post(RULES, rule_body(), format="json"),
        client.patch(f"{RULES}{rule.pk}/", {"name": "x"}, format="json"),
        client.put(f"{RULES}{rule.pk}/", rule_body(), format="json"),
        client.delete(f"{RULES}{rule.pk}/"),
        client.post(REORDER, {"rule_ids": [rule.pk]}, format="json"),
    ]

    assert [r.status_code for r in refused] == [403] * 5
    assert refused[0].json() == {"detail": "Only team leads and admins may do this."}
    assert list(RoutingRule.objects.values_list("name", flat=True)) == [rule.name]
    assert TicketEvent.objects.count() == 0


def test_anonymous_callers_cannot_write():
    assert as_user(None).post(RULES, rule_body(), format="json").status_code == 403
    assert RoutingRule.objects.count() == 0


def test_a_lead_creates_a_rule_and_gets_it_back(lead):
    queue, policy, source = QueueFactory(name="Baggage"), SlaPolicyFactory(), SourceFactory()

    response = as_user(lead).post(
        RULES,
        rule_body(
            sources=[source.pk], platforms=["x", "facebook"], languages=["nl", "en"], visibility="public",
            min_followers=1000, verified=True, sentiment_below=0.0, active_from="22:00", active_until="06:00",
            active_weekdays=[4, 5], queue=queue.pk, set_priority=2, add_tags=["baggage"], sla_policy=policy.pk,
            requires_approval=True, continue_matching=True,
        ),
        format="json",
    )  # fmt: skip

    assert response.status_code == 201
    rule = RoutingRule.objects.get()
    body = response.json()
    assert body == {
        "id": rule.pk, "name": "Bags", "position": 10, "enabled": True, "continue_matching": True,
        "sources": [source.pk], "platforms": ["x", "facebook"], "visibility": "public", "languages": ["nl", "en"],
        "keywords": "bag\nsuitcase", "text_regex": "", "min_followers": 1000, "verified": True, "vip": None,
        "sentiment_below": 0.0, "sentiment_above": None, "active_from": "22:00:00", "active_until": "06:00:00",
        "active_weekdays": [4, 5], "has_open_ticket": None, "queue": queue.pk, "set_priority": 2,
        "add_tags": ["baggage"], "sla_policy": policy.pk, "mark_noise": False, "requires_approval": True,
        "created_at": body["created_at"], "updated_at": body["updated_at"],
    }  # fmt: skip
    assert list(TicketEvent.objects.values_list("type", "actor_id")) == [("routing_rule.created", lead.pk)]


def test_a_lead_changes_and_deletes_a_rule(lead):
    rule = RoutingRuleFactory(name="Bags", keywords="bag")
    client = as_user(lead)

    changed = client.patch(
        f"{RULES}{rule.pk}/", {"keywords": "bag\nluggage", "set_priority": 3}, format="json"
    )
    deleted = client.delete(f"{RULES}{rule.pk}/")

    assert changed.status_code == 200
    assert (changed.json()["keywords"], changed.json()["set_priority"], changed.json()["name"]) == (
        "bag\nluggage",
        3,
        "Bags",
    )
    assert deleted.status_code == 204
    assert RoutingRule.objects.count() == 0
    assert list(TicketEvent.objects.values_list("type", "payload")) == [
        (
            "routing_rule.updated",
            {"rule_id": rule.pk, "name": "Bags", "changed": ["keywords", "set_priority"]},
        ),
        ("routing_rule.deleted", {"rule_id": rule.pk, "name": "Bags"}),
    ]


def test_a_lead_reorders_the_rules(lead):
    a, b = RoutingRuleFactory(name="A"), RoutingRuleFactory(name="B")

    response = as_user(lead).post(REORDER, {"rule_ids": [b.pk, a.pk]}, format="json")

    assert response.status_code == 200
    assert [(r["name"], r["position"]) for r in response.json()] == [("B", 10), ("A", 20)]


def test_reordering_with_a_missing_rule_is_refused_precisely(lead):
    a, b = RoutingRuleFactory(), RoutingRuleFactory()

    response = as_user(lead).post(REORDER, {"rule_ids": [b.pk]}, format="json")

    assert response.status_code == 400
    assert response.json() == {"rule_ids": [f"List every rule exactly once. Missing: {a.pk}."]}


# --- Validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        (
            {"text_regex": "(unclosed"},
            {"text_regex": ["Not a valid regular expression: missing ) at position 9."]},
        ),
        (
            {"text_regex": "[9-0]"},
            {"text_regex": ["Not a valid regular expression: bad character range at position 4."]},
        ),
        ({"set_priority": 4}, {"set_priority": ["Ensure this value is less than or equal to 3."]}),
        ({"set_priority": -1}, {"set_priority": ["Ensure this value is greater than or equal to 0."]}),
        (
            {"active_weekdays": [1, 7]},
            {"active_weekdays": {"1": ["Ensure this value is less than or equal to 6."]}},
        ),
        (
            {"languages": ["nl", "ru"]},
            {"languages": ["Not available here: ru. Choose from nl, en, fr, de, es, it, pt, ja, zh, ko."]},
        ),
        ({"platforms": ["myspace"]}, {"platforms": {"0": ['"myspace" is not a valid choice.']}}),
        ({"sentiment_above": 1.5}, {"sentiment_above": ["Ensure this value is less than or equal to 1."]}),
        (
            {"sentiment_below": -0.5, "sentiment_above": 0.5},
            {"sentiment_below": ["Sentiment below -0.5 and above 0.5 can never both hold."]},
        ),
        (
            {"active_from": "08:00", "active_until": "08:00"},
            {"active_until": ["The window is empty: from and until are the same time."]},
        ),
        ({"queue": 999_999}, {"queue": ['Invalid pk "999999" - object does not exist.']}),
        ({"name": ""}, {"name": ["This field may not be blank."]}),
    ],
)
def test_invalid_rules_are_refused_with_a_precise_error(lead, changes, errors):
    response = as_user(lead).post(RULES, rule_body(**changes), format="json")

    assert response.status_code == 400
    assert response.json() == errors
    assert RoutingRule.objects.count() == 0


def test_a_change_is_checked_against_the_values_the_rule_keeps(lead):
    rule = RoutingRuleFactory(sentiment_above=0.3)

    response = as_user(lead).patch(f"{RULES}{rule.pk}/", {"sentiment_below": 0.1}, format="json")

    assert response.status_code == 400
    assert response.json() == {"sentiment_below": ["Sentiment below 0.1 and above 0.3 can never both hold."]}


# --- Fresh rules -------------------------------------------------------------------------------


def test_a_rule_created_through_the_api_changes_the_next_decision(lead, django_capture_on_commit_callbacks):
    press = QueueFactory(name="Press")
    facts = FactsFactory(text="I am a journalist at De Telegraaf")
    assert decide(facts, routing_rules_compiled()).queue_id == 100

    with django_capture_on_commit_callbacks(execute=True):
        response = as_user(lead).post(
            RULES, rule_body(name="Press", keywords="journalist", queue=press.pk), format="json"
        )

    assert response.status_code == 201
    decision = decide(facts, routing_rules_compiled())
    assert (decision.queue_id, decision.rule_ids) == (press.pk, (response.json()["id"],))


def test_a_rule_deleted_through_the_api_no_longer_routes(lead, django_capture_on_commit_callbacks):
    rule = RoutingRuleFactory(keywords="journalist", queue=QueueFactory(name="Press"))
    facts = FactsFactory(text="journalist here")
    assert decide(facts, routing_rules_compiled()).rule_ids == (rule.pk,)

    with django_capture_on_commit_callbacks(execute=True):
        assert as_user(lead).delete(f"{RULES}{rule.pk}/").status_code == 204

    assert decide(facts, routing_rules_compiled()).rule_ids == ()


# --- Preview ----------------------------------------------------------------------------------


@pytest.fixture
def desk_rules(db):
    """Spam first, then VIPs (accumulating), then Dutch, then everything else at night."""
    vip_queue, dutch_queue = QueueFactory(name="VIP care"), QueueFactory(name="Dutch")
    spam = RoutingRuleFactory(name="Spam", keywords="bitcoin\ncrypto giveaway", mark_noise=True)
    vip = RoutingRuleFactory(
        name="VIPs", vip=True, set_priority=3, add_tags=["vip"], queue=vip_queue, continue_matching=True
    )
    dutch = RoutingRuleFactory(name="Dutch", languages=["nl"], queue=dutch_queue, add_tags=["nl"])
    night = RoutingRuleFactory(name="Night", active_from=time(22), active_until=time(6), set_priority=2)
    return {"spam": spam, "vip": vip, "dutch": dutch, "night": night, "dutch_queue": dutch_queue}


def test_the_preview_explains_which_rule_matches_and_why_the_others_do_not(agent, desk_rules, default_queue):
    source = SourceFactory(name="x-main", platform="x", default_queue=default_queue)

    response = as_user(agent).post(
        PREVIEW,
        {
            "text": "Waar is mijn koffer? Al drie dagen niks gehoord 😡",
            "source_id": source.pk,
            "vip": True,
            "created_at": "2026-11-02T09:00:00Z",  # 10:00 in Amsterdam, a Monday
        },
        format="json",
    )

    assert response.status_code == 200
    ids = {name: rule.pk for name, rule in desk_rules.items() if name != "dutch_queue"}
    body = response.json()
    assert body == {
        "language": "nl",
        "language_detected": True,
        "sentiment": body["sentiment"],
        "local_time": "10:00:00",
        "weekday": 0,
        "decision": {
            "queue_id": desk_rules["dutch_queue"].pk,
            "queue_name": "Dutch",
            "priority": 3,
            "tags": ["vip", "nl"],
            "sla_policy_id": None,
            "sla_policy_name": "",
            "is_noise": False,
            "requires_approval": False,
            "rule_ids": [ids["vip"], ids["dutch"]],
            "reason": f'rules #{ids["vip"]} "VIPs", #{ids["dutch"]} "Dutch"',
        },
        "matched_rules": [{"id": ids["vip"], "name": "VIPs"}, {"id": ids["dutch"], "name": "Dutch"}],
        "rules": [
            {"id": ids["spam"], "name": "Spam", "position": desk_rules["spam"].position, "outcome": "not_matched",
             "failed_condition": "keywords", "detail": "none of the words or phrases occurs"},
            {"id": ids["vip"], "name": "VIPs", "position": desk_rules["vip"].position, "outcome": "matched",
             "failed_condition": "", "detail": ""},
            {"id": ids["dutch"], "name": "Dutch", "position": desk_rules["dutch"].position, "outcome": "matched",
             "failed_condition": "", "detail": ""},
            {"id": ids["night"], "name": "Night", "position": desk_rules["night"].position, "outcome": "not_reached",
             "failed_condition": "", "detail": f'rule #{ids["dutch"]} "Dutch" matched earlier and stopped evaluation'},
        ],
        "rules_version": body["rules_version"],
    }  # fmt: skip
    assert TicketEvent.objects.count() == 0  # nothing stored


def test_the_preview_uses_the_given_language_and_time(agent, desk_rules, default_queue):
    response = as_user(agent).post(
        PREVIEW,
        {
            "text": "hello",
            "language": "fr",
            "platform": "x",
            "created_at": "2026-11-02T23:30:00+01:00",
            "sentiment": -0.8,
        },
        format="json",
    )

    body = response.json()
    assert (body["language"], body["language_detected"], body["sentiment"]) == ("fr", False, -0.8)
    assert (body["local_time"], body["weekday"]) == ("23:30:00", 0)
    assert body["decision"]["rule_ids"] == [desk_rules["night"].pk]
    assert body["decision"]["priority"] == 2
    assert (body["decision"]["queue_id"], body["decision"]["reason"]) == (
        default_queue.pk,
        f'rule #{desk_rules["night"].pk} "Night"; desk default queue',
    )
    assert [r["failed_condition"] for r in body["rules"]] == ["keywords", "vip", "languages", ""]


def test_the_preview_shows_noise_and_an_unknown_language(agent, desk_rules):
    response = as_user(agent).post(PREVIEW, {"text": "BITCOIN!!! 🚀🚀", "platform": "x"}, format="json")

    body = response.json()
    assert (body["language"], body["sentiment"]) == ("", None)
    assert body["decision"]["is_noise"] is True
    assert body["decision"]["queue_id"] is None
    assert body["decision"]["reason"] == f'rule #{desk_rules["spam"].pk} "Spam"; noise: not routed'


def test_the_preview_refuses_unknown_values_precisely(agent):
    response = as_user(agent).post(
        PREVIEW, {"text": "hi", "platform": "myspace", "language": "ru", "source_id": 999_999}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "platform": ["Not a platform: myspace. Choose from simulated, mastodon, bluesky, x, facebook, instagram, "
                     "messenger, generic, import."],
        "source_id": ['Invalid pk "999999" - object does not exist.'],
        "language": ["Not a desk language: ru. Choose from nl, en, fr, de, es, it, pt, ja, zh, ko."],
    }  # fmt: skip


def test_the_preview_needs_a_desk_user():
    stranger = UserFactory(username="stranger")
    assert as_user(stranger).post(PREVIEW, {"text": "hi"}, format="json").status_code == 403
    assert as_user(None).post(PREVIEW, {"text": "hi"}, format="json").status_code == 403
