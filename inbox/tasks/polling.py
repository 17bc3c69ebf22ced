"""Ingest queue: beat claims due sources, one task polls each."""

from __future__ import annotations

from celery import shared_task

from inbox.services.polling import source_poll, sources_claim_due


@shared_task(ignore_result=True)
def poll_due_sources() -> int:
    due = sources_claim_due()
    for source_id in due:
        poll_source.delay(source_id)
    return len(due)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def poll_source(source_id: int) -> str:
    return source_poll(source_id=source_id).status
