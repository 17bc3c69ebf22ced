import pytest
from django.utils import timezone

from inbox.connectors.base import AuthenticationFailed, PermanentError, RateLimited, RetryableError
from inbox.models import DeliveryAttempt, Message, OutboundDelivery, Ticket, TicketEvent
from inbox.services.ingest import ingest_batch
from inbox.services.locks import lock
from inbox.services.replies import (
    ReplyError,
    delivery_approve,
    delivery_reject,
    delivery_retry,
    delivery_send,
    reply_create,
)
from tests.factories import AgentProfileFactory, inbound

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(db):
    return AgentProfileFactory(user__username="anna", user__first_name="Anna").user


@pytest.fixture
def ticket(scripted):
    ingest_batch(source=scripted.source, messages=[inbound("c1", text="Where is my bag?", minutes=0)])
    return Ticket.objects.get()


def outcomes(delivery):
    return list(delivery.attempt_log.values_list("outcome", flat=True))


def test_reply_is_stored_queued_and_enqueued_after_commit(ticket, agent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        delivery = reply_create(ticket=ticket, author=agent, text="  Hi! Could you DM us your file number?  ")

    message = delivery.message
    assert (message.text, message.direction, message.delivery_state) == (
        "Hi! Could you DM us your file number?", "out", "queued")
    assert message.in_reply_to.external_id == "c1" and message.in_reply_to_external_id == "c1"
    assert message.external_id is None and message.is_public is True
    ticket.refresh_from_db()
    assert ticket.first_response_at == message.created_at
    assert ticket.status == Ticket.Status.OPEN
    assert delivery.state == OutboundDelivery.State.QUEUED
    types = list(TicketEvent.objects.filter(actor=agent).values_list("type", flat=True))
    assert types == ["message.created", "ticket.first_response", "ticket.status_changed", "delivery.updated"]
    # publish + enqueue, both only after commit
    assert len(callbacks) == 2


def test_second_reply_keeps_first_response_time(ticket, agent):
    first = reply_create(ticket=ticket, author=agent, text="one")
    reply_create(ticket=ticket, author=agent, text="two")
    ticket.refresh_from_db()
    assert ticket.first_response_at == first.message.created_at


def test_empty_reply_is_refused(ticket, agent):
    with pytest.raises(ReplyError, match="empty"):
        reply_create(ticket=ticket, author=agent, text=" \n ")
    assert not Message.objects.filter(direction="out").exists()


def test_send_stores_platform_id_and_customer_answer_threads_onto_ticket(scripted, ticket, agent):
    delivery = reply_create(ticket=ticket, author=agent, text="Sorry to hear that!")
    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.state == "sent" and delivery.state == "sent" and delivery.platform_id == "p1"
    assert Message.objects.get(pk=delivery.message_id).external_id == "p1"
    ingest_batch(source=scripted.source, messages=[inbound("c2", reply_to="p1", minutes=30)])
    assert Message.objects.get(external_id="c2").ticket == ticket
    assert Ticket.objects.count() == 1


def test_timeout_after_post_then_retry_posts_exactly_once(scripted, ticket, agent):
    scripted.sends.extend(["post-then-timeout", "ok"])
    delivery = reply_create(ticket=ticket, author=agent, text="We are on it")

    first = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert first.state == "queued" and first.retry_in is not None
    assert delivery.outcome_unknown is True

    second = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert second.state == "sent"
    assert len(scripted.posts) == 1 and scripted.send_calls == 1
    assert outcomes(delivery) == ["unknown", "found"]
    assert delivery.platform_id == "p1" and delivery.attempts == 1


def test_running_the_task_twice_after_success_posts_once(scripted, ticket, agent):
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    delivery_send(delivery_id=delivery.pk)
    again = delivery_send(delivery_id=delivery.pk)
    assert again.state == "sent" and again.detail == "already settled"
    assert scripted.send_calls == 1


def test_retryable_error_backs_off_and_honours_reset_time(scripted, ticket, agent):
    scripted.sends.extend([RateLimited("429 Too Many Requests", retry_after=120.0)])
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    outcome = delivery_send(delivery_id=delivery.pk)
    assert outcome.state == "queued" and outcome.retry_in >= 120.0
    delivery.refresh_from_db()
    assert delivery.outcome_unknown is False and "429" in delivery.last_error
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    assert outcomes(delivery) == ["retryable", "sent"]


def test_permanent_error_is_stored_with_reason_and_can_be_retried_by_hand(scripted, ticket, agent):
    scripted.sends.extend([PermanentError("422: Validation failed: Text character limit of 500 exceeded")])
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    assert delivery_send(delivery_id=delivery.pk).state == "failed"
    delivery.refresh_from_db()
    assert delivery.last_error == "422: Validation failed: Text character limit of 500 exceeded"
    assert Message.objects.get(pk=delivery.message_id).delivery_state == "failed"
    assert TicketEvent.objects.filter(type="delivery.updated", payload__state="failed").count() == 1

    delivery_retry(delivery=delivery, actor=agent)
    delivery.refresh_from_db()
    assert delivery.state == "queued"
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    with pytest.raises(ReplyError, match="only failed replies"):
        delivery_retry(delivery=delivery, actor=agent)


def test_final_retryable_attempt_gives_up_with_reason(scripted, ticket, agent):
    scripted.sends.extend([RetryableError("503 Service Unavailable")])
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    outcome = delivery_send(delivery_id=delivery.pk, final_attempt=True)
    delivery.refresh_from_db()
    assert outcome.state == "failed"
    assert delivery.last_error == "gave up after 1 attempts: RetryableError: 503 Service Unavailable"


def test_authentication_failure_fails_reply_and_flags_source(scripted, ticket, agent):
    scripted.sends.extend([AuthenticationFailed("401 invalid token")])
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    assert delivery_send(delivery_id=delivery.pk).state == "failed"
    scripted.source.refresh_from_db()
    assert scripted.source.needs_reauth is True


def test_a_lookup_refused_after_a_timeout_fails_the_reply_without_posting_blind(scripted, ticket, agent):
    scripted.sends.extend(["post-then-timeout"])
    scripted.finds.extend([AuthenticationFailed("401 token revoked")])
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    assert delivery_send(delivery_id=delivery.pk).state == "queued"  # timed out after posting
    assert delivery_send(delivery_id=delivery.pk).state == "failed"  # the lookup was refused
    delivery.refresh_from_db()
    assert delivery.outcome_unknown is True
    assert delivery.last_error == (
        "authentication failed: could not check whether an earlier attempt posted: 401 token revoked")
    assert scripted.send_calls == 1
    scripted.source.refresh_from_db()
    assert scripted.source.needs_reauth is True


def test_delivery_in_progress_elsewhere_is_left_alone(scripted, ticket, agent):
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    held = lock(f"delivery:{delivery.pk}", ttl_seconds=30)
    assert held.acquire()
    try:
        assert delivery_send(delivery_id=delivery.pk).state == "busy"
    finally:
        held.release()
    assert scripted.send_calls == 0


def test_echo_polled_before_send_recorded_is_folded_into_reply(scripted, ticket, agent):
    scripted.sends.extend(["post-then-timeout"])
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    delivery_send(delivery_id=delivery.pk)
    # The platform shows our post (p1) in a poll before we learn the outcome.
    echo_at = timezone.now()
    ingest_batch(source=scripted.source, messages=[
        inbound("p1", reply_to="c1", brand=True, author="brand", at=echo_at),
        inbound("c3", reply_to="p1", at=echo_at),
    ])
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    assert Message.objects.filter(external_id="p1").get().pk == delivery.message_id
    assert Message.objects.get(external_id="c3").in_reply_to_id == delivery.message_id
    assert Message.objects.filter(direction="out").count() == 1


def test_crash_mid_send_is_recovered_by_lookup(scripted, ticket, agent):
    delivery = reply_create(ticket=ticket, author=agent, text="Hello")
    # A worker died after posting: state sending, outcome unknown, post exists.
    scripted.post(delivery)
    OutboundDelivery.objects.filter(pk=delivery.pk).update(state="sending", attempts=1, outcome_unknown=True)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    assert scripted.send_calls == 0
    assert DeliveryAttempt.objects.get(delivery=delivery).outcome == "found"


@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="lea", role="lead").user


def test_reply_on_ticket_needing_approval_is_held_until_a_lead_approves(
    scripted, ticket, agent, lead, django_capture_on_commit_callbacks
):
    Ticket.objects.filter(pk=ticket.pk).update(reply_approval_required=True)
    with django_capture_on_commit_callbacks() as held_callbacks:
        delivery = reply_create(ticket=Ticket.objects.get(pk=ticket.pk), author=agent, text="Statement")
    assert delivery.state == "awaiting_approval"
    assert Message.objects.get(pk=delivery.message_id).delivery_state == "awaiting_approval"
    assert len(held_callbacks) == 1  # the push only: nothing is enqueued for sending
    assert delivery_send(delivery_id=delivery.pk).state == "awaiting_approval"
    assert scripted.send_calls == 0

    with django_capture_on_commit_callbacks() as callbacks:
        delivery_approve(delivery=delivery, actor=lead)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.approved_by) == ("queued", lead)
    assert len(callbacks) == 2  # push + enqueue
    assert delivery_send(delivery_id=delivery.pk).state == "sent"


def test_only_leads_approve_and_rejection_keeps_reason(scripted, ticket, agent, lead):
    from django.core.exceptions import PermissionDenied

    Ticket.objects.filter(pk=ticket.pk).update(reply_approval_required=True)
    delivery = reply_create(ticket=Ticket.objects.get(pk=ticket.pk), author=agent, text="Statement")
    with pytest.raises(PermissionDenied):
        delivery_approve(delivery=delivery, actor=agent)
    with pytest.raises(ReplyError, match="say why"):
        delivery_reject(delivery=delivery, actor=lead, reason="  ")

    delivery_reject(delivery=delivery, actor=lead, reason="Legal must see this first")
    delivery.refresh_from_db()
    assert delivery.state == "failed"
    assert delivery.last_error == "rejected by lea: Legal must see this first"
    with pytest.raises(ReplyError, match="only replies awaiting approval can be approved"):
        delivery_approve(delivery=delivery, actor=lead)
    assert scripted.send_calls == 0
