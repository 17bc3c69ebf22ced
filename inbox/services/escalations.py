"""Escalation to the back office: ask an internal team, get the answer back on the ticket.

An agent escalates a ticket to an :class:`InternalTeam` with a note. A team that works in
the desk (it has a queue) sees the escalation through that queue's group and answers in the
desk; a team that does not (lost luggage, the press office) gets an e-mail and answers by
replying to it. Either way the answer lands on the ticket as an internal note, the
escalation is closed and the ticket goes back to its agent.

Idempotency, decided once for every entry point:

* An escalation is answered at most once. ``escalation_answer`` on an escalation that is no
  longer waiting raises :class:`EscalationNotWaiting` (the API answers 409).
* A re-delivered copy of the e-mail that answered it (same Message-ID, or same sender and
  same text) raises :class:`InboundEmailIgnored` and stores nothing; so does an automatic
  reply (out of office, bounce). The MTA pipe exits 0 and the HTTP endpoint answers 200 for
  these, so the mail system neither bounces nor retries. A *different* reply to an answered
  or cancelled escalation raises :class:`EscalationNotWaiting`: the sender gets a bounce
  saying their reply was not stored.
* The escalation e-mail is sent at most once per escalation as far as the desk can tell: an
  ``escalation.emailed`` TicketEvent is the marker, checked under a Redis lock before
  sending (see :func:`escalation_email_send`).
"""

from __future__ import annotations

import logging
import re
import smtplib
from collections.abc import Iterable
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage as MimeMessage
from email.policy import default as default_email_policy
from email.utils import getaddresses
from typing import Any

from bs4 import BeautifulSoup, NavigableString, Tag
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone, translation
from django.utils.translation import gettext

from inbox.models import Escalation, InternalTeam, Message, Queue, Ticket, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.services.events import event_for
from inbox.services.locks import lock
from inbox.services.normalize import clean_text
from inbox.services.tickets import ticket_change_status

logger = logging.getLogger(__name__)

#: Reply address when settings.ESCALATION_REPLY_ADDRESS is not set: a plus-address per escalation.
DEFAULT_REPLY_ADDRESS = "escalations+{token}@localhost"
#: Marker line at the top of the e-mail; everything from it down in a reply is the quoted original.
REPLY_MARKER = "##- Reply above this line -##"
#: Largest inbound e-mail accepted (attachments included): the usual limit of mail servers.
MAX_EMAIL_BYTES = 25 * 1024 * 1024
#: Customer messages quoted in the e-mail, newest last.
CUSTOMER_MESSAGES_IN_EMAIL = 5
#: Longest quoted customer message in the e-mail.
CUSTOMER_MESSAGE_CHARS = 2000
#: Seconds a worker may take for one SMTP conversation before another may try.
_EMAIL_LOCK_SECONDS = 180
_EMAIL_TIMEOUT_SECONDS = 30.0
_SUBJECT_PREVIEW_CHARS = 60

# A reply token is ``secrets.token_urlsafe``: URL-safe base64 characters.
_TOKEN = r"[A-Za-z0-9_-]{8,40}"
_SUBJECT_TOKEN = re.compile(rf"\[ref:({_TOKEN})\]")
_MESSAGE_ID_TOKEN = re.compile(rf"<webcare-escalation-\d+\.({_TOKEN})@")


class EscalationError(ValueError):
    """The escalation request cannot be carried out as given; the message says why."""


class EscalationNotWaiting(EscalationError):
    """The escalation was already answered or cancelled."""


class UnknownReplyToken(EscalationError):
    """An inbound e-mail carries no reply token, or one no escalation has."""


class InboundEmailIgnored(EscalationError):
    """An inbound e-mail was recognised and deliberately not stored (duplicate, auto-reply)."""


# --- Internal teams -------------------------------------------------------------------


def internal_team_create(
    *,
    name: str,
    queue: Queue | None = None,
    email: str = "",
    target_minutes: int | None = None,
    active: bool = True,
) -> InternalTeam:
    """A back-office team: a queue of experts in the desk, an e-mail address, or both."""
    team = InternalTeam(
        name=name.strip(), queue=queue, email=email.strip(), target_minutes=target_minutes, active=active
    )
    _check_team(team)
    team.save()
    return team


def internal_team_update(*, team: InternalTeam, **changes: Any) -> InternalTeam:
    """Change a team's name, queue, e-mail address, answer target or active flag."""
    allowed = {"name", "queue", "email", "target_minutes", "active"}
    unknown = set(changes) - allowed
    if unknown:
        raise EscalationError(f"cannot change {', '.join(sorted(unknown))} of an internal team")
    for field, value in changes.items():
        setattr(team, field, value.strip() if isinstance(value, str) else value)
    _check_team(team)
    team.save(update_fields=sorted(changes))
    return team


def _check_team(team: InternalTeam) -> None:
    if not team.name:
        raise EscalationError("a team needs a name")
    if team.queue_id is None and not team.email:
        raise EscalationError(f"team {team.name!r} needs a desk queue or an e-mail address")
    if team.target_minutes is not None and team.target_minutes <= 0:
        raise EscalationError("the answer target must be at least one minute")
    if InternalTeam.objects.filter(name__iexact=team.name).exclude(pk=team.pk).exists():
        raise EscalationError(f"there is already a team called {team.name!r}")


# --- Escalate, answer, cancel ---------------------------------------------------------


def escalation_create(
    *, ticket: Ticket, team: InternalTeam, note: str, actor: AbstractBaseUser
) -> Escalation:
    """Escalate ``ticket`` to ``team`` with the agent's ``note``.

    Records the note on the ticket, starts the team's clock (``due_at``), tells the ticket's
    audience and the team's desk queue, and e-mails a team with an address after commit.
    """
    note = _clean_body(note, what="note")
    if not team.active:
        raise EscalationError(f"team {team.name!r} is not active")
    if team.queue_id is None and not team.email:
        raise EscalationError(f"team {team.name!r} has neither a desk queue nor an e-mail address")
    with transaction.atomic():
        ticket = Ticket.objects.select_for_update().get(pk=ticket.pk)
        if not ticket.is_active:
            raise EscalationError(
                f"ticket #{ticket.pk} is {ticket.status}; only active tickets can be escalated"
            )
        already = (
            Escalation.objects.filter(ticket=ticket, team=team, status=Escalation.Status.WAITING)
            .values_list("pk", flat=True)
            .first()
        )
        if already is not None:
            raise EscalationError(f"ticket #{ticket.pk} already waits on {team.name} (escalation {already})")
        escalation = Escalation.objects.create(ticket=ticket, team=team, note=note, created_by=actor)
        # The clock runs from the row's own creation time, so waiting time and due time agree.
        now = escalation.created_at
        if team.target_minutes:
            escalation.due_at = now + timedelta(minutes=team.target_minutes)
            escalation.save(update_fields=["due_at"])
        message = _note_message(
            ticket,
            text=note,
            at=now,
            author=actor,
            meta={
                "kind": "escalation.created",
                "escalation_id": escalation.pk,
                "team_id": team.pk,
                "team": team.name,
            },
        )
        details = _escalation_details(escalation)
        events = [
            event_for(
                ticket,
                "message.created",
                actor_id=actor.pk,
                message_id=message.pk,
                direction=message.direction,
                is_public=False,
            ),
            event_for(ticket, "escalation.created", actor_id=actor.pk, **details),
        ]
        events.extend(_team_copy(ticket, team, events[-1]))
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
        if team.email:
            transaction.on_commit(lambda: _enqueue_email(escalation.pk))
    return escalation


def escalation_answer(
    *,
    escalation: Escalation,
    text: str,
    answered_by: str,
    actor: AbstractBaseUser | None = None,
    email_message_id: str = "",
) -> Escalation:
    """Store the team's answer on the ticket and give the ticket back to its agent.

    ``answered_by`` names who answered (a desk user's name, or the e-mail sender); ``actor``
    is the desk user when the answer was given in the desk. Raises
    :class:`EscalationNotWaiting` when the escalation was already answered or cancelled.
    """
    text = _clean_body(text, what="answer")
    answered_by = " ".join(clean_text(answered_by).split())[:300]
    if not answered_by:
        raise EscalationError("say who answered")
    now = timezone.now()
    actor_id = actor.pk if actor is not None else None
    with transaction.atomic():
        ticket, escalation = _lock(escalation)
        _require_waiting(escalation)
        escalation.status = Escalation.Status.ANSWERED
        escalation.answer = text
        escalation.answered_by = answered_by
        escalation.answered_at = now
        escalation.save(update_fields=["status", "answer", "answered_by", "answered_at"])
        meta: dict[str, Any] = {
            "kind": "escalation.answered",
            "escalation_id": escalation.pk,
            "team_id": escalation.team_id,
            "team": escalation.team.name,
            "answered_by": answered_by,
            "via": "desk" if actor is not None else "email",
        }
        if email_message_id:
            meta["email_message_id"] = email_message_id
        message = _note_message(ticket, text=text, at=now, author=actor, meta=meta)
        events = [
            event_for(
                ticket,
                "message.created",
                actor_id=actor_id,
                message_id=message.pk,
                direction=message.direction,
                is_public=False,
            ),
            event_for(ticket, "escalation.answered", actor_id=actor_id, **_escalation_details(escalation)),
        ]
        events.extend(_team_copy(ticket, escalation.team, events[-1]))
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
        _back_to_agent(ticket, actor=actor)
    return escalation


def escalation_cancel(*, escalation: Escalation, actor: AbstractBaseUser, reason: str = "") -> Escalation:
    """Stop waiting on the team (the agent found the answer elsewhere, or escalated wrongly).

    A later answer to a cancelled escalation is refused, in the desk and by e-mail.
    """
    reason = " ".join(clean_text(reason).split())[:500]
    with transaction.atomic():
        ticket, escalation = _lock(escalation)
        _require_waiting(escalation)
        escalation.status = Escalation.Status.CANCELLED
        escalation.save(update_fields=["status"])
        event = event_for(
            ticket,
            "escalation.cancelled",
            actor_id=actor.pk,
            reason=reason,
            **_escalation_details(escalation),
        )
        events = [event, *_team_copy(ticket, escalation.team, event)]
        TicketEvent.objects.bulk_create(events)
        publish_on_commit(events)
    return escalation


def _lock(escalation: Escalation) -> tuple[Ticket, Escalation]:
    """Lock the ticket, then the escalation: the order escalation_create takes too."""
    ticket_id = Escalation.objects.filter(pk=escalation.pk).values_list("ticket_id", flat=True).first()
    if ticket_id is None:
        raise EscalationError(f"escalation {escalation.pk} does not exist")
    ticket = Ticket.objects.select_for_update().get(pk=ticket_id)
    locked = Escalation.objects.select_for_update(of=("self",)).select_related("team").get(pk=escalation.pk)
    return ticket, locked


def _require_waiting(escalation: Escalation) -> None:
    if escalation.status == Escalation.Status.ANSWERED:
        raise EscalationNotWaiting(
            f"escalation {escalation.pk} was already answered by {escalation.answered_by} "
            f"at {escalation.answered_at.isoformat()}"
        )
    if escalation.status == Escalation.Status.CANCELLED:
        raise EscalationNotWaiting(f"escalation {escalation.pk} was cancelled")


def _back_to_agent(ticket: Ticket, *, actor: AbstractBaseUser | None) -> None:
    """A ticket parked as new or pending is open again: the agent has work to do.

    Through ``ticket_change_status``, so the SLA clocks stopped while pending resume where
    they stood; it writes and publishes ``ticket.status_changed`` itself.
    """
    if ticket.status in (Ticket.Status.NEW, Ticket.Status.PENDING):
        ticket_change_status(ticket=ticket, status=Ticket.Status.OPEN, actor=actor)


def _clean_body(text: str, *, what: str) -> str:
    text = clean_text(text).strip()
    if not text:
        raise EscalationError(f"the {what} is empty")
    limit = settings.WEBCARE["MAX_TEXT_LENGTH"]
    if len(text) > limit:
        raise EscalationError(f"the {what} is {len(text)} characters long (at most {limit})")
    return text


def _note_message(
    ticket: Ticket, *, text: str, at: datetime, author: AbstractBaseUser | None, meta: dict[str, Any]
) -> Message:
    return Message.objects.create(
        source_id=ticket.source_id,
        ticket=ticket,
        direction=Message.Direction.NOTE,
        is_public=False,
        author_user=author,
        text=text,
        created_at=at,
        raw={"escalation": meta},
    )


def _escalation_details(escalation: Escalation) -> dict[str, Any]:
    team = escalation.team
    return {
        "escalation_id": escalation.pk,
        "escalation_status": escalation.status,
        "team_id": team.pk,
        "team": team.name,
        "due_at": escalation.due_at.isoformat() if escalation.due_at else None,
    }


def _team_copy(ticket: Ticket, team: InternalTeam, event: TicketEvent) -> list[TicketEvent]:
    """The same event for the team's desk queue, so its experts hear it.

    Events are pushed by their queue id. The copy leaves out the assignee, so the agent is
    not told twice.
    """
    if team.queue_id is None or team.queue_id == ticket.queue_id:
        return []
    payload = {key: value for key, value in event.payload.items() if key != "assignee_id"}
    payload["audience"] = "team"
    return [
        TicketEvent(
            ticket=ticket, queue_id=team.queue_id, type=event.type, actor_id=event.actor_id, payload=payload
        )
    ]


# --- E-mail out -----------------------------------------------------------------------


def _enqueue_email(escalation_id: int) -> None:
    from inbox.tasks.escalations import send_escalation_email

    send_escalation_email.delay(escalation_id)


def reply_address(token: str) -> str:
    """The plus-address replies to this escalation go to, from settings.ESCALATION_REPLY_ADDRESS."""
    template = getattr(settings, "ESCALATION_REPLY_ADDRESS", "") or DEFAULT_REPLY_ADDRESS
    if "{token}" not in template:
        raise EscalationError(f"ESCALATION_REPLY_ADDRESS must contain {{token}}: {template!r}")
    return template.replace("{token}", token)


def escalation_email_message(*, escalation: Escalation) -> EmailMessage:
    """The e-mail to an e-mail team: plain text only, so nothing a customer wrote can be markup."""
    ticket = escalation.ticket
    team = escalation.team
    token = escalation.reply_token
    preview = " ".join((ticket.subject or "").split())
    if len(preview) > _SUBJECT_PREVIEW_CHARS:
        preview = preview[: _SUBJECT_PREVIEW_CHARS - 1].rstrip() + "…"
    with translation.override(settings.LANGUAGE_CODE):
        subject = (
            f"[Webcare #{ticket.pk}] {team.name}: {preview or gettext('question from webcare')} [ref:{token}]"
        )
        # One line whatever a name holds: a line break in a header is refused by the mail framework.
        subject = " ".join(subject.split())
        body = _email_body(escalation)
    domain = (settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "localhost").strip(">") or "localhost"
    return EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[team.email],
        reply_to=[reply_address(token)],
        headers={
            # The same id for every attempt: a mailbox that already has it shows one copy.
            "Message-ID": f"<webcare-escalation-{escalation.pk}.{token}@{domain}>",
            # Out-of-office responders must not answer it (RFC 3834); people still can.
            "Auto-Submitted": "auto-generated",
            "X-Webcare-Ticket": str(ticket.pk),
            "X-Webcare-Escalation": str(escalation.pk),
        },
    )


def _email_body(escalation: Escalation) -> str:
    ticket = escalation.ticket
    contact = ticket.contact
    customer = f"@{contact.handle}" if contact.handle else contact.external_id
    if contact.display_name:
        customer = f"{contact.display_name} ({customer})"
    agent = escalation.created_by
    agent_name = (agent.get_full_name() or agent.get_username()) if agent is not None else gettext("an agent")
    lines = [
        REPLY_MARKER,
        gettext("Reply above this line. Your answer goes straight to the webcare agent on ticket #%(id)s.")
        % {"id": ticket.pk},
        "",
        gettext("Ticket #%(id)s from %(customer)s on %(source)s.")
        % {"id": ticket.pk, "customer": customer, "source": ticket.source.name},
        gettext("Escalated to %(team)s by %(agent)s on %(when)s.")
        % {"team": escalation.team.name, "agent": agent_name, "when": _when(escalation.created_at)},
    ]
    if escalation.due_at:
        lines.append(gettext("Answer expected by %(when)s.") % {"when": _when(escalation.due_at)})
    lines += ["", gettext("Note from the agent:"), escalation.note, ""]
    recent = list(
        Message.objects.filter(ticket=ticket, direction=Message.Direction.INBOUND).order_by(
            "-created_at", "-id"
        )[:CUSTOMER_MESSAGES_IN_EMAIL]
    )
    if recent:
        lines.append(gettext("The customer's last messages, oldest first:"))
        for message in reversed(recent):
            text = message.text
            if len(text) > CUSTOMER_MESSAGE_CHARS:
                text = text[: CUSTOMER_MESSAGE_CHARS - 1] + "…"
            kind = gettext("public") if message.is_public else gettext("private")
            lines += ["", f"[{_when(message.created_at)}, {kind}]", text]
    return "\n".join(lines) + "\n"


def _when(value: datetime) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z")


def escalation_email_send(*, escalation_id: int) -> str:
    """Send the escalation e-mail once. Returns what happened; SMTP errors propagate for retry.

    The marker that it was sent is an ``escalation.emailed`` TicketEvent. It is checked and
    the mail sent under a Redis lock, not a database row lock: an SMTP conversation can take
    seconds, and no side effect happens inside an open transaction. A worker that dies after
    the server accepted the mail and before the marker was written leaves it unmarked, so the
    retry sends it again with the same Message-ID, which mailboxes show once.
    """
    sender = lock(f"escalation-email:{escalation_id}", ttl_seconds=_EMAIL_LOCK_SECONDS)
    if not sender.acquire():
        return "busy"
    try:
        escalation = (
            Escalation.objects.select_related("ticket__contact", "ticket__source", "team", "created_by")
            .filter(pk=escalation_id)
            .first()
        )
        if escalation is None:
            return "missing"
        if _email_events(escalation, "escalation.emailed").exists():
            return "already sent"
        if escalation.status != Escalation.Status.WAITING:
            return f"not sent: escalation is {escalation.status}"
        if not escalation.team.email:
            escalation_email_failed(
                escalation_id=escalation.pk, error=f"team {escalation.team.name} has no e-mail address"
            )
            return "failed"
        message = escalation_email_message(escalation=escalation)
        timeout = getattr(settings, "EMAIL_TIMEOUT", None) or _EMAIL_TIMEOUT_SECONDS
        get_connection(timeout=timeout).send_messages([message])
        with transaction.atomic():
            event = event_for(
                escalation.ticket,
                "escalation.emailed",
                escalation_id=escalation.pk,
                to=escalation.team.email,
                message_id=message.extra_headers["Message-ID"],
            )
            event.save()
            publish_on_commit([event])
        return "sent"
    finally:
        if sender.owned():
            sender.release()


def escalation_email_failed(*, escalation_id: int, error: str) -> None:
    """Record that the e-mail could not be sent, for the agent to see (and act on)."""
    escalation = Escalation.objects.select_related("ticket", "team").filter(pk=escalation_id).first()
    if escalation is None:
        return
    with transaction.atomic():
        event = event_for(
            escalation.ticket,
            "escalation.email_failed",
            escalation_id=escalation.pk,
            to=escalation.team.email,
            error=error[:1000],
        )
        event.save()
        publish_on_commit([event])
    logger.warning("escalation %s: e-mail to %s failed: %s", escalation.pk, escalation.team.email, error)


def smtp_error_is_permanent(exc: BaseException) -> bool:
    """A 5xx answer will not change on retry; 4xx answers and lost connections may."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _message in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code >= 500
    return False


def _email_events(escalation: Escalation, type_: str) -> QuerySet[TicketEvent]:
    return TicketEvent.objects.filter(
        ticket_id=escalation.ticket_id, type=type_, payload__escalation_id=escalation.pk
    )


# --- E-mail in ------------------------------------------------------------------------


def escalation_answer_from_email(*, raw: bytes) -> Escalation:
    """Store the answer in an e-mail reply (RFC 5322 bytes) on its escalation.

    The escalation is found by its reply token: in the plus-address the reply was sent to
    (To, Cc, Delivered-To, X-Original-To), in ``[ref:TOKEN]`` in the subject, or in the
    Message-ID of our e-mail that the reply refers to. The new text above the quoted original
    is the answer; quoted lines, the attribution line and the signature are dropped. HTML-only
    mail is converted to text; nothing of it is kept as markup.
    """
    if len(raw) > MAX_EMAIL_BYTES:
        raise EscalationError(f"the e-mail is {len(raw)} bytes long (at most {MAX_EMAIL_BYTES})")
    mail = message_from_bytes(raw, policy=default_email_policy)
    message_id = _header(mail, "Message-ID")
    automatic = _automatic_reply(mail)
    if automatic:
        # Never answered, never bounced: a bounce to an autoresponder starts a mail loop.
        logger.info("escalation e-mail: ignored %s %s (To: %s)", automatic, message_id, _header(mail, "To"))
        raise InboundEmailIgnored(f"ignored {automatic}")
    escalation = _escalation_for(mail)
    sender = _header(mail, "From") or _header(mail, "Sender") or _header(mail, "Return-Path")
    text = reply_text(mail)
    if escalation.status == Escalation.Status.ANSWERED and _is_stored_answer(
        escalation, message_id, sender, text
    ):
        logger.info("escalation %s: duplicate of the stored answer ignored (%s)", escalation.pk, message_id)
        raise InboundEmailIgnored(f"duplicate of the answer already stored on escalation {escalation.pk}")
    try:
        return escalation_answer(
            escalation=escalation,
            text=text,
            answered_by=sender or escalation.team.email or escalation.team.name,
            email_message_id=message_id[:300],
        )
    except EscalationNotWaiting:
        # A copy delivered twice at the same moment: the first one stored it.
        escalation.refresh_from_db()
        if _is_stored_answer(escalation, message_id, sender, text):
            logger.info(
                "escalation %s: duplicate of the stored answer ignored (%s)", escalation.pk, message_id
            )
            raise InboundEmailIgnored(
                f"duplicate of the answer already stored on escalation {escalation.pk}"
            ) from None
        raise


def _is_stored_answer(escalation: Escalation, message_id: str, sender: str, text: str) -> bool:
    if escalation.status != Escalation.Status.ANSWERED:
        return False
    if (
        message_id
        and Message.objects.filter(
            ticket_id=escalation.ticket_id,
            direction=Message.Direction.NOTE,
            raw__escalation__escalation_id=escalation.pk,
            raw__escalation__email_message_id=message_id[:300],
        ).exists()
    ):
        return True
    sender = " ".join(clean_text(sender).split())[:300]
    return escalation.answered_by == sender and escalation.answer == clean_text(text).strip()


def _header(mail: MimeMessage, name: str) -> str:
    """A header's decoded value as one line; empty when missing or unreadable."""
    try:
        value = mail.get(name)
    except (ValueError, IndexError, TypeError, AttributeError):  # a header the parser could not model
        value = next((raw for key, raw in mail.raw_items() if key.lower() == name.lower()), None)
    if value is None:
        return ""
    return " ".join(clean_text(str(value)).split())


def _automatic_reply(mail: MimeMessage) -> str:
    """What kind of machine reply this is, or "" for a person's reply (RFC 3834, RFC 3464)."""
    auto = _header(mail, "Auto-Submitted").lower()
    if auto and auto != "no":
        return f"automatic reply (Auto-Submitted: {auto})"
    if _header(mail, "Precedence").lower() in ("auto_reply", "bulk", "junk"):
        return "automatic reply (Precedence)"
    if mail.get_content_type() == "multipart/report":
        return "delivery report"
    return ""


def _escalation_for(mail: MimeMessage) -> Escalation:
    candidates = _token_candidates(mail)
    if not candidates:
        raise UnknownReplyToken(
            "no reply token in the recipient address, the subject ([ref:…]) or In-Reply-To/References"
        )
    found = {
        e.reply_token: e for e in Escalation.objects.select_related("team").filter(reply_token__in=candidates)
    }
    for token in candidates:
        if token in found:
            return found[token]
    raise UnknownReplyToken(f"no escalation has the reply token {candidates[0]!r}")


def _token_candidates(mail: MimeMessage) -> list[str]:
    """Tokens in the order they are trusted: address, subject, references."""
    template = getattr(settings, "ESCALATION_REPLY_ADDRESS", "") or DEFAULT_REPLY_ADDRESS
    prefix, _, suffix = template.partition("{token}")
    address = re.compile(rf"{re.escape(prefix)}({_TOKEN}){re.escape(suffix)}", re.IGNORECASE)
    tokens: list[str] = []
    headers = ("Delivered-To", "X-Original-To", "Envelope-To", "To", "Cc")
    values = [str(v) for name in headers for v in _all_headers(mail, name)]
    for _name, addr in getaddresses(values):
        match = address.fullmatch(addr.strip())
        if match:
            tokens.append(match.group(1))
    tokens += _SUBJECT_TOKEN.findall(_header(mail, "Subject"))
    for name in ("In-Reply-To", "References"):
        for value in _all_headers(mail, name):
            tokens += _MESSAGE_ID_TOKEN.findall(str(value))
    return list(dict.fromkeys(tokens))


def _all_headers(mail: MimeMessage, name: str) -> list[Any]:
    try:
        return list(mail.get_all(name, failobj=[]))
    except (ValueError, IndexError, TypeError):  # a malformed header the parser could not model
        return []


def reply_text(mail: MimeMessage) -> str:
    """The new text of a reply: text/plain preferred, else HTML made text; quotes dropped."""
    text = ""
    plain = mail.get_body(preferencelist=("plain",))
    if plain is not None:
        text = strip_quoted(_part_text(plain))
    if not text:
        html = mail.get_body(preferencelist=("html",))
        if html is not None:
            text = strip_quoted(html_to_text(_part_text(html)))
    if not text:
        raise EscalationError("the reply has no text above the quoted message")
    return text


def _part_text(part: MimeMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeDecodeError):  # an unknown or lying charset
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace")
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    return clean_text(content)


# An attribution line such as "On Tue, 3 Nov 2026 at 10:02, Desk <desk@x> wrote:" (Gmail,
# Apple Mail, Thunderbird), Dutch "Op ... schreef ...:", and Outlook's separators.
_ATTRIBUTION = re.compile(r"^\s*(on\s.+\swrote|op\s.+\sschreef\s?.*)\s*:\s*$", re.IGNORECASE)
_ATTRIBUTION_START = re.compile(r"^\s*(on|op)\s", re.IGNORECASE)
_ATTRIBUTION_END = re.compile(r"(wrote|schreef.*)\s*:\s*$", re.IGNORECASE)
_OUTLOOK_SEPARATOR = re.compile(r"^\s*(-{2,}\s*original message\s*-{2,}|_{20,})\s*$", re.IGNORECASE)
_OUTLOOK_HEADER = re.compile(r"^\s*\*?(from|van)\s*:\*?\s", re.IGNORECASE)
_OUTLOOK_NEXT_HEADER = re.compile(
    r"^\s*\*?(sent|date|to|subject|verzonden|datum|aan|onderwerp)\s*:", re.IGNORECASE
)
_SENT_FROM_DEVICE = re.compile(
    r"^\s*(sent from my|verzonden vanaf mijn|verstuurd vanaf mijn)\s", re.IGNORECASE
)


def strip_quoted(text: str) -> str:
    """The text above the quoted original, without quoted lines and without the signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if REPLY_MARKER in line or _OUTLOOK_SEPARATOR.match(line) or _ATTRIBUTION.match(line):
            break
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if _ATTRIBUTION_START.match(line) and _ATTRIBUTION_END.search(following):
            break  # an attribution wrapped over two lines
        if _OUTLOOK_HEADER.match(line) and _OUTLOOK_NEXT_HEADER.match(following):
            break
        if line.rstrip() == "--":  # the signature delimiter "-- " (often stripped to "--")
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    while kept and not kept[-1].strip():
        kept.pop()
    if kept and _SENT_FROM_DEVICE.match(kept[-1]):
        kept.pop()
    return _squeeze_blank_lines(kept)


def _squeeze_blank_lines(lines: Iterable[str]) -> str:
    out: list[str] = []
    for line in lines:
        if not line.strip() and (not out or not out[-1].strip()):
            continue
        out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out)


# Elements whose content is never text a person wrote to us, and the quoted originals
# that Gmail, Outlook, Apple Mail, Thunderbird and Yahoo wrap around what they quote.
_DROPPED_TAGS = (
    "script",
    "style",
    "head",
    "title",
    "template",
    "noscript",
    "iframe",
    "object",
    "embed",
    "svg",
    "math",
    "blockquote",
)
_QUOTE_SELECTORS = (
    ".gmail_quote",
    ".gmail_extra",
    "#divRplyFwdMsg",
    "#appendonsend",
    ".moz-cite-prefix",
    ".yahoo_quoted",
    "#mail-editor-reference-message-container",
)
_BLOCK_TAGS = (
    "address",
    "article",
    "aside",
    "div",
    "dl",
    "dt",
    "dd",
    "fieldset",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
)


def html_to_text(html: str) -> str:
    """Text a person reads in an HTML e-mail, with line breaks; no markup survives.

    Parsed with BeautifulSoup (the standard library's HTML parser underneath), never with
    regular expressions. Entities become their characters: "&lt;script&gt;" is the text
    "<script>", which the desk stores and shows as text.
    """
    soup = BeautifulSoup(html, "html.parser")
    dropped = [element for selector in _QUOTE_SELECTORS for element in soup.select(selector)]
    dropped += soup.find_all(_DROPPED_TAGS)
    for element in dropped:
        if not element.decomposed:  # not inside one dropped before
            element.decompose()
    for string in list(soup.find_all(string=True)):
        if type(string) is NavigableString and not string.find_parent("pre"):
            string.replace_with(re.sub(r"\s+", " ", str(string)))
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for block in soup.find_all(_BLOCK_TAGS):
        if isinstance(block, Tag):
            block.insert_before("\n")
            block.insert_after("\n")
    for cell in soup.find_all(("td", "th")):
        cell.insert_after(" ")
    text = soup.get_text()
    return _squeeze_blank_lines(line.strip() for line in text.split("\n"))
