"""The Django admin: every model listed, searchable, fast, and safe with secrets and audit rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import factory
import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Model
from django.urls import reverse
from django.utils import timezone

from inbox.connectors.base import RejectedItem
from inbox.models import (
    AgentProfile,
    BusinessCalendar,
    BusinessHours,
    CalendarHoliday,
    Contact,
    Customer,
    DeadLetter,
    DeliveryAttempt,
    Escalation,
    InternalTeam,
    Message,
    OutboundDelivery,
    Queue,
    ReplyTemplate,
    ReplyTemplateVariant,
    RoutingRule,
    SlaPolicy,
    Source,
    Tag,
    Ticket,
    TicketEvent,
    TicketSeen,
    WebhookDelivery,
)
from inbox.services.dead_letters import dead_letters_mark_resolved
from inbox.services.ingest import ingest_batch
from inbox.services.webhooks import webhook_delivery_receive
from tests.factories import AgentProfileFactory, SourceFactory, inbound

pytestmark = pytest.mark.django_db

User = get_user_model()
SECRET = "tok-3f9a-never-show-me"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# --- Local builders for models tests/factories.py has no factory for ---------------------


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tag-{n}")


class ReplyTemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReplyTemplate

    name = factory.Sequence(lambda n: f"Template {n}")
    shortcut = factory.Sequence(lambda n: f"template-{n}")


class ReplyTemplateVariantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReplyTemplateVariant

    template = factory.SubFactory(ReplyTemplateFactory)
    language = "en"
    body = "Thank you, {customer_name}! ^{agent_first_name}"


class OutboundDeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OutboundDelivery

    source = factory.LazyAttribute(lambda o: o.message.source)


class DeliveryAttemptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = DeliveryAttempt

    started_at = factory.LazyFunction(timezone.now)
    finished_at = factory.LazyAttribute(lambda o: o.started_at + timedelta(seconds=10))
    outcome = DeliveryAttempt.Outcome.UNKNOWN


@dataclass
class Desk:
    source: Source
    queue: Queue
    ticket_bag: Ticket
    ticket_late: Ticket
    message_bag: Message
    message_late: Message
    contact_bag: Contact
    customer_bag: Customer
    dead_letter: DeadLetter
    agent: AgentProfile
    tag: Tag
    template: ReplyTemplate
    delivery: OutboundDelivery
    webhook: WebhookDelivery


@pytest.fixture
def desk(source, default_queue) -> Desk:
    """One of everything the admin lists; tickets, messages, events and dead letters via ingest."""
    ingest_batch(
        source=source,
        messages=[
            inbound("m-bag", author="cust1", text="Where is my bag? Tag KL1234"),
            inbound("m-late", author="cust2", text="Flight delayed again"),
        ],
        rejected=[RejectedItem(reason="missing author", raw={"id": "x1"}, external_id="x1")],
    )
    message_bag = Message.objects.get(external_id="m-bag")
    message_late = Message.objects.get(external_id="m-late")
    agent = AgentProfileFactory(user__username="anna", user__first_name="Anna", languages=["nl", "en"])
    default_queue.members.add(agent.user)
    tag = TagFactory(name="baggage")
    message_bag.ticket.tags.add(tag)
    template = ReplyTemplateVariantFactory(template__shortcut="thanks", template__name="Thanks").template
    delivery = OutboundDeliveryFactory(message=message_late, platform_id="post-77", last_error="timeout")
    DeliveryAttemptFactory(delivery=delivery, error="read timeout after 10s")
    _routing_and_sla(default_queue, message_bag.ticket)
    webhook, _ = webhook_delivery_receive(
        source=source,
        platform="generic",
        body='{"messages": [{"id": "w-1", "text": "Bag lost \u00e9"}]}'.encode(),
        headers={"Content-Type": "application/json", "X-Webcare-Signature": "sha256=00"},
        delivery_id="dlv-7781",
    )
    return Desk(
        source=source,
        queue=default_queue,
        ticket_bag=message_bag.ticket,
        ticket_late=message_late.ticket,
        message_bag=message_bag,
        message_late=message_late,
        contact_bag=message_bag.author_contact,
        customer_bag=message_bag.author_contact.customer,
        dead_letter=DeadLetter.objects.get(),
        agent=agent,
        tag=tag,
        template=template,
        delivery=delivery,
        webhook=webhook,
    )


def _routing_and_sla(queue: Queue, ticket: Ticket) -> None:
    """One rule, calendar (with hours and a holiday), policy, team and escalation for the pages."""
    import datetime as dt

    calendar = BusinessCalendar.objects.create(name="Office NL", holiday_country="NL")
    BusinessHours.objects.create(calendar=calendar, weekday=0, start=dt.time(8), end=dt.time(17))
    CalendarHoliday.objects.create(calendar=calendar, date=dt.date(2026, 12, 24), name="Christmas Eve")
    policy = SlaPolicy.objects.create(name="Care normal", queue=queue, calendar=calendar, first_response_minutes=60)
    RoutingRule.objects.create(name="Press", keywords="journalist\npress", queue=queue, sla_policy=policy)
    team = InternalTeam.objects.create(name="Lost luggage", email="baggage@example.com")
    Escalation.objects.create(ticket=ticket, team=team, note="Please trace bag KL1234")


def url(model: type[Model], view: str, *args: object) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def changelist_pks(response) -> list[int]:
    return sorted(obj.pk for obj in response.context["cl"].result_list)


ADMIN_MODELS = [
    Source,
    Contact,
    Customer,
    Message,
    Ticket,
    Tag,
    Queue,
    AgentProfile,
    ReplyTemplate,
    TicketEvent,
    DeadLetter,
    OutboundDelivery,
    User,
    RoutingRule,
    BusinessCalendar,
    SlaPolicy,
    InternalTeam,
    Escalation,
    WebhookDelivery,
]
# Written only by services (ingest, the audit log, the webhook endpoint): no add page.
NO_ADD = {TicketEvent, DeadLetter, WebhookDelivery}
INLINE_ONLY = {
    ReplyTemplateVariant: ReplyTemplate,
    DeliveryAttempt: OutboundDelivery,
    BusinessHours: BusinessCalendar,
    CalendarHoliday: BusinessCalendar,
    TicketSeen: Ticket,
}


def test_every_inbox_model_has_an_admin_page_or_an_inline():
    inbox_models = set(apps.get_app_config("inbox").get_models())
    registered = {model for model in admin.site._registry if model._meta.app_label == "inbox"}

    assert registered == inbox_models - set(INLINE_ONLY)
    for model, parent in INLINE_ONLY.items():
        inlines = [inline.model for inline in admin.site._registry[parent].inlines]
        assert model in inlines


@pytest.mark.parametrize("model", ADMIN_MODELS, ids=lambda m: m._meta.model_name)
def test_changelist_and_change_page_render(admin_client, desk, model):
    assert admin_client.get(url(model, "changelist")).status_code == 200
    obj = model.objects.order_by("pk").first()
    assert admin_client.get(url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize(
    "model", [m for m in ADMIN_MODELS if m not in NO_ADD], ids=lambda m: m._meta.model_name
)
def test_add_page_renders(admin_client, desk, model):
    assert admin_client.get(url(model, "add")).status_code == 200


@pytest.mark.parametrize("model", sorted(NO_ADD, key=str), ids=lambda m: m._meta.model_name)
def test_service_written_records_cannot_be_added(admin_client, desk, model):
    count = model.objects.count()
    assert admin_client.get(url(model, "add")).status_code == 403
    assert admin_client.post(url(model, "add"), {}).status_code == 403
    assert model.objects.count() == count


SEARCHES: list[tuple[type[Model], Callable[[Desk], str], Callable[[Desk], list[Model]]]] = [
    (Source, lambda d: "demo", lambda d: [d.source]),
    (Contact, lambda d: "@cust1", lambda d: [d.contact_bag]),
    (Customer, lambda d: "cust1", lambda d: [d.customer_bag]),
    (Message, lambda d: "KL1234", lambda d: [d.message_bag]),
    (Message, lambda d: "m-late", lambda d: [d.message_late]),
    (Ticket, lambda d: "delayed", lambda d: [d.ticket_late]),
    (Ticket, lambda d: "@cust2", lambda d: [d.ticket_late]),
    (Ticket, lambda d: f"#{d.ticket_bag.pk}", lambda d: [d.ticket_bag]),
    (Tag, lambda d: "bagg", lambda d: [d.tag]),
    (Queue, lambda d: "gener", lambda d: [d.queue]),
    (AgentProfile, lambda d: "anna", lambda d: [d.agent]),
    (User, lambda d: "anna", lambda d: [d.agent.user]),
    (ReplyTemplate, lambda d: "thanks", lambda d: [d.template]),
    (ReplyTemplate, lambda d: "{customer_name}", lambda d: [d.template]),
    (TicketEvent, lambda d: str(d.ticket_late.pk), lambda d: list(d.ticket_late.events.all())),
    (
        TicketEvent,
        lambda d: "ticket.created",
        lambda d: list(TicketEvent.objects.filter(type="ticket.created")),
    ),
    (DeadLetter, lambda d: "missing author", lambda d: [d.dead_letter]),
    (OutboundDelivery, lambda d: "post-77", lambda d: [d.delivery]),
    (OutboundDelivery, lambda d: str(d.delivery.idempotency_key), lambda d: [d.delivery]),
    (WebhookDelivery, lambda d: "dlv-7781", lambda d: [d.webhook]),
]


@pytest.mark.parametrize(
    ("model", "term", "expected"), SEARCHES, ids=lambda v: getattr(v, "__name__", None) or ""
)
def test_search_finds_exactly_the_matching_rows(admin_client, desk, model, term, expected):
    response = admin_client.get(url(model, "changelist"), {"q": term(desk)})

    assert response.status_code == 200
    assert changelist_pks(response) == sorted(obj.pk for obj in expected(desk))
    assert expected(desk), "the search case must expect at least one row"


@pytest.mark.parametrize("model", [m for m, _, _ in SEARCHES], ids=lambda m: m._meta.model_name)
def test_search_without_match_lists_nothing(admin_client, desk, model):
    response = admin_client.get(url(model, "changelist"), {"q": "zz-no-such-thing-zz"})
    assert response.status_code == 200
    assert changelist_pks(response) == []


# --- Sources: secrets are write-only -------------------------------------------------------


def source_form(source: Source, **changes: object) -> dict[str, object]:
    data = {
        "name": source.name,
        "platform": source.platform,
        "enabled": "on",
        "account_id": source.account_id,
        "default_queue": source.default_queue_id or "",
        "poll_interval_seconds": source.poll_interval_seconds,
        "config": '{"seed": 7}',
        "new_secrets": "",
    }
    data.update(changes)
    return data


def test_source_pages_never_show_the_secret_value(admin_client):
    source = SourceFactory(secrets={"access_token": SECRET}, last_error="401 Unauthorized\ntoken expired")

    change = admin_client.get(url(Source, "change", source.pk)).content.decode()
    listing = admin_client.get(url(Source, "changelist")).content.decode()

    assert SECRET not in change
    assert SECRET not in listing
    assert "access_token" in change  # names of stored secrets are shown, values never
    assert "Write-only" in change
    assert "token expired" in change


def test_new_secrets_replace_the_stored_ones(admin_client):
    source = SourceFactory(secrets={"access_token": "old", "app_secret": "old-app"})

    response = admin_client.post(
        url(Source, "change", source.pk), source_form(source, new_secrets=f'{{"access_token": "{SECRET}"}}')
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert source.secrets == {"access_token": SECRET}
    assert source.config == {"seed": 7}


def test_saving_without_new_secrets_keeps_the_stored_ones(admin_client):
    source = SourceFactory(secrets={"access_token": SECRET})

    response = admin_client.post(url(Source, "change", source.pk), source_form(source, name="renamed"))

    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.name, source.secrets) == ("renamed", {"access_token": SECRET})


def test_new_secrets_must_be_a_json_object_and_are_not_echoed_back(admin_client):
    source = SourceFactory(secrets={"access_token": "old"})

    response = admin_client.post(
        url(Source, "change", source.pk), source_form(source, new_secrets=f'["{SECRET}"]')
    )

    assert response.status_code == 200
    assert "Enter a JSON object" in response.content.decode()
    assert SECRET not in response.content.decode()
    source.refresh_from_db()
    assert source.secrets == {"access_token": "old"}


def test_source_can_be_added_with_secrets(admin_client, default_queue):
    response = admin_client.post(
        url(Source, "add"),
        {
            "name": "Mastodon brand",
            "platform": "mastodon",
            "enabled": "on",
            "account_id": "42",
            "default_queue": default_queue.pk,
            "poll_interval_seconds": 30,
            "config": '{"instance": "https://social.example"}',
            "new_secrets": f'{{"access_token": "{SECRET}"}}',
        },
    )

    assert response.status_code == 302
    source = Source.objects.get(name="Mastodon brand")
    assert source.secrets == {"access_token": SECRET}
    assert source.default_queue == default_queue


def test_polling_state_is_read_only(admin_client, desk):
    source = desk.source
    before = timezone.now() - timedelta(hours=1)
    Source.objects.filter(pk=source.pk).update(
        cursor={"since": "abc"}, consecutive_failures=3, next_poll_at=before
    )
    source.refresh_from_db()

    response = admin_client.post(
        url(Source, "change", source.pk),
        source_form(source, cursor='{"since": "zzz"}', consecutive_failures=0, next_poll_at=""),
    )

    assert response.status_code == 302
    source.refresh_from_db()
    assert (source.cursor, source.consecutive_failures, source.next_poll_at) == ({"since": "abc"}, 3, before)


# --- Ticket events: append-only ------------------------------------------------------------


def test_ticket_events_cannot_be_changed_or_deleted(admin_client, desk):
    event = TicketEvent.objects.order_by("id").first()
    snapshot = list(TicketEvent.objects.values())

    change_page = admin_client.get(url(TicketEvent, "change", event.pk))
    change_post = admin_client.post(url(TicketEvent, "change", event.pk), {"type": "forged"})
    delete_page = admin_client.get(url(TicketEvent, "delete", event.pk))
    delete_post = admin_client.post(url(TicketEvent, "delete", event.pk), {"post": "yes"})
    bulk_delete = admin_client.post(
        url(TicketEvent, "changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )

    assert change_page.status_code == 200  # view only
    assert 'name="_save"' not in change_page.content.decode()
    assert (change_post.status_code, delete_page.status_code, delete_post.status_code) == (403, 403, 403)
    assert bulk_delete.status_code in (200, 302)
    assert list(TicketEvent.objects.values()) == snapshot
    changelist = admin_client.get(url(TicketEvent, "changelist"))
    assert "delete_selected" not in changelist.content.decode()


# --- Dead letters ----------------------------------------------------------------------------


def test_mark_resolved_action_resolves_only_the_selected(admin_client, source):
    ingest_batch(
        source=source,
        messages=[],
        rejected=[RejectedItem(reason=f"broken {n}", raw={"n": n}, external_id=f"x{n}") for n in range(3)],
    )
    first, second, third = DeadLetter.objects.order_by("id")

    response = admin_client.post(
        url(DeadLetter, "changelist"),
        {"action": "mark_resolved", "_selected_action": [first.pk, third.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "2 dead letters marked resolved." in response.content.decode()
    assert dict(DeadLetter.objects.values_list("id", "resolved")) == {
        first.pk: True,
        second.pk: False,
        third.pk: True,
    }


def test_process_again_action_requeues_settled_deliveries(admin_client, source, django_capture_on_commit_callbacks):
    rejected = WebhookDelivery.objects.create(platform="meta", body=b"{}", state="rejected", error="no source")
    waiting = WebhookDelivery.objects.create(platform="meta", body=b"{}")

    with django_capture_on_commit_callbacks() as enqueued:
        response = admin_client.post(
            url(WebhookDelivery, "changelist"),
            {"action": "process_again", "_selected_action": [rejected.pk, waiting.pk]},
            follow=True,
        )

    assert "1 delivery queued to be processed again." in response.content.decode()
    rejected.refresh_from_db()
    assert (rejected.state, rejected.error) == ("received", "")
    assert len(enqueued) == 1


def test_dead_letters_mark_resolved_counts_only_changed_rows(source):
    ingest_batch(
        source=source,
        messages=[],
        rejected=[RejectedItem(reason="bad", raw={}, external_id=f"x{n}") for n in range(2)],
    )
    first, second = DeadLetter.objects.order_by("id")

    assert dead_letters_mark_resolved(ids=[first.pk]) == 1
    assert dead_letters_mark_resolved(ids=[first.pk, second.pk, second.pk, 999_999]) == 1
    assert dead_letters_mark_resolved(ids=[]) == 0
    assert list(DeadLetter.objects.values_list("resolved", flat=True)) == [True, True]


def test_dead_letter_page_shows_reason_and_payload(admin_client, desk):
    page = admin_client.get(url(DeadLetter, "change", desk.dead_letter.pk)).content.decode()
    assert "missing author" in page
    assert "&quot;x1&quot;" in page


# --- Pages that show related rows --------------------------------------------------------------


def test_ticket_page_shows_its_conversation_read_only(admin_client, desk):
    ingest_batch(
        source=desk.source,
        messages=[inbound("m-bag-2", author="cust1", reply_to="m-bag", text="Still waiting")],
    )

    page = admin_client.get(url(Ticket, "change", desk.ticket_bag.pk)).content.decode()

    assert "Where is my bag? Tag KL1234" in page
    assert "Still waiting" in page
    assert "Flight delayed again" not in page
    assert 'name="messages-0-text"' not in page


def test_message_page_shows_raw_payload_read_only(admin_client, desk):
    page = admin_client.get(url(Message, "change", desk.message_bag.pk)).content.decode()
    assert "&quot;m-bag&quot;" in page
    assert 'name="raw"' not in page


def test_delivery_page_shows_attempts_and_key_read_only(admin_client, desk):
    page = admin_client.get(url(OutboundDelivery, "change", desk.delivery.pk)).content.decode()
    assert "read timeout after 10s" in page
    assert str(desk.delivery.idempotency_key) in page
    assert 'name="idempotency_key"' not in page


def test_user_page_has_the_agent_profile_inline(admin_client, desk):
    page = admin_client.get(url(User, "change", desk.agent.user.pk)).content.decode()
    assert 'name="agent_profile-0-capacity"' in page


def test_queue_members_use_the_horizontal_filter(admin_client, desk):
    page = admin_client.get(url(Queue, "change", desk.queue.pk)).content.decode()
    assert "selectfilter" in page


def test_template_page_has_variant_inline(admin_client, desk):
    page = admin_client.get(url(ReplyTemplate, "change", desk.template.pk)).content.decode()
    assert 'name="variants-0-body"' in page
    assert "Thank you, {customer_name}!" in page


# --- Query counts ------------------------------------------------------------------------------


@pytest.fixture
def thirty_tickets(source, default_queue) -> None:
    ingest_batch(
        source=source,
        messages=[inbound(f"n{i}", author=f"cust{i}", text=f"Question {i}") for i in range(30)],
    )
    agent = AgentProfileFactory().user
    tag = TagFactory(name="vip")
    Ticket.objects.update(assignee=agent)
    for ticket in Ticket.objects.all():
        ticket.tags.add(tag)
    assert (Ticket.objects.count(), Message.objects.count()) == (30, 30)


# Session, user, count, page rows, filter choices (queues, sources): independent of the row count.
MAX_CHANGELIST_QUERIES = 8


@pytest.mark.parametrize("model", [Ticket, Message], ids=lambda m: m._meta.model_name)
def test_changelist_queries_do_not_grow_with_rows(
    admin_client, thirty_tickets, model, django_assert_max_num_queries
):
    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES):
        response = admin_client.get(url(model, "changelist"))
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 30
