"""The compiled rules each process keeps: fresh after every change, from any process, and cheap."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import cache
from redis.exceptions import ConnectionError as RedisConnectionError

from inbox.models import Ticket
from inbox.routing.engine import decide
from inbox.selectors.routing import (
    RULES_VERSION_KEY,
    customers_vip,
    customers_with_open_tickets,
    forget_compiled_rules,
    routing_rules_compiled,
)
from inbox.services.routing_rules import routing_rule_create, routing_rule_update
from tests.factories import CustomerFactory, QueueFactory, SourceFactory
from tests.routing.factories import FactsFactory, RoutingRuleFactory, TicketFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_process(redis_client, settings):
    """No compiled rules kept from earlier tests; each test sets how often they are checked."""
    settings.WEBCARE = {**settings.WEBCARE, "ROUTING_RULES_CHECK_SECONDS": 60.0}
    forget_compiled_rules()
    yield
    forget_compiled_rules()


def queue_for(text: str = "Where is my bag?", **facts) -> int | None:
    return decide(FactsFactory(text=text, **facts), routing_rules_compiled()).queue_id


def test_a_rule_created_through_the_service_routes_the_next_message(django_capture_on_commit_callbacks):
    bags = QueueFactory(name="Baggage")
    assert queue_for() == 100

    with django_capture_on_commit_callbacks(execute=True):
        routing_rule_create(fields={"name": "Bags", "keywords": "bag", "queue_id": bags.pk})

    assert queue_for() == bags.pk


def test_between_checks_the_compiled_rules_cost_no_query_and_no_redis_call(
    django_assert_num_queries, monkeypatch
):
    RoutingRuleFactory(keywords="bag", queue=QueueFactory())
    first = routing_rules_compiled()
    monkeypatch.setattr(cache, "get", lambda *a, **k: pytest.fail("the cache was asked"))

    with django_assert_num_queries(0):
        assert routing_rules_compiled() is first


def test_a_change_made_by_another_process_is_seen_at_the_next_check(settings):
    old, new = QueueFactory(name="Old"), QueueFactory(name="New")
    rule = RoutingRuleFactory(keywords="bag", queue=old)
    assert queue_for() == old.pk
    settings.WEBCARE = {**settings.WEBCARE, "ROUTING_RULES_CHECK_SECONDS": 0.0}

    # Another process: the row changes (updated_at left alone, so only the token tells) and
    # its service moves the shared token after commit.
    type(rule).objects.filter(pk=rule.pk).update(queue=new)
    cache.set(RULES_VERSION_KEY, "token-from-another-process", timeout=None)

    assert queue_for() == new.pk


def test_an_unchanged_rule_set_is_not_compiled_again(settings):
    RoutingRuleFactory(keywords="bag", queue=QueueFactory())
    settings.WEBCARE = {**settings.WEBCARE, "ROUTING_RULES_CHECK_SECONDS": 0.0}

    assert routing_rules_compiled() is routing_rules_compiled()


def test_a_lost_token_is_made_anew_and_the_rules_reload(settings):
    queue = QueueFactory()
    RoutingRuleFactory(keywords="bag", queue=queue)
    first = routing_rules_compiled()
    settings.WEBCARE = {**settings.WEBCARE, "ROUTING_RULES_CHECK_SECONDS": 0.0}

    cache.delete(RULES_VERSION_KEY)  # Redis flushed or restarted
    again = routing_rules_compiled()

    assert cache.get(RULES_VERSION_KEY) is not None
    assert again is not first
    assert decide(FactsFactory(), again).queue_id == queue.pk


def test_a_change_whose_token_was_lost_is_caught_by_the_table_fingerprint(settings):
    assert queue_for() == 100
    settings.WEBCARE = {**settings.WEBCARE, "ROUTING_RULES_CHECK_SECONDS": 0.0}

    queue = QueueFactory()
    RoutingRuleFactory(keywords="bag", queue=queue)  # written without moving the token

    assert queue_for() == queue.pk


def test_with_redis_down_the_rules_come_from_the_database_at_every_check(settings, monkeypatch, caplog):
    settings.WEBCARE = {**settings.WEBCARE, "ROUTING_RULES_CHECK_SECONDS": 0.0}

    def redis_down(*args, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(cache, "get", redis_down)
    queue = QueueFactory()
    RoutingRuleFactory(keywords="bag", queue=queue)

    with caplog.at_level(logging.WARNING, logger="inbox.selectors.routing"):
        assert queue_for() == queue.pk
        RoutingRuleFactory(position=1, keywords="where", queue=QueueFactory(name="Questions"))
        assert queue_for() != queue.pk

    assert "routing: rule version token unreadable; relying on the table fingerprint" in caplog.messages


def test_the_compiled_rules_know_each_rules_sources():
    social, web = SourceFactory(name="social"), SourceFactory(name="web")
    queue = QueueFactory()
    RoutingRuleFactory(sources=[social], queue=queue)
    RoutingRuleFactory(enabled=False, queue=QueueFactory())

    rules = routing_rules_compiled()

    assert len(rules) == 1
    assert queue_for(source_id=social.pk) == queue.pk
    assert queue_for(source_id=web.pk) == 100


def test_the_version_names_the_token_and_the_table_state():
    rule = RoutingRuleFactory()

    version = routing_rules_compiled().version

    assert version == f"{cache.get(RULES_VERSION_KEY)}:1:{rule.updated_at.isoformat()}"


def test_an_update_through_the_service_reaches_this_process_at_once(django_capture_on_commit_callbacks):
    rule = RoutingRuleFactory(keywords="bag", queue=QueueFactory())
    routing_rules_compiled()
    other = QueueFactory(name="Other")

    with django_capture_on_commit_callbacks(execute=True):
        routing_rule_update(rule_id=rule.pk, fields={"queue_id": other.pk})

    assert queue_for() == other.pk


# --- Facts about customers ---------------------------------------------------------------


def test_vip_customers_are_found_in_one_batch(django_assert_num_queries):
    vip, regular = CustomerFactory(vip=True), CustomerFactory()

    with django_assert_num_queries(1):
        assert customers_vip([vip.pk, regular.pk, vip.pk]) == {vip.pk}


def test_customers_with_a_new_open_or_pending_ticket_have_an_open_ticket():
    waiting = {status: TicketFactory(status=status).customer for status in Ticket.ACTIVE_STATUSES}
    done = [
        TicketFactory(status=Ticket.Status.SOLVED).customer,
        TicketFactory(status=Ticket.Status.CLOSED).customer,
    ]
    nothing = CustomerFactory()

    found = customers_with_open_tickets([c.pk for c in [*waiting.values(), *done, nothing]])

    assert found == {c.pk for c in waiting.values()}
