"""Factories for routing tests (tests/routing, tests/api/test_routing_rules.py, the admin test)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import factory
from django.utils import timezone

from inbox.models import RoutingRule, SlaPolicy, Ticket
from inbox.routing.engine import RoutingFacts
from tests.factories import ContactFactory, SourceFactory

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.get_fixed_timezone(0))


class RoutingRuleFactory(factory.django.DjangoModelFactory):
    """A stored rule with no conditions and no actions, after the ones made before it.

    Written straight to the table, as rows that predate a change would be; tests of the
    write path use the services.
    """

    class Meta:
        model = RoutingRule
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Rule {n}")
    position = factory.Sequence(lambda n: (n + 1) * 10)

    @factory.post_generation
    def sources(self, create: bool, extracted, **kwargs) -> None:
        if create and extracted:
            self.sources.set(extracted)


class SlaPolicyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SlaPolicy

    name = factory.Sequence(lambda n: f"Policy {n}")
    first_response_minutes = 60




class TicketFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Ticket

    source = factory.SubFactory(SourceFactory)
    contact = factory.SubFactory(ContactFactory)
    customer = factory.SelfAttribute("contact.customer")
    status = Ticket.Status.NEW
    opened_at = factory.Sequence(lambda n: T0 + timedelta(minutes=n))
    last_message_at = factory.SelfAttribute("opened_at")


class FactsFactory(factory.Factory):
    """A public English post on X from an ordinary customer at 10:00 on a Monday."""

    class Meta:
        model = RoutingFacts

    source_id = 1
    platform = "x"
    is_public = True
    language = "en"
    text = "Where is my bag?"
    followers_count = 120
    verified = False
    source_default_queue_id = 100
    desk_default_queue_id = 200
    sentiment = 0.0
    vip = False
    has_open_ticket = False
    local_time = time(10, 0)
    weekday = 0
