"""Ingest queue: parse and ingest stored webhook deliveries."""

from __future__ import annotations

from celery import shared_task
from django.db import DatabaseError

from inbox.services.webhooks import webhook_deliveries_unprocessed, webhook_delivery_process


@shared_task(
    queue="ingest",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def process_webhook_delivery(delivery_id: int) -> str:
    """Idempotent: a processed or rejected delivery is left alone."""
    return webhook_delivery_process(delivery_id=delivery_id)


@shared_task(queue="ingest", ignore_result=True)
def process_unprocessed_webhooks() -> int:
    """Sweep (for beat): deliveries whose enqueue was lost or whose processing failed."""
    ids = webhook_deliveries_unprocessed()
    for delivery_id in ids:
        process_webhook_delivery.delay(delivery_id)
    return len(ids)
