"""Polling sources: single-flight per source, cursor moved only with a committed batch.

Beat runs ``sources_claim_due`` every couple of seconds; each claimed source gets a
``poll_source`` task that calls ``source_poll``. A claim pushes ``next_poll_at``
forward by a lease so beat does not enqueue the same source again while its poll
waits in the queue; the poll itself then sets the real next time.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from inbox.connectors.base import AuthenticationFailed, Connector, ConnectorError, RetryableError
from inbox.connectors.registry import UnknownPlatform, get_connector, webhook_only_platforms
from inbox.models import DeadLetter, Source, TicketEvent
from inbox.realtime.publish import publish_on_commit
from inbox.services.ingest import IngestResult, ingest_batch
from inbox.services.locks import lock

logger = logging.getLogger(__name__)

_CLAIM_LEASE = timedelta(seconds=60)
_POLL_LOCK_SECONDS = 300
# Pages fetched in one poll when the platform keeps saying "more".
_MAX_PAGES = 20


def sources_claim_due(*, now: datetime | None = None) -> list[int]:
    """Ids of enabled sources whose poll is due, each leased so it is claimed once."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Source.objects.select_for_update(skip_locked=True)
            .filter(enabled=True, needs_reauth=False)
            .filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))
            .exclude(platform__in=webhook_only_platforms())
            .values_list("id", flat=True)
        )
        if due:
            Source.objects.filter(pk__in=due).update(next_poll_at=now + _CLAIM_LEASE)
    return due


@dataclass(slots=True)
class PollOutcome:
    status: str  # "ok", "locked", "skipped", "retry", "failed", "reauth"
    pages: int = 0
    ingest: IngestResult | None = None
    next_poll_at: datetime | None = None
    error: str = ""


def backoff_delay(failures: int, *, retry_after: float | None = None) -> float:
    """Exponential back-off with jitter; honours a platform's reset time when later."""
    base = settings.WEBCARE["POLL_BACKOFF_BASE_SECONDS"]
    cap = settings.WEBCARE["POLL_BACKOFF_MAX_SECONDS"]
    delay = min(cap, base * 2 ** max(failures - 1, 0)) * random.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def source_poll(*, source_id: int) -> PollOutcome:
    """Fetch and ingest everything new on one source. Never runs twice at once."""
    poller = lock(f"poll:{source_id}", ttl_seconds=_POLL_LOCK_SECONDS)
    if not poller.acquire():
        return PollOutcome("locked")
    try:
        return _poll(source_id)
    finally:
        if poller.owned():
            poller.release()


def _poll(source_id: int) -> PollOutcome:
    try:
        source = Source.objects.get(pk=source_id)
    except Source.DoesNotExist:
        return PollOutcome("skipped", error=f"no source {source_id}")
    if not source.enabled or source.needs_reauth:
        return PollOutcome("skipped", error="source disabled or needs re-authorization")
    outcome = PollOutcome("ok", ingest=IngestResult())
    started = timezone.now()
    try:
        with get_connector(source) as connector:
            _fetch_pages(connector, source, outcome)
    except AuthenticationFailed as exc:
        return _record_reauth(source, exc, outcome)
    except RetryableError as exc:
        return _record_failure(source, exc, outcome, retry_after=exc.retry_after)
    except (ConnectorError, UnknownPlatform, DatabaseError) as exc:
        return _record_failure(source, exc, outcome, retry_after=None)
    now = timezone.now()
    newest = outcome.ingest.newest_created_at
    fields = {
        "last_polled_at": started,
        "last_success_at": now,
        "consecutive_failures": 0,
        "next_poll_at": now + timedelta(seconds=source.poll_interval_seconds),
    }
    if newest is not None:
        fields["lag_seconds"] = max(0.0, (now - newest).total_seconds())
    Source.objects.filter(pk=source.pk).update(**fields)
    outcome.next_poll_at = fields["next_poll_at"]
    return outcome


def _fetch_pages(connector: Connector, source: Source, outcome: PollOutcome) -> None:
    for _ in range(_MAX_PAGES):
        fetched = connector.fetch(source.cursor)
        with transaction.atomic():
            result = ingest_batch(
                source=source, messages=fetched.messages, rejected=fetched.rejected,
                origin=DeadLetter.Origin.POLL,
            )
            # The cursor moves in the same transaction as the batch it covers.
            Source.objects.filter(pk=source.pk).update(cursor=fetched.next_cursor)
        source.cursor = fetched.next_cursor
        outcome.pages += 1
        outcome.ingest.merge(result)
        if not fetched.has_more:
            break


def _record_failure(
    source: Source, exc: Exception, outcome: PollOutcome, *, retry_after: float | None
) -> PollOutcome:
    now = timezone.now()
    failures = source.consecutive_failures + 1
    delay = backoff_delay(failures, retry_after=retry_after)
    error = f"{exc.__class__.__name__}: {exc}"
    Source.objects.filter(pk=source.pk).update(
        last_polled_at=now, last_error_at=now, last_error=error,
        consecutive_failures=failures, next_poll_at=now + timedelta(seconds=delay),
    )
    logger.warning("poll of %s failed (%d in a row), next try in %.0fs: %s", source, failures, delay, error)
    outcome.status = "retry"
    outcome.error = error
    outcome.next_poll_at = now + timedelta(seconds=delay)
    return outcome


def _record_reauth(source: Source, exc: Exception, outcome: PollOutcome) -> PollOutcome:
    now = timezone.now()
    error = f"authentication failed: {exc}"
    with transaction.atomic():
        Source.objects.filter(pk=source.pk).update(
            needs_reauth=True, last_polled_at=now, last_error_at=now, last_error=error,
            consecutive_failures=source.consecutive_failures + 1,
        )
        event = TicketEvent.objects.create(
            type="source.needs_reauth", payload={"source_id": source.pk, "source": source.name, "error": error}
        )
        publish_on_commit([event])
    logger.error("source %s needs re-authorization: %s", source, exc)
    outcome.status = "reauth"
    outcome.error = error
    return outcome
