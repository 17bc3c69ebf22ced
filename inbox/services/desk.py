"""Small writes of the desk pages: what an agent has read, their interface language."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from inbox.models import AgentProfile, Message, Ticket, TicketSeen


class DeskError(ValueError):
    """The request cannot be carried out as given; the message says why."""


def ticket_mark_seen(*, ticket: Ticket, user: AbstractBaseUser, now: datetime | None = None) -> TicketSeen:
    """Record that ``user`` has read ``ticket`` up to its newest message (clears "unread")."""
    now = now or timezone.now()
    newest = Message.objects.filter(ticket=ticket).aggregate(newest=Max("id"))["newest"] or 0
    with transaction.atomic():
        seen, created = TicketSeen.objects.select_for_update().get_or_create(
            user=user, ticket=ticket, defaults={"last_message_id": newest, "seen_at": now}
        )
        if not created and (seen.last_message_id < newest or seen.seen_at < now):
            seen.last_message_id = max(seen.last_message_id, newest)
            seen.seen_at = now
            seen.save(update_fields=["last_message_id", "seen_at"])
    return seen


def agent_set_ui_language(*, user: AbstractBaseUser, language: str) -> AgentProfile:
    """Set the interface language the desk is shown in for ``user``."""
    if language not in {code for code, _name in settings.LANGUAGES}:
        raise DeskError(f"unknown interface language {language!r}")
    profile = AgentProfile.objects.filter(user=user).first()
    if profile is None:
        raise DeskError("this account has no agent profile")
    if profile.ui_language != language:
        profile.ui_language = language
        profile.save(update_fields=["ui_language"])
    return profile
