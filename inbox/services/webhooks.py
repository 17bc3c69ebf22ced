"""Webhook intake: store the delivery as received, answer fast, ingest it in a task.

The endpoint (``inbox/api/webhooks.py``) checks size and signature, then calls
``webhook_delivery_receive``, which stores the raw body and enqueues
``webhook_delivery_process`` after commit. Processing parses the body with the source's
connector (``parse_webhook(body) -> FetchResult``) and runs it through ``ingest_batch``.

Exactly once:

* a sender's delivery id (``X-Webcare-Delivery``) is unique per source: a replay of it is
  not stored again (it re-enqueues processing if the first copy has not been processed);
* processing locks the delivery row and skips a delivery already processed or rejected;
* messages are unique per (source, external id) in ingest, so the same message in two
  deliveries is stored once.

A body we cannot read (not JSON, unknown event type or shape) is kept and marked
``rejected`` with the reason for an operator; it is never retried.

App-level endpoints (Meta: one endpoint for every Page and Instagram account of one app)
store the delivery without a source. Processing asks the app (``WebhookApp.route``) to
split it by account, finds the source of each part by platform and account id, and ingests
each part with that source's connector. A part no enabled source claims is said on the
delivery; once the source is connected, an operator processes the delivery again
(``webhook_deliveries_reprocess``, admin action) and nothing already ingested is doubled.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from inbox.connectors.base import FetchResult, PermanentError, WebhookApp
from inbox.connectors.registry import UnknownPlatform, get_connector, get_webhook_app
from inbox.models import DeadLetter, Source, WebhookDelivery
from inbox.services.ingest import ingest_batch

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 1024 * 1024
#: Headers kept with a delivery by name; only the names of signature headers are kept.
SIGNATURE_HEADERS = ("X-Webcare-Signature", "X-Hub-Signature-256", "X-Hub-Signature")
_DELIVERY_ID_MAX = 200
_ERROR_REASONS_SHOWN = 5


def webhook_max_bytes() -> int:
    """Largest body accepted (``WEBCARE["WEBHOOK_MAX_BYTES"]``, 1 MiB by default)."""
    return int(settings.WEBCARE.get("WEBHOOK_MAX_BYTES", DEFAULT_MAX_BYTES))


def relevant_headers(headers: Mapping[str, str], *, delivery_header: str = "") -> dict[str, object]:
    """What an operator needs to know about the request, without any signature value."""
    kept: dict[str, object] = {
        "content_type": headers.get("Content-Type", "")[:200],
        "user_agent": headers.get("User-Agent", "")[:300],
        "signature_headers": [name for name in SIGNATURE_HEADERS if headers.get(name)],
    }
    for name in ("X-Webcare-Timestamp", delivery_header):
        if name and headers.get(name):
            kept[name.lower().replace("-", "_")] = headers[name][:200]
    return kept


def webhook_delivery_receive(
    *,
    source: Source | None,
    platform: str,
    body: bytes,
    headers: Mapping[str, str],
    delivery_id: str = "",
    delivery_header: str = "",
) -> tuple[WebhookDelivery, bool]:
    """Store a verified delivery and enqueue its processing after commit.

    Returns ``(delivery, created)``; ``created`` is False when ``delivery_id`` was received
    before from this source (the stored copy is returned, and re-enqueued unless it is
    settled already, so a sender's retry also recovers a lost enqueue).
    """
    delivery_id = delivery_id.strip()[:_DELIVERY_ID_MAX]
    if delivery_id and source is not None:
        existing = WebhookDelivery.objects.filter(source=source, delivery_id=delivery_id).first()
        if existing is not None:
            return _replayed(existing), False
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                source=source,
                platform=platform,
                body=body,
                headers=relevant_headers(headers, delivery_header=delivery_header),
                delivery_id=delivery_id,
            )
            transaction.on_commit(lambda: _enqueue(delivery.pk))
    except IntegrityError:
        # The same delivery id committed by a concurrent request between our check and insert.
        existing = WebhookDelivery.objects.filter(source=source, delivery_id=delivery_id).first()
        if existing is None:
            raise
        return _replayed(existing), False
    return delivery, True


def _replayed(delivery: WebhookDelivery) -> WebhookDelivery:
    logger.info(
        "webhook: delivery id %r replayed (delivery %s, %s)",
        delivery.delivery_id,
        delivery.pk,
        delivery.state,
    )
    if delivery.state in (WebhookDelivery.State.RECEIVED, WebhookDelivery.State.FAILED):
        transaction.on_commit(lambda: _enqueue(delivery.pk))
    return delivery


def _enqueue(delivery_id: int) -> None:
    from inbox.tasks.webhooks import process_webhook_delivery

    try:
        process_webhook_delivery.delay(delivery_id)
    except Exception:  # noqa: BLE001 - the delivery is stored; the sweep picks it up later
        logger.exception("webhook: could not enqueue delivery %s; the sweep will process it", delivery_id)


def webhook_delivery_process(*, delivery_id: int) -> str:
    """Parse and ingest one stored delivery. Idempotent; returns the delivery's state.

    Raises DatabaseError (after recording it) so the task retries; everything the sender
    got wrong ends as ``rejected`` and is never retried.
    """
    try:
        return _process(delivery_id)
    except (DatabaseError, UnknownPlatform) as exc:
        error = f"{exc.__class__.__name__}: {exc}"[:2000]
        try:
            WebhookDelivery.objects.filter(pk=delivery_id).exclude(
                state__in=(WebhookDelivery.State.PROCESSED, WebhookDelivery.State.REJECTED)
            ).update(state=WebhookDelivery.State.FAILED, error=error)
        except DatabaseError:
            logger.exception("webhook: could not record the failure of delivery %s", delivery_id)
        logger.warning("webhook: delivery %s failed: %s", delivery_id, error)
        raise


def _process(delivery_id: int) -> str:
    with transaction.atomic():
        # The row lock makes a second worker wait, then see the delivery settled. Only the
        # delivery's row: PostgreSQL cannot lock the nullable side of the join to its source.
        delivery = (
            WebhookDelivery.objects.select_for_update(of=("self",))
            .select_related("source")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None:
            return "missing"
        if delivery.state in (WebhookDelivery.State.PROCESSED, WebhookDelivery.State.REJECTED):
            return delivery.state
        delivery.attempts += 1
        delivery.processed_at = timezone.now()
        if delivery.source is None:
            app = get_webhook_app(delivery.platform)
            if app is None:
                return _settle(delivery, WebhookDelivery.State.REJECTED, "the delivery has no source (deleted?)")
            return _process_routed(delivery, app)
        with get_connector(delivery.source) as connector:
            if not connector.supports_webhooks:
                return _settle(
                    delivery,
                    WebhookDelivery.State.REJECTED,
                    f"{delivery.source.platform} sources take no webhooks",
                )
            try:
                parsed = connector.parse_webhook(bytes(delivery.body))
            except PermanentError as exc:
                return _settle(delivery, WebhookDelivery.State.REJECTED, str(exc) or exc.__class__.__name__)
        tally = _Tally()
        tally.ingest(delivery.source, parsed)
        return _settle(delivery, WebhookDelivery.State.PROCESSED, tally.note())


@dataclass(slots=True)
class _Tally:
    """What processing one delivery did, said on the delivery in one note."""

    created: int = 0
    duplicates: int = 0
    items: int = 0
    rejected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unclaimed: list[str] = field(default_factory=list)

    def ingest(self, source: Source, parsed: FetchResult) -> None:
        result = ingest_batch(
            source=source,
            messages=parsed.messages,
            rejected=parsed.rejected,
            origin=DeadLetter.Origin.WEBHOOK,
        )
        self.created += result.created
        self.duplicates += result.duplicates
        self.items += len(parsed.messages) + len(parsed.rejected)
        self.rejected += [r.reason for r in result.rejected]
        self.ignored += parsed.ignored
        logger.info(
            "webhook: %s: %d new, %d duplicates, %d dead-lettered, %d ignored",
            source,
            result.created,
            result.duplicates,
            len(result.rejected),
            len(parsed.ignored),
        )

    def note(self) -> str:
        notes = []
        if self.unclaimed:
            notes.append("not ingested: " + _listed(self.unclaimed))
        if self.rejected:
            notes.append(f"{len(self.rejected)} of {self.items} items dead-lettered: " + _listed(self.rejected))
        if self.ignored:
            notes.append("ignored: " + _listed(self.ignored))
        return "\n".join(notes)


def _listed(reasons: list[str]) -> str:
    shown = "; ".join(reasons[:_ERROR_REASONS_SHOWN])
    more = len(reasons) - _ERROR_REASONS_SHOWN
    return shown + (f"; and {more} more" if more > 0 else "")


def _process_routed(delivery: WebhookDelivery, app: WebhookApp) -> str:
    """An app-level delivery: each account's part to its source's connector."""
    try:
        routed = app.route(bytes(delivery.body))
    except PermanentError as exc:
        return _settle(delivery, WebhookDelivery.State.REJECTED, str(exc) or exc.__class__.__name__)
    sources: dict[tuple[str, str], Source] = {}
    for source in Source.objects.filter(platform__in=app.platforms).exclude(account_id="").order_by("id"):
        # The enabled source wins over a disabled one for the same account.
        key = (source.platform, source.account_id)
        if key not in sources or (source.enabled and not sources[key].enabled):
            sources[key] = source
    tally = _Tally(ignored=list(routed.ignored))
    for part in routed.parts:
        what = part.summary or f"{part.platform} account {part.account_id}"
        source = sources.get((part.platform, part.account_id))
        if source is None:
            tally.unclaimed.append(f"{what}: no {part.platform} source has account id {part.account_id}")
            continue
        if not source.enabled:
            tally.unclaimed.append(f"{what}: source {source.name!r} is disabled")
            continue
        with get_connector(source) as connector:
            try:
                parsed = connector.parse_webhook(part.body)
            except PermanentError as exc:
                tally.unclaimed.append(f"{what}: {exc}")
                continue
        tally.ingest(source, parsed)
    if routed.parts and len(tally.unclaimed) == len(routed.parts):
        # Nothing of it reached the desk: rejected, so an operator sees it; processing it
        # again after connecting the source ingests it.
        return _settle(delivery, WebhookDelivery.State.REJECTED, tally.note())
    return _settle(delivery, WebhookDelivery.State.PROCESSED, tally.note())


def _settle(delivery: WebhookDelivery, state: str, error: str) -> str:
    if state == WebhookDelivery.State.REJECTED:
        logger.warning("webhook: delivery %s rejected: %s", delivery.pk, error)
    delivery.state = state
    delivery.error = error
    delivery.save(update_fields=["state", "error", "attempts", "processed_at"])
    return state


def webhook_deliveries_reprocess(*, delivery_ids: list[int]) -> int:
    """Process settled or failed deliveries again (after connecting the missing source, or
    fixing a connector): they return to ``received`` and are enqueued after commit. Safe:
    ingest is idempotent, so what was ingested before is not doubled. Returns how many."""
    with transaction.atomic():
        ids = list(
            WebhookDelivery.objects.select_for_update()
            .filter(pk__in=delivery_ids)
            .exclude(state=WebhookDelivery.State.RECEIVED)
            .values_list("id", flat=True)
        )
        WebhookDelivery.objects.filter(pk__in=ids).update(state=WebhookDelivery.State.RECEIVED, error="")
        for delivery_id in ids:
            transaction.on_commit(lambda delivery_id=delivery_id: _enqueue(delivery_id))
    logger.info("webhook: deliveries %s queued to be processed again", ids)
    return len(ids)


def webhook_deliveries_unprocessed(*, older_than_seconds: float = 300) -> list[int]:
    """Ids of deliveries still waiting (an enqueue lost, or a failure) after ``older_than_seconds``."""
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    return list(
        WebhookDelivery.objects.filter(
            state__in=(WebhookDelivery.State.RECEIVED, WebhookDelivery.State.FAILED), received_at__lte=cutoff
        )
        .order_by("id")
        .values_list("id", flat=True)[:1000]
    )
