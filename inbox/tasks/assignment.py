"""Default queue: assignment and presence tasks. Thin: ids in, a service call, safe to run twice.

Beat runs ``sweep_all_queues`` (safety net: a missed trigger costs at most one interval)
and ``expire_presence`` (drops desk connections without a heartbeat).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import shared_task
from django.db import OperationalError, transaction
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import LockError, RedisError

from inbox.models import Queue, Ticket
from inbox.routing.assign import LOAD_STATUSES
from inbox.services.assignment import assignment_assign, assignment_sweep
from inbox.services.locks import lock, redis_client
from inbox.services.presence import presence_expire

logger = logging.getLogger(__name__)

#: A sweep that runs longer than this loses its single-flight lock (another may start; still safe).
SWEEP_LOCK_SECONDS = 600
#: When agents were locked by another transaction, sweep again this much later.
CONTENDED_RETRY_SECONDS = 1.0

_RETRY = {
    "autoretry_for": (OperationalError,),  # deadlock or serialization failure, lost connection
    "retry_backoff": True,
    "retry_jitter": True,
    "max_retries": 5,
}


def _dirty_key(queue_id: int) -> str:
    return f"webcare:sweep:dirty:{queue_id}"


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True, **_RETRY)
def assign_tickets(ticket_ids: list[int]) -> int:
    """Push-assign new or re-activated tickets; returns how many got an agent."""
    return assignment_assign(ticket_ids=ticket_ids).assigned


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True, **_RETRY)
def sweep_queue(queue_id: int) -> int:
    """Sweep one queue's backlog, single-flight per queue.

    Every call marks the queue dirty; whoever holds the queue's lock sweeps until the mark
    stays clear, so a burst of triggers (agents freeing capacity one after another) costs
    one or two sweeps, not one each. Returns how many tickets this call assigned.
    """
    client = redis_client()
    client.set(_dirty_key(queue_id), 1, ex=SWEEP_LOCK_SECONDS)
    assigned = 0
    while True:
        guard = lock(f"sweep:{queue_id}", ttl_seconds=SWEEP_LOCK_SECONDS)
        if not guard.acquire():
            return assigned  # the holder sees the mark and sweeps again
        try:
            while client.getdel(_dirty_key(queue_id)):
                result = assignment_sweep(queue_id=queue_id)
                assigned += result.assigned
                if result.contended and result.waiting:
                    sweep_queue.apply_async((queue_id,), countdown=CONTENDED_RETRY_SECONDS)
        finally:
            try:
                guard.release()
            except LockError:
                logger.warning("sweep of queue %s outlived its lock", queue_id)
        if not client.exists(_dirty_key(queue_id)):
            return assigned


@shared_task(ignore_result=True)
def sweep_all_queues() -> int:
    """Queue a sweep for every push queue, not paused, with waiting tickets. Returns how many."""
    queue_ids = list(
        Ticket.objects.filter(
            queue__assignment_mode=Queue.AssignmentMode.PUSH,
            queue__auto_assign_paused=False,
            assignee__isnull=True,
            status__in=LOAD_STATUSES,
            is_noise=False,
        )
        .order_by("queue_id")
        .values_list("queue_id", flat=True)
        .distinct()
    )
    for queue_id in queue_ids:
        sweep_queue.delay(queue_id)
    return len(queue_ids)


@shared_task(ignore_result=True)
def expire_presence() -> int:
    """Drop dead desk connections; returns how many agents changed presence."""
    return len(presence_expire())


def sweep_queues_on_commit(queue_ids: Iterable[int]) -> None:
    """Queue a sweep of each queue once the current transaction commits (now, outside one)."""
    for queue_id in sorted(set(queue_ids)):
        transaction.on_commit(lambda queue_id=queue_id: _enqueue(sweep_queue, queue_id))


def assign_tickets_on_commit(ticket_ids: Iterable[int]) -> None:
    """Queue push assignment of these tickets once the current transaction commits."""
    ids = sorted(set(ticket_ids))
    if ids:
        transaction.on_commit(lambda: _enqueue(assign_tickets, ids))


def _enqueue(task, *args) -> None:
    # The beat safety net (sweep_all_queues) catches up on whatever a broker outage loses.
    try:
        task.delay(*args)
    except (BrokerError, RedisError, OSError):
        logger.warning(
            "could not queue %s%r; the periodic sweep will catch up", task.name, args, exc_info=True
        )
