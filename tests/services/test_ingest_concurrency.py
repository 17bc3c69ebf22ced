"""Concurrent ingest of overlapping batches: one row per message, nothing raised."""

import threading

import pytest
from django.db import connection

from inbox.models import Message, Ticket, TicketEvent
from inbox.services.ingest import ingest_batch
from tests.factories import inbound

pytestmark = pytest.mark.django_db(transaction=True)


def run_concurrently(source, batches):
    barrier = threading.Barrier(len(batches))
    results, errors = [], []

    def work(batch):
        try:
            barrier.wait()
            results.append(ingest_batch(source=source, messages=batch))
        except BaseException as exc:  # noqa: BLE001 - collected and asserted by the test
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results, errors


def test_two_workers_ingesting_the_same_batch_store_it_once(source):
    batch = [inbound(f"m{i}", author=f"c{i % 40}", minutes=i) for i in range(300)]
    results, errors = run_concurrently(source, [batch, list(batch)])

    assert errors == []
    assert sorted(r.created for r in results) == [0, 300]
    assert sorted(r.duplicates for r in results) == [0, 300]
    assert Message.objects.count() == 300
    assert Ticket.objects.count() == 300
    assert TicketEvent.objects.filter(type="message.created").count() == 300


def test_overlapping_polls_thread_into_one_ticket_per_conversation(source):
    root = [inbound("root", minutes=0)]
    first = root + [inbound(f"r{i}", reply_to="root", minutes=i) for i in range(1, 60)]
    second = root + [inbound(f"r{i}", reply_to="root", minutes=i) for i in range(30, 90)]
    results, errors = run_concurrently(source, [first, second])

    assert errors == []
    assert Message.objects.count() == 90
    assert Ticket.objects.count() == 1
    assert sum(r.created for r in results) == 90
