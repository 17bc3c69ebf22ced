from datetime import timedelta

import pytest
from django.utils import timezone

from inbox.connectors.base import AuthenticationFailed, FetchResult, RateLimited, RetryableError
from inbox.models import Message, Source, TicketEvent
from inbox.services.locks import lock
from inbox.services.polling import source_poll, sources_claim_due
from tests.factories import SourceFactory, inbound

pytestmark = pytest.mark.django_db


def reload(source) -> Source:
    return Source.objects.get(pk=source.pk)


def test_poll_ingests_pages_and_moves_cursor_with_each_committed_batch(scripted):
    scripted.pages.extend([
        FetchResult([inbound("a1"), inbound("a2", author="c2")], {"since": "a2"}, has_more=True),
        FetchResult([inbound("a3", reply_to="a1")], {"since": "a3"}),
    ])
    outcome = source_poll(source_id=scripted.source.pk)

    source = reload(scripted.source)
    assert (outcome.status, outcome.pages, outcome.ingest.created) == ("ok", 2, 3)
    assert source.cursor == {"since": "a3"}
    assert scripted.fetch_calls == [None, {"since": "a2"}]
    assert source.last_success_at is not None and source.consecutive_failures == 0
    assert source.next_poll_at == source.last_success_at + timedelta(seconds=source.poll_interval_seconds)
    assert source.lag_seconds is not None


def test_failure_on_second_page_keeps_first_page_and_its_cursor_only(scripted):
    scripted.pages.extend([
        FetchResult([inbound("a1")], {"since": "a1"}, has_more=True),
        RetryableError("502 Bad Gateway"),
    ])
    outcome = source_poll(source_id=scripted.source.pk)
    source = reload(scripted.source)
    assert outcome.status == "retry"
    assert source.cursor == {"since": "a1"}
    assert list(Message.objects.values_list("external_id", flat=True)) == ["a1"]
    assert source.last_error == "RetryableError: 502 Bad Gateway" and source.consecutive_failures == 1


def test_cursor_not_advanced_when_the_batch_does_not_commit(scripted, monkeypatch):
    from django.db import OperationalError

    from inbox.services import polling

    real_ingest = polling.ingest_batch

    def ingest_then_fail(**kwargs):
        real_ingest(**kwargs)
        raise OperationalError("could not extend file: No space left on device")

    monkeypatch.setattr(polling, "ingest_batch", ingest_then_fail)
    scripted.pages.append(FetchResult([inbound("a1")], {"since": "a1"}))
    outcome = source_poll(source_id=scripted.source.pk)

    source = reload(scripted.source)
    assert outcome.status == "retry"
    assert source.cursor is None
    assert not Message.objects.exists()
    assert source.last_error == "OperationalError: could not extend file: No space left on device"


def test_rate_limit_reset_time_is_honoured(scripted):
    scripted.pages.append(RateLimited("429", retry_after=900))
    before = timezone.now()
    source_poll(source_id=scripted.source.pk)
    source = reload(scripted.source)
    assert source.next_poll_at >= before + timedelta(seconds=900)


def test_backoff_grows_with_consecutive_failures(scripted, settings):
    settings.WEBCARE = {**settings.WEBCARE, "POLL_BACKOFF_BASE_SECONDS": 10, "POLL_BACKOFF_MAX_SECONDS": 1000}
    delays = []
    for _ in range(4):
        scripted.pages.append(RetryableError("timeout"))
        outcome = source_poll(source_id=scripted.source.pk)
        delays.append((outcome.next_poll_at - timezone.now()).total_seconds())
    # 10, 20, 40, 80 seconds, each within ±20% jitter
    for delay, nominal in zip(delays, (10, 20, 40, 80), strict=True):
        assert nominal * 0.79 <= delay <= nominal * 1.2
    assert reload(scripted.source).consecutive_failures == 4


def test_lock_prevents_double_polling(scripted):
    scripted.pages.append(FetchResult([inbound("a1")], {"since": "a1"}))
    held = lock(f"poll:{scripted.source.pk}", ttl_seconds=30)
    assert held.acquire()
    try:
        assert source_poll(source_id=scripted.source.pk).status == "locked"
    finally:
        held.release()
    assert scripted.fetch_calls == []
    assert source_poll(source_id=scripted.source.pk).status == "ok"


def test_authentication_failure_marks_source_and_stops_polling(scripted):
    scripted.pages.append(AuthenticationFailed("401 The access token is invalid"))
    outcome = source_poll(source_id=scripted.source.pk)
    source = reload(scripted.source)
    assert outcome.status == "reauth" and source.needs_reauth is True
    assert "401 The access token is invalid" in source.last_error
    event = TicketEvent.objects.get(type="source.needs_reauth")
    assert event.payload["source_id"] == source.pk
    Source.objects.filter(pk=source.pk).update(next_poll_at=None)
    assert source.pk not in sources_claim_due()


def test_claim_leases_due_sources_once(scripted):
    disabled = SourceFactory(name="off", platform="scripted", enabled=False)
    later = SourceFactory(name="later", platform="scripted", next_poll_at=timezone.now() + timedelta(hours=1))
    first = sources_claim_due()
    assert first == [scripted.source.pk]
    assert sources_claim_due() == []
    assert disabled.pk not in first and later.pk not in first
