"""SLA monitoring: beat runs ``evaluate_sla`` every 30 seconds on the ``default`` queue."""

from __future__ import annotations

from celery import shared_task

from inbox.services.sla import sla_evaluate


@shared_task(ignore_result=True)
def evaluate_sla() -> int:
    """Tickets moved to at risk or breached. Safe to run twice or side by side: each batch is
    locked and judged again, so a second run writes nothing."""
    return sla_evaluate()
