"""Agent replies: stored first (outbox), posted by the ``outbound`` worker, exactly once.

``reply_create`` writes the outbound message and its delivery row in one transaction
and enqueues the send after commit. ``delivery_send`` is what the worker runs for
one attempt: it never posts twice, because

* a Redis lock lets only one worker handle a delivery at a time;
* before calling the platform the delivery is marked ``outcome_unknown``; only a
  definite answer clears it, so after a timeout or a crash the next attempt first
  asks the platform whether the post exists (``find_sent``) before posting again;
* connectors pass the delivery's idempotency key where the platform takes one.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.text import normalize_newlines
from django.utils.translation import gettext as _

from inbox.connectors.base import (
    AuthenticationFailed,
    Connector,
    ConnectorError,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    SendResult,
)
from inbox.connectors.limits import mention_length, replies_for
from inbox.connectors.registry import get_connector
from inbox.models import (
    DeliveryAttempt,
    Message,
    OutboundDelivery,
    Platform,
    ReplyTemplate,
    Source,
    Ticket,
    TicketEvent,
)
from inbox.realtime.publish import publish_on_commit
from inbox.selectors.sla import sla_config
from inbox.selectors.windows import describe_window, window_for_reply
from inbox.services.events import event_for
from inbox.services.locks import lock
from inbox.services.normalize import clean_text
from inbox.services.sla import sla_state_event
from inbox.sla.policy import TicketClocks, sla_for_agent_reply

logger = logging.getLogger(__name__)

# Longer than any connector's HTTP timeout, so a live sender never loses its lock.
_SEND_LOCK_SECONDS = 120


class ReplyError(ValueError):
    """The reply cannot be stored as given; the message says why."""


class ReplyHeldBack(ReplyError):
    """Messages arrived on the ticket after the ones the agent had seen; nothing was stored.

    ``messages`` are those messages in id order (customer messages, and replies and
    notes of other agents), loaded for display. The agent reads them and sends again
    with a newer ``seen_message_id``.
    """

    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages
        directions = {message.direction for message in messages}
        if Message.Direction.INBOUND in directions:
            text = _("A new message from the customer arrived while you were writing. Read it, then send again.")
        elif Message.Direction.OUTBOUND in directions:
            text = _("Another agent replied while you were writing. Read the reply, then send again.")
        else:
            text = _("Another agent added an internal note while you were writing. Read it, then send again.")
        super().__init__(text)


def _enqueue_send(delivery_id: int) -> None:
    from inbox.tasks.outbound import deliver_reply

    deliver_reply.delay(delivery_id)


def _clean_reply_text(text: str, *, what: str) -> str:
    # Browsers send line breaks as CRLF; platforms (and the length counters) count LF.
    text = normalize_newlines(clean_text(text)).strip()
    if not text:
        raise ReplyError(f"{what} text is empty")
    if len(text) > settings.WEBCARE["MAX_TEXT_LENGTH"]:
        raise ReplyError(f"{what} is {len(text)} characters long")
    return text


def reply_create(
    *,
    ticket: Ticket,
    author: AbstractBaseUser,
    text: str,
    is_public: bool | None = None,
    seen_message_id: int | None = None,
    reply_template: ReplyTemplate | None = None,
) -> OutboundDelivery:
    """Store an agent's reply on ``ticket`` and queue it for sending.

    ``is_public`` None answers the way the customer last wrote (public or private). The
    platform's rules apply (``inbox.connectors.limits``): a kind of reply it does not take,
    or a text longer than it allows, is a ``ReplyError``.

    ``seen_message_id`` is the newest message the agent had seen when they wrote: if a
    customer message, or another agent's reply or note, arrived after it, the reply is
    held back (``ReplyHeldBack``, nothing stored) so two agents never answer at once and
    nobody answers a question that has moved on. ``reply_template`` is the template the
    reply was started from: stored on the message, its usage counted.
    """
    text = _clean_reply_text(text, what="reply")
    now = timezone.now()
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if seen_message_id is not None:
            newer = _arrived_since(ticket, seen_message_id=seen_message_id, author=author)
            if newer:
                raise ReplyHeldBack(newer)
        inbound = (
            Message.objects.filter(ticket=ticket, direction=Message.Direction.INBOUND)
            .exclude(external_id=None)
            .order_by("-created_at", "-id")
        )
        answering = inbound.first()
        if is_public is None:
            is_public = answering.is_public if answering is not None else not ticket.is_private
        elif answering is not None and answering.is_public != is_public:
            # Answer the newest message of the same kind, if there is one.
            answering = inbound.filter(is_public=is_public).first() or answering
        _check_platform_rules(ticket, text=text, is_public=is_public, answering=answering)
        message = Message.objects.create(
            source_id=ticket.source_id,
            ticket=ticket,
            direction=Message.Direction.OUTBOUND,
            is_public=is_public,
            in_reply_to=answering,
            in_reply_to_external_id=answering.external_id if answering else "",
            conversation_id=answering.conversation_id if answering else "",
            author_user=author,
            text=text,
            language=ticket.language,
            created_at=now,
            delivery_state=Message.Delivery.QUEUED,
            reply_template=reply_template,
        )
        if reply_template is not None:
            ReplyTemplate.objects.filter(pk=reply_template.pk).update(usage_count=F("usage_count") + 1)
        held = ticket.reply_approval_required
        if held:
            message.delivery_state = Message.Delivery.AWAITING_APPROVAL
            message.save(update_fields=["delivery_state"])
        delivery = OutboundDelivery.objects.create(
            message=message,
            source_id=ticket.source_id,
            state=OutboundDelivery.State.AWAITING_APPROVAL if held else OutboundDelivery.State.QUEUED,
        )
        events = [
            event_for(ticket, "message.created", actor_id=author.pk, message_id=message.pk,
                      direction=message.direction, is_public=is_public),
        ]
        fields = ["last_message_at", "updated_at"]
        ticket.last_message_at = max(ticket.last_message_at, now)
        first_response = ticket.first_response_at is None
        # The reply meets the first or next response target; it also stamps first_response_at.
        sla = sla_for_agent_reply(
            TicketClocks.of(ticket), sla_config().applied(ticket.sla_policy_id, ticket.queue_id),
            at=now, now=now,
        )
        fields += sla.apply(ticket)
        if sla.state_change is not None:
            events.append(sla_state_event(ticket=ticket, change=sla.state_change))
        if first_response:
            ticket.first_response_at = now
            fields.append("first_response_at")
            events.append(event_for(ticket, "ticket.first_response", actor_id=author.pk,
                                    first_response_at=now.isoformat()))
        if ticket.status == Ticket.Status.NEW:
            ticket.status = Ticket.Status.OPEN
            fields.append("status")
            events.append(event_for(ticket, "ticket.status_changed", actor_id=author.pk,
                                    old="new", new="open", reason="agent replied"))
        ticket.save(update_fields=list(dict.fromkeys(fields)))
        events.append(_delivery_event(ticket, delivery, actor_id=author.pk))
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
        if not held:
            transaction.on_commit(lambda: _enqueue_send(delivery.pk))
    return delivery


def _arrived_since(ticket: Ticket, *, seen_message_id: int, author: AbstractBaseUser) -> list[Message]:
    """Messages the agent has not seen that change what they should write: the customer's,
    and replies and notes of anyone else (other agents, brand posts made elsewhere, escalation
    answers). The agent's own replies from another tab do not count."""
    others = Q(direction__in=(Message.Direction.OUTBOUND, Message.Direction.NOTE)) & ~Q(author_user=author)
    return list(
        Message.objects.filter(ticket=ticket, pk__gt=seen_message_id)
        .filter(Q(direction=Message.Direction.INBOUND) | others)
        .select_related("author_contact", "author_user", "delivery", "reply_template")
        .order_by("pk")
    )


def _platform_label(platform: str) -> str:
    return str(Platform(platform).label) if platform in Platform.values else platform


def _check_platform_rules(ticket: Ticket, *, text: str, is_public: bool, answering: Message | None) -> None:
    platform = Source.objects.filter(pk=ticket.source_id).values_list("platform", flat=True).get()
    rules = replies_for(platform)
    limit = rules.limit_for(is_public=is_public)
    label = _platform_label(platform)
    if limit is None:
        if is_public:
            raise ReplyError(_("%(platform)s does not take public replies: send a private reply.")
                             % {"platform": label})
        raise ReplyError(_("%(platform)s does not take private replies: send a public reply.")
                         % {"platform": label})
    if is_public and ((answering is not None and not answering.is_public)
                      or (answering is None and ticket.is_private)):
        raise ReplyError(_("This conversation is private: there is no public message to reply to."))
    window = window_for_reply(platform=platform, is_public=is_public, answering=answering, now=timezone.now())
    if not window.can_send:
        raise ReplyError(
            describe_window(platform, window, answering_is_public=bool(answering and answering.is_public))
        )
    if limit.max_length is not None:
        length = limit.length(text)
        if rules.mentions_author and answering is not None and answering.author_contact_id:
            length += mention_length(platform, answering.author_contact.handle, text)
        if length > limit.max_length:
            raise ReplyError(
                _("This reply is %(length)d characters long; %(platform)s allows %(limit)d.")
                % {"length": length, "platform": label, "limit": limit.max_length}
            )


def note_create(*, ticket: Ticket, author: AbstractBaseUser, text: str) -> Message:
    """Add an internal note to ``ticket``: seen by the team only, never sent to a platform.

    Stored like escalation notes (direction ``note``, not public); it changes no SLA clock
    and no status. Writes ``message.created``."""
    text = _clean_reply_text(text, what="note")
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        message = Message.objects.create(
            source_id=ticket.source_id,
            ticket=ticket,
            direction=Message.Direction.NOTE,
            is_public=False,
            author_user=author,
            text=text,
            created_at=timezone.now(),
        )
        event = event_for(ticket, "message.created", actor_id=author.pk, message_id=message.pk,
                          direction=message.direction, is_public=False)
        event.save()
        publish_on_commit([event])
    return message


def delivery_approve(*, delivery: OutboundDelivery, actor: AbstractBaseUser) -> OutboundDelivery:
    """A lead releases a reply held for approval; it is queued for sending."""
    _require_lead(actor)
    with transaction.atomic():
        delivery = _lock_delivery(delivery, OutboundDelivery.State.AWAITING_APPROVAL, "approved")
        delivery.state = OutboundDelivery.State.QUEUED
        delivery.approved_by = actor
        delivery.save(update_fields=["state", "approved_by"])
        Message.objects.filter(pk=delivery.message_id).update(delivery_state=Message.Delivery.QUEUED)
        event = _delivery_event(delivery.message.ticket, delivery, actor_id=actor.pk, approved=True)
        event.save()
        publish_on_commit([event])
        transaction.on_commit(lambda: _enqueue_send(delivery.pk))
    return delivery


def delivery_reject(*, delivery: OutboundDelivery, actor: AbstractBaseUser, reason: str) -> OutboundDelivery:
    """A lead stops a held reply; it is never sent and the agent sees why."""
    _require_lead(actor)
    reason = clean_text(reason).strip()
    if not reason:
        raise ReplyError("say why the reply is rejected")
    with transaction.atomic():
        delivery = _lock_delivery(delivery, OutboundDelivery.State.AWAITING_APPROVAL, "rejected")
        delivery.state = OutboundDelivery.State.FAILED
        delivery.last_error = f"rejected by {actor.get_username()}: {reason}"
        delivery.failed_at = timezone.now()
        delivery.save(update_fields=["state", "last_error", "failed_at"])
        Message.objects.filter(pk=delivery.message_id).update(delivery_state=Message.Delivery.FAILED)
        event = _delivery_event(delivery.message.ticket, delivery, actor_id=actor.pk, rejected=True)
        event.save()
        publish_on_commit([event])
    return delivery


def _require_lead(actor: AbstractBaseUser) -> None:
    from inbox.selectors.tickets import user_is_lead

    if not user_is_lead(actor):
        raise PermissionDenied("only team leads and admins approve replies")


def _lock_delivery(delivery: OutboundDelivery, expected: str, verb: str) -> OutboundDelivery:
    locked = (
        OutboundDelivery.objects.select_for_update(of=("self",))
        .select_related("message__ticket")
        .get(pk=delivery.pk)
    )
    if locked.state != expected:
        raise ReplyError(f"only replies awaiting approval can be {verb}; this one is {locked.state}")
    return locked


def delivery_retry(*, delivery: OutboundDelivery, actor: AbstractBaseUser) -> OutboundDelivery:
    """Send a failed reply again (an agent pressed "retry").

    On a ticket whose replies need approval, a reply no lead approved (a rejected one)
    goes back to awaiting approval instead: retrying never gets round a lead's "no"."""
    with transaction.atomic():
        delivery = (
            OutboundDelivery.objects.select_for_update(of=("self",))
            .select_related("message__ticket")
            .get(pk=delivery.pk)
        )
        if delivery.state != OutboundDelivery.State.FAILED:
            raise ReplyError(f"only failed replies can be retried; this one is {delivery.state}")
        held = delivery.message.ticket.reply_approval_required and delivery.approved_by_id is None
        if held:
            delivery.state = OutboundDelivery.State.AWAITING_APPROVAL
            message_state = Message.Delivery.AWAITING_APPROVAL
        else:
            delivery.state = OutboundDelivery.State.QUEUED
            message_state = Message.Delivery.QUEUED
        delivery.failed_at = None
        delivery.save(update_fields=["state", "failed_at"])
        Message.objects.filter(pk=delivery.message_id).update(delivery_state=message_state)
        event = _delivery_event(delivery.message.ticket, delivery, actor_id=actor.pk, retried=True)
        event.save()
        publish_on_commit([event])
        if not held:
            transaction.on_commit(lambda: _enqueue_send(delivery.pk))
    return delivery


@dataclass(frozen=True, slots=True)
class SendOutcome:
    state: str
    #: Seconds until the worker should try again; None when done (sent or failed).
    retry_in: float | None = None
    detail: str = ""


def delivery_send(*, delivery_id: int, final_attempt: bool = False) -> SendOutcome:
    """One send attempt for a delivery. Safe to run twice and concurrently."""
    sender = lock(f"delivery:{delivery_id}", ttl_seconds=_SEND_LOCK_SECONDS)
    if not sender.acquire():
        return SendOutcome("busy", detail="another worker is sending this reply")
    try:
        return _attempt(delivery_id, final_attempt)
    finally:
        if sender.owned():
            sender.release()


def _attempt(delivery_id: int, final_attempt: bool) -> SendOutcome:
    try:
        delivery = OutboundDelivery.objects.select_related("message", "source").get(pk=delivery_id)
    except OutboundDelivery.DoesNotExist:
        return SendOutcome("missing", detail=f"no delivery {delivery_id}")
    if delivery.state in (OutboundDelivery.State.SENT, OutboundDelivery.State.FAILED):
        return SendOutcome(delivery.state, detail="already settled")
    if delivery.state == OutboundDelivery.State.AWAITING_APPROVAL:
        return SendOutcome(delivery.state, detail="held until a lead approves it")
    started = timezone.now()
    with get_connector(delivery.source) as connector:
        return _send_with(connector, delivery, started, final_attempt)


def _send_with(
    connector: Connector, delivery: OutboundDelivery, started, final_attempt: bool
) -> SendOutcome:
    # A previous attempt may have posted without us knowing: look before posting.
    if delivery.outcome_unknown or delivery.state == OutboundDelivery.State.SENDING:
        try:
            found = connector.find_sent(delivery)
        except RetryableError as exc:
            return _retryable(delivery, started, exc, final_attempt, unknown=True)
        except PermanentError as exc:
            # Whether the earlier attempt posted stays unknown: never post blind.
            return _permanent(delivery, started, exc, unknown=True,
                              context="could not check whether an earlier attempt posted")
        if found is not None:
            _record_sent(delivery, found, started, DeliveryAttempt.Outcome.FOUND)
            return SendOutcome(OutboundDelivery.State.SENT, detail="found an earlier post")

    delivery.state = OutboundDelivery.State.SENDING
    delivery.attempts += 1
    delivery.outcome_unknown = True
    delivery.save(update_fields=["state", "attempts", "outcome_unknown"])
    try:
        result = connector.send_reply(delivery)
    except OutcomeUnknown as exc:
        return _retryable(delivery, started, exc, final_attempt, unknown=True)
    except RetryableError as exc:
        return _retryable(delivery, started, exc, final_attempt, unknown=False)
    except PermanentError as exc:
        return _permanent(delivery, started, exc)
    except ConnectorError as exc:
        return _retryable(delivery, started, exc, final_attempt, unknown=True)
    _record_sent(delivery, result, started, DeliveryAttempt.Outcome.SENT)
    return SendOutcome(OutboundDelivery.State.SENT)


def _permanent(
    delivery: OutboundDelivery, started, exc: PermanentError, *, unknown: bool = False, context: str = ""
) -> SendOutcome:
    """The platform said no for good: the delivery fails with its reason. Refused credentials
    also mark the source "needs re-authorization"."""
    reason = f"{context}: {exc}" if context else str(exc)
    if isinstance(exc, AuthenticationFailed):
        Source.objects.filter(pk=delivery.source_id).update(
            needs_reauth=True, last_error=f"reply refused: {exc}", last_error_at=timezone.now()
        )
        reason = f"authentication failed: {reason}"
    _record_failed(delivery, started, reason, unknown=unknown)
    return SendOutcome(OutboundDelivery.State.FAILED, detail=str(exc))


def backoff_seconds(attempt: int, *, retry_after: float | None = None) -> float:
    """Exponential back-off with full jitter, never sooner than the platform asked."""
    cap = settings.WEBCARE["DELIVERY_BACKOFF_MAX_SECONDS"]
    delay = random.uniform(0.5, 1.0) * min(cap, 2 ** max(attempt, 1))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _retryable(
    delivery: OutboundDelivery, started, exc: Exception, final_attempt: bool, *, unknown: bool
) -> SendOutcome:
    outcome = DeliveryAttempt.Outcome.UNKNOWN if unknown else DeliveryAttempt.Outcome.RETRYABLE
    reason = f"{exc.__class__.__name__}: {exc}"
    if final_attempt:
        _record_failed(delivery, started, f"gave up after {delivery.attempts} attempts: {reason}",
                       outcome=outcome, unknown=unknown)
        return SendOutcome(OutboundDelivery.State.FAILED, detail=reason)
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery, started_at=started, finished_at=timezone.now(), outcome=outcome, error=reason
        )
        delivery.state = OutboundDelivery.State.QUEUED
        delivery.outcome_unknown = unknown
        delivery.last_error = reason
        delivery.save(update_fields=["state", "outcome_unknown", "last_error"])
    retry_after = getattr(exc, "retry_after", None)
    return SendOutcome(
        OutboundDelivery.State.QUEUED,
        retry_in=backoff_seconds(delivery.attempts, retry_after=retry_after),
        detail=reason,
    )


def _record_sent(delivery: OutboundDelivery, result: SendResult, started, outcome: str) -> None:
    now = timezone.now()
    platform_id = str(result.platform_id)
    with transaction.atomic():
        message = Message.objects.select_for_update().get(pk=delivery.message_id)
        # The platform's echo of this post may have been polled before we heard back:
        # fold that copy into our message so the thread keeps one row.
        echo = (
            Message.objects.filter(source_id=delivery.source_id, external_id=platform_id)
            .exclude(pk=message.pk)
            .first()
        )
        if echo is not None:
            Message.objects.filter(in_reply_to=echo).update(in_reply_to=message)
            echo.delete()
        message.external_id = platform_id
        message.delivery_state = Message.Delivery.SENT
        message.save(update_fields=["external_id", "delivery_state"])
        delivery.state = OutboundDelivery.State.SENT
        delivery.outcome_unknown = False
        delivery.platform_id = platform_id
        delivery.sent_at = now
        delivery.last_error = ""
        delivery.save(update_fields=["state", "outcome_unknown", "platform_id", "sent_at", "last_error"])
        DeliveryAttempt.objects.create(delivery=delivery, started_at=started, finished_at=now, outcome=outcome)
        ticket = Ticket.objects.get(pk=message.ticket_id)
        event = _delivery_event(ticket, delivery)
        event.save()
        publish_on_commit([event])


def _record_failed(
    delivery: OutboundDelivery, started, reason: str, *, outcome: str = DeliveryAttempt.Outcome.PERMANENT,
    unknown: bool = False,
) -> None:
    now = timezone.now()
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            delivery=delivery, started_at=started, finished_at=now, outcome=outcome, error=reason
        )
        delivery.state = OutboundDelivery.State.FAILED
        delivery.outcome_unknown = unknown
        delivery.last_error = reason
        delivery.failed_at = now
        delivery.save(update_fields=["state", "outcome_unknown", "last_error", "failed_at"])
        Message.objects.filter(pk=delivery.message_id).update(delivery_state=Message.Delivery.FAILED)
        ticket = Ticket.objects.get(pk=delivery.message.ticket_id)
        event = _delivery_event(ticket, delivery)
        event.save()
        publish_on_commit([event])
    logger.warning("delivery %s failed: %s", delivery.pk, reason)


def _delivery_event(ticket: Ticket, delivery: OutboundDelivery, *, actor_id: int | None = None,
                    **extra: object) -> TicketEvent:
    return event_for(
        ticket, "delivery.updated", actor_id=actor_id,
        delivery_id=delivery.pk, message_id=delivery.message_id, state=delivery.state,
        error=delivery.last_error, platform_id=delivery.platform_id, **extra,
    )
