"""Outbound queue: post agent replies through the source's connector."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from inbox.services.replies import delivery_send


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=None)
def deliver_reply(self, delivery_id: int) -> str:
    """One attempt; re-schedules itself with back-off while the failure is retryable."""
    final = self.request.retries >= settings.WEBCARE["DELIVERY_MAX_RETRIES"]
    outcome = delivery_send(delivery_id=delivery_id, final_attempt=final)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.state
