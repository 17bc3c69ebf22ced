"""End to end through a real Celery worker process, real Redis and the demo connector."""

import time

import pytest

from inbox.connectors.simulated.platform import SimulatedPlatform
from inbox.models import DeliveryAttempt, Message, OutboundDelivery, Source, Ticket
from inbox.services.ingest import ingest_batch
from inbox.services.replies import reply_create
from inbox.tasks.polling import poll_source
from tests.factories import AgentProfileFactory, SourceFactory, inbound

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]


def wait_for(check, timeout=45.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _poll_locked(source) -> bool:
    from inbox.services.locks import KEY_PREFIX, redis_client

    return bool(redis_client().exists(f"{KEY_PREFIX}poll:{source.pk}"))


@pytest.fixture
def demo_source(default_queue, redis_client):
    return SourceFactory(
        name="worker-demo", default_queue=default_queue, account_id="demo-brand",
        config={"seed": 11, "rate_per_minute": 6000, "max_batch": 25},
    )


def test_worker_polls_demo_source_into_tickets(celery_worker, demo_source):
    # The first poll starts the demo clock; traffic is due from then on.
    poll_source.delay(demo_source.pk)
    wait_for(lambda: Source.objects.get(pk=demo_source.pk).last_success_at, what="the first poll")
    time.sleep(0.5)
    poll_source.delay(demo_source.pk)
    wait_for(lambda: Message.objects.filter(source=demo_source).exists(), what="messages from a poll")
    wait_for(lambda: not _poll_locked(demo_source), what="the poll to finish")
    source = Source.objects.get(pk=demo_source.pk)
    stored = Message.objects.filter(source=source).count()
    assert stored > 0 and Ticket.objects.filter(source=source).exists()
    assert source.cursor["n"] >= stored  # the cursor covers what was stored


def test_worker_sends_reply_once_across_a_timeout(celery_worker, demo_source):
    Source.objects.filter(pk=demo_source.pk).update(
        config={**demo_source.config, "reply_failure_rate": 1.0, "reply_failure_kind": "timeout"}
    )
    ingest_batch(source=demo_source, messages=[inbound("c1", text="Waar is mijn koffer?")])
    agent = AgentProfileFactory().user
    delivery = reply_create(ticket=Ticket.objects.get(), author=agent, text="We zoeken het uit!")

    wait_for(lambda: OutboundDelivery.objects.get(pk=delivery.pk).state == "sent", what="the reply sent")
    delivery.refresh_from_db()
    platform = SimulatedPlatform(demo_source.pk)
    assert platform.reply_count() == 1
    assert list(DeliveryAttempt.objects.filter(delivery=delivery).values_list("outcome", flat=True)) == [
        "unknown", "found"
    ]
    assert Message.objects.get(pk=delivery.message_id).external_id == delivery.platform_id


def test_worker_stores_permanent_failure_with_platform_reason(celery_worker, demo_source):
    Source.objects.filter(pk=demo_source.pk).update(
        config={**demo_source.config, "reply_failure_rate": 1.0, "reply_failure_kind": "permanent"}
    )
    ingest_batch(source=demo_source, messages=[inbound("c1")])
    delivery = reply_create(ticket=Ticket.objects.get(), author=AgentProfileFactory().user, text="Hi")
    wait_for(lambda: OutboundDelivery.objects.get(pk=delivery.pk).state == "failed", what="the failure")
    delivery.refresh_from_db()
    assert delivery.last_error == "simulated 422: status is a duplicate of a recent post"
    assert SimulatedPlatform(demo_source.pk).reply_count() == 0


def test_worker_assigns_new_ticket_to_online_agent_who_speaks_the_language(celery_worker, demo_source):
    from inbox.services.presence import presence_connect

    dutch = AgentProfileFactory(languages=["nl", "en"], capacity=5)
    english = AgentProfileFactory(languages=["en"], capacity=5)
    for profile in (dutch, english):
        demo_source.default_queue.members.add(profile.user)
        presence_connect(user_id=profile.user.pk, connection_id=f"tab-{profile.pk}")

    ingest_batch(source=demo_source, messages=[
        inbound("nl1", text="Mijn koffer is niet aangekomen op Schiphol, wat moet ik doen?")
    ])
    ticket = Ticket.objects.get()
    assert ticket.language == "nl"
    wait_for(lambda: Ticket.objects.get(pk=ticket.pk).assignee_id, what="the assignment")
    assert Ticket.objects.get(pk=ticket.pk).assignee == dutch.user
