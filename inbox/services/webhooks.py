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
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from inbox.connectors.base import PermanentError
from inbox.connectors.registry import UnknownPlatform, get_connector
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
            return _settle(delivery, WebhookDelivery.State.REJECTED, "the delivery has no source (deleted?)")
        connector = get_connector(delivery.source)
        parse = getattr(connector, "parse_webhook", None)
        if parse is None:
            return _settle(
                delivery,
                WebhookDelivery.State.REJECTED,
                f"{delivery.source.platform} sources take no webhooks",
            )
        try:
            parsed = parse(bytes(delivery.body))
        except PermanentError as exc:
            return _settle(delivery, WebhookDelivery.State.REJECTED, str(exc) or exc.__class__.__name__)
        result = ingest_batch(
            source=delivery.source,
            messages=parsed.messages,
            rejected=parsed.rejected,
            origin=DeadLetter.Origin.WEBHOOK,
        )
        note = ""
        if result.rejected:
            reasons = "; ".join(r.reason for r in result.rejected[:_ERROR_REASONS_SHOWN])
            more = len(result.rejected) - _ERROR_REASONS_SHOWN
            note = (
                f"{len(result.rejected)} of {len(parsed.messages) + len(parsed.rejected)} items "
                f"dead-lettered: {reasons}" + (f"; and {more} more" if more > 0 else "")
            )
        logger.info(
            "webhook: delivery %s ingested: %d new, %d duplicates, %d dead-lettered",
            delivery.pk,
            result.created,
            result.duplicates,
            len(result.rejected),
        )
        return _settle(delivery, WebhookDelivery.State.PROCESSED, note)


def _settle(delivery: WebhookDelivery, state: str, error: str) -> str:
    if state == WebhookDelivery.State.REJECTED:
        logger.warning("webhook: delivery %s rejected: %s", delivery.pk, error)
    delivery.state = state
    delivery.error = error
    delivery.save(update_fields=["state", "error", "attempts", "processed_at"])
    return state


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
