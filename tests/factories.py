"""Test data builders. Tests use these, never ``objects.create`` by hand."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from inbox.connectors.base import AuthorIdentity, InboundMessage
from inbox.models import AgentProfile, Contact, Customer, Platform, Queue, Source


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"agent{n}")
    first_name = factory.Sequence(lambda n: f"Agent{n}")
    password = factory.django.Password("correct-horse-battery")


class AgentProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AgentProfile

    user = factory.SubFactory(UserFactory)
    role = AgentProfile.Role.AGENT
    languages = factory.LazyFunction(lambda: ["en"])


class QueueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Queue

    name = factory.Sequence(lambda n: f"Queue {n}")
    slug = factory.Sequence(lambda n: f"queue-{n}")


class SourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Source

    name = factory.Sequence(lambda n: f"source-{n}")
    platform = Platform.SIMULATED
    account_id = "brand"
    config = factory.LazyFunction(lambda: {"seed": 7, "rate_per_minute": 60})


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    display_name = factory.Sequence(lambda n: f"Customer {n}")


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    platform = Platform.SIMULATED
    external_id = factory.Sequence(lambda n: f"contact-{n}")
    handle = factory.Sequence(lambda n: f"traveller{n}")
    customer = factory.SubFactory(CustomerFactory)


_ids = itertools.count(1)


def inbound(
    external_id: str | None = None,
    *,
    author: str = "cust1",
    text: str = "Where is my bag?",
    at: datetime | None = None,
    minutes: float | None = None,
    reply_to: str = "",
    conversation: str = "",
    public: bool = True,
    brand: bool = False,
    handle: str | None = None,
    followers: int | None = 10,
    language: str = "",
) -> InboundMessage:
    """One InboundMessage; ``minutes`` places it that many minutes after a fixed base time."""
    if at is None:
        base = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.get_fixed_timezone(0))
        at = base + timedelta(minutes=minutes if minutes is not None else next(_ids))
    return InboundMessage(
        external_id=external_id or f"m{next(_ids)}",
        author=AuthorIdentity(
            external_id=author, handle=handle if handle is not None else author,
            display_name=author.title(), followers_count=followers,
        ),
        text=text,
        created_at=at,
        is_public=public,
        in_reply_to_external_id=reply_to,
        conversation_id=conversation,
        author_is_brand=brand,
        language=language,
        raw={"id": external_id},
    )
