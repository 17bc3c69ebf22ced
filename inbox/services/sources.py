"""Connecting sources: create, change, enable or disable, poll now.

Secrets (tokens, app secrets) are written here and never read back out through the desk:
the API and admin only ever show which secret names are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from inbox.connectors.base import AuthenticationFailed, ConnectorError, NotSupported, RetryableError
from inbox.connectors.registry import UnknownPlatform, get_connector, webhook_only_platforms
from inbox.models import Platform, Queue, Source, TicketEvent
from inbox.realtime.publish import publish_on_commit

logger = logging.getLogger(__name__)

#: Fields a lead may set directly.
_PLAIN_FIELDS = ("name", "enabled", "config", "account_id", "default_queue", "poll_interval_seconds")
_MIN_POLL_SECONDS = 5


class SourceError(ValueError):
    """The change cannot be made as asked; the message says why."""


def _check(*, platform: str, config: Any, secrets: Any, poll_interval_seconds: int) -> None:
    if platform not in Platform.values:
        raise SourceError(f"unknown platform {platform!r}")
    if platform == Platform.IMPORT:
        raise SourceError("import sources are created by the import command, not connected")
    if not isinstance(config, Mapping):
        raise SourceError("config must be a JSON object")
    if secrets is not None and (
        not isinstance(secrets, Mapping) or not all(isinstance(v, str) for v in secrets.values())
    ):
        raise SourceError("secrets must be a JSON object of strings")
    if poll_interval_seconds < _MIN_POLL_SECONDS:
        raise SourceError(f"poll interval must be at least {_MIN_POLL_SECONDS} seconds")


def _event(source: Source, type_: str, actor: AbstractBaseUser, **payload: Any) -> TicketEvent:
    # Source changes are news for the leads (health, re-authorization): no ticket, no queue.
    return TicketEvent(type=type_, actor_id=actor.pk,
                       payload={"source_id": source.pk, "source": source.name, **payload})


def source_create(
    *,
    actor: AbstractBaseUser,
    name: str,
    platform: str,
    config: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    account_id: str = "",
    default_queue: Queue | None = None,
    poll_interval_seconds: int = 60,
    enabled: bool = True,
) -> Source:
    """Connect a new source. Polling starts at once for platforms that poll."""
    config = {} if config is None else config
    _check(platform=platform, config=config, secrets=secrets, poll_interval_seconds=poll_interval_seconds)
    config = dict(config)
    with transaction.atomic():
        if Source.objects.filter(name=name).exists():
            raise SourceError(f"a source named {name!r} exists already")
        source = Source.objects.create(
            name=name, platform=platform, config=config, secrets=dict(secrets or {}),
            account_id=account_id, default_queue=default_queue,
            poll_interval_seconds=poll_interval_seconds, enabled=enabled,
            next_poll_at=timezone.now() if enabled else None,
        )
        event = _event(source, "source.created", actor, platform=platform)
        event.save()
        publish_on_commit([event])
    return source


def source_update(
    *,
    source: Source,
    actor: AbstractBaseUser,
    changes: Mapping[str, Any],
    secrets: Mapping[str, str] | None = None,
) -> Source:
    """Change a source. ``secrets`` replaces every stored secret (``{}`` removes them); new
    secrets also clear "needs re-authorization" so polling resumes."""
    unknown = set(changes) - set(_PLAIN_FIELDS)
    if unknown:
        raise SourceError(f"cannot change {', '.join(sorted(unknown))}")
    with transaction.atomic():
        source = Source.objects.select_for_update().get(pk=source.pk)
        _check(
            platform=source.platform,
            config=changes.get("config", source.config),
            secrets=secrets,
            poll_interval_seconds=changes.get("poll_interval_seconds", source.poll_interval_seconds),
        )
        if "name" in changes and Source.objects.filter(name=changes["name"]).exclude(pk=source.pk).exists():
            raise SourceError(f"a source named {changes['name']!r} exists already")
        fields = []
        for name, value in changes.items():
            if getattr(source, name) != value:
                setattr(source, name, value)
                fields.append(name)
        if secrets is not None:
            source.secrets = dict(secrets)
            fields.append("secrets")
            if source.needs_reauth:
                source.needs_reauth = False
                source.consecutive_failures = 0
                fields += ["needs_reauth", "consecutive_failures"]
        if source.enabled and ("enabled" in fields or "secrets" in fields):
            source.next_poll_at = timezone.now()
            fields.append("next_poll_at")
        if fields:
            source.save(update_fields=[*dict.fromkeys(fields), "updated_at"])
            # Only the names of what changed: secret values never go into the audit log.
            event = _event(source, "source.updated", actor, changed=sorted(set(fields) - {"next_poll_at"}))
            event.save()
            publish_on_commit([event])
    return source


def source_poll_now(*, source: Source, actor: AbstractBaseUser, now: datetime | None = None) -> Source:
    """Poll this source as soon as a worker is free (the poll stays single-flight)."""
    from inbox.tasks.polling import poll_source

    if source.platform in webhook_only_platforms():
        raise SourceError(f"{source.get_platform_display()} sources receive webhooks; there is nothing to poll")
    if not source.enabled:
        raise SourceError("the source is disabled")
    if source.needs_reauth:
        raise SourceError("the source needs re-authorization: give it new credentials first")
    with transaction.atomic():
        Source.objects.filter(pk=source.pk).update(next_poll_at=now or timezone.now())
        transaction.on_commit(lambda: poll_source.delay(source.pk))
    source.refresh_from_db()
    return source


class ProfileNoteFailed(SourceError):
    """The platform did not take the note; ``retryable`` when trying later may work."""

    def __init__(self, message: str, *, retryable: bool = False, supported: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.supported = supported


def source_update_profile_note(*, source: Source, actor: AbstractBaseUser, text: str) -> Source:
    """Write ``text`` into the brand's profile on the platform (Mastodon's note, Bluesky's
    description), e.g. "We answer within 15 minutes, 24/7".

    Done while the lead waits, so they see at once whether the platform took it. Refused
    credentials mark the source "needs re-authorization", as a failed poll does."""
    if not isinstance(text, str):
        raise SourceError("text must be a string")
    if not source.enabled:
        raise SourceError("the source is disabled")
    try:
        with get_connector(source) as connector:
            connector.update_profile_note(text)
    except NotSupported as exc:
        raise ProfileNoteFailed(str(exc), supported=False) from exc
    except AuthenticationFailed as exc:
        Source.objects.filter(pk=source.pk).update(
            needs_reauth=True, last_error=f"profile note refused: {exc}", last_error_at=timezone.now()
        )
        raise ProfileNoteFailed(f"credentials refused: {exc}") from exc
    except RetryableError as exc:
        raise ProfileNoteFailed(str(exc), retryable=True) from exc
    except (ConnectorError, UnknownPlatform) as exc:
        raise ProfileNoteFailed(str(exc)) from exc
    with transaction.atomic():
        event = _event(source, "source.profile_note_updated", actor, length=len(text))
        event.save()
        publish_on_commit([event])
    logger.info("source %s: profile note updated by %s (%d characters)", source.pk, actor, len(text))
    source.refresh_from_db()
    return source
