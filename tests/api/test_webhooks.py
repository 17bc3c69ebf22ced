"""Webhook intake: ``POST /webhooks/generic/<source_id>/`` stores, answers 202, a task ingests."""

from __future__ import annotations

import json
import logging
import re
import time

import pytest
from django.urls import reverse

from inbox.connectors import registry

# Load the built-in connectors before the generic package registers itself (see test_generic).
registry._registry()

import inbox.connectors.generic  # noqa: E402, F401
from inbox.connectors.generic.signature import sign  # noqa: E402
from inbox.models import DeadLetter, Message, Ticket, WebhookDelivery  # noqa: E402
from inbox.services.webhooks import webhook_deliveries_unprocessed  # noqa: E402
from inbox.tasks.webhooks import process_webhook_delivery  # noqa: E402
from tests.factories import SourceFactory  # noqa: E402

pytestmark = pytest.mark.django_db

SECRET = "whsec-api-test-51d"


@pytest.fixture
def generic_source(default_queue):
    return SourceFactory(
        name="chat-widget",
        platform="generic",
        account_id="brand",
        default_queue=default_queue,
        config={},
        secrets={"webhook_secret": SECRET},
    )


def item(external_id="c-1", *, author="visitor-4", text="Is my order on its way?", **extra):
    return {
        "id": external_id,
        "author": {"id": author, "handle": "visitor4", "name": "Visitor Four"},
        "text": text,
        "created_at": "2026-11-27T08:00:00+01:00",
        **extra,
    }


def payload(*items) -> bytes:
    return json.dumps({"messages": list(items)}, ensure_ascii=False).encode()


def url(source) -> str:
    return reverse("webhook-generic", args=[source.pk])


def post(client, source, body: bytes, *, secret=SECRET, timestamp: str | None = "now", delivery="", **headers):
    if timestamp == "now":
        timestamp = str(int(time.time()))
    signed = {}
    if secret is not None:
        signed["X-Webcare-Signature"] = sign(secret, body, timestamp or "")
    if timestamp:
        signed["X-Webcare-Timestamp"] = timestamp
    if delivery:
        signed["X-Webcare-Delivery"] = delivery
    return client.post(
        url(source), data=body, content_type="application/json",
        headers={"User-Agent": "shop-backend/2.1", **signed, **headers},
    )


def process(delivery_id: int) -> str:
    # Celery runs the task in this process, exactly as a worker would.
    return process_webhook_delivery.apply(args=[delivery_id]).get()


# --- Accepted -----------------------------------------------------------------------------


def test_signed_delivery_is_stored_answered_202_and_ingested_by_the_task(
    client, generic_source, django_capture_on_commit_callbacks
):
    body = payload(item("c-1"), item("c-2", text="Hello? 👋", in_reply_to="c-1"))

    with django_capture_on_commit_callbacks() as enqueued:
        response = post(client, generic_source, body, delivery="evt-100")

    delivery = WebhookDelivery.objects.get()
    assert response.status_code == 202
    assert response.json() == {"delivery": delivery.pk, "state": "received", "duplicate": False}
    assert len(enqueued) == 1
    assert bytes(delivery.body) == body
    assert (delivery.source, delivery.platform, delivery.delivery_id) == (generic_source, "generic", "evt-100")
    assert delivery.headers == {
        "content_type": "application/json",
        "user_agent": "shop-backend/2.1",
        "signature_headers": ["X-Webcare-Signature"],
        "x_webcare_timestamp": delivery.headers["x_webcare_timestamp"],
        "x_webcare_delivery": "evt-100",
    }
    assert Message.objects.count() == 0  # nothing ingested before the task runs

    assert process(delivery.pk) == "processed"

    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.error) == ("processed", 1, "")
    assert delivery.processed_at is not None
    first, second = Message.objects.order_by("external_id")
    assert (first.external_id, second.external_id, second.in_reply_to_id) == ("c-1", "c-2", first.pk)
    assert first.ticket_id == second.ticket_id
    assert Ticket.objects.get().queue == generic_source.default_queue


def test_a_processed_delivery_is_not_processed_twice(client, generic_source):
    post(client, generic_source, payload(item("c-1"), {"id": "bad"}))
    delivery = WebhookDelivery.objects.get()
    process(delivery.pk)

    assert process(delivery.pk) == "processed"

    delivery.refresh_from_db()
    assert delivery.attempts == 1
    assert Message.objects.count() == 1
    assert DeadLetter.objects.count() == 1


def test_delivery_without_timestamp_is_accepted(client, generic_source):
    response = post(client, generic_source, payload(item()), timestamp=None)
    assert response.status_code == 202


def test_body_of_exactly_the_limit_is_accepted(client, generic_source, settings):
    body = payload(item())
    settings.WEBCARE = {**settings.WEBCARE, "WEBHOOK_MAX_BYTES": len(body)}
    assert post(client, generic_source, body).status_code == 202


# --- Replays ------------------------------------------------------------------------------


def test_replayed_delivery_id_is_stored_and_ingested_once(client, generic_source, django_capture_on_commit_callbacks):
    body = payload(item("c-1"))
    first = post(client, generic_source, body, delivery="evt-7")
    process(WebhookDelivery.objects.get().pk)

    with django_capture_on_commit_callbacks() as enqueued:
        again = post(client, generic_source, body, delivery="evt-7")

    assert again.status_code == 202
    assert again.json() == {"delivery": first.json()["delivery"], "state": "processed", "duplicate": True}
    assert enqueued == []  # settled already: nothing to do
    assert WebhookDelivery.objects.count() == 1
    assert Message.objects.count() == 1


def test_replay_of_an_unprocessed_delivery_enqueues_it_again(
    client, generic_source, django_capture_on_commit_callbacks
):
    post(client, generic_source, payload(item("c-1")), delivery="evt-8")
    with django_capture_on_commit_callbacks() as enqueued:
        again = post(client, generic_source, payload(item("c-1")), delivery="evt-8")
    assert again.json()["duplicate"] is True
    assert len(enqueued) == 1
    assert WebhookDelivery.objects.count() == 1


def test_same_delivery_id_from_two_sources_is_two_deliveries(client, generic_source, default_queue):
    other = SourceFactory(name="e-mail", platform="generic", config={}, secrets={"webhook_secret": SECRET})
    assert post(client, generic_source, payload(item()), delivery="1").json()["duplicate"] is False
    assert post(client, other, payload(item()), delivery="1").json()["duplicate"] is False
    assert WebhookDelivery.objects.count() == 2


def test_same_messages_in_a_new_delivery_ingest_once(client, generic_source):
    body = payload(item("c-1"), item("c-2"))
    post(client, generic_source, body, delivery="evt-1")
    post(client, generic_source, body, delivery="evt-2")

    first, second = WebhookDelivery.objects.order_by("id")
    assert process(first.pk) == "processed"
    tickets = list(Ticket.objects.order_by("id").values_list("id", flat=True))

    assert process(second.pk) == "processed"

    assert sorted(Message.objects.values_list("external_id", flat=True)) == ["c-1", "c-2"]
    assert list(Ticket.objects.order_by("id").values_list("id", flat=True)) == tickets


# --- Refused ------------------------------------------------------------------------------


def test_forged_signature_is_403_logged_and_nothing_stored(client, generic_source, caplog):
    with caplog.at_level(logging.WARNING, logger="inbox.api.webhooks"):
        response = post(client, generic_source, payload(item()), secret="guessed-secret")

    assert response.status_code == 403
    assert response.json() == {"detail": "signature refused: X-Webcare-Signature does not match the body"}
    assert WebhookDelivery.objects.count() == 0
    [record] = [r for r in caplog.records if r.name == "inbox.api.webhooks"]
    assert record.levelname == "WARNING"
    assert f"source {generic_source.pk} refused" in record.getMessage()
    assert SECRET not in caplog.text and "guessed-secret" not in caplog.text


def test_missing_signature_is_403(client, generic_source):
    response = post(client, generic_source, payload(item()), secret=None)
    assert response.status_code == 403
    assert response.json()["detail"] == "signature refused: X-Webcare-Signature header is missing"
    assert WebhookDelivery.objects.count() == 0


def test_signature_over_another_body_is_403(client, generic_source):
    stamp = str(int(time.time()))
    response = client.post(
        url(generic_source), data=payload(item("c-2")), content_type="application/json",
        headers={"X-Webcare-Signature": sign(SECRET, payload(item("c-1")), stamp), "X-Webcare-Timestamp": stamp},
    )
    assert response.status_code == 403
    assert WebhookDelivery.objects.count() == 0


def test_old_timestamp_is_403(client, generic_source):
    old = str(int(time.time()) - 3600)
    response = post(client, generic_source, payload(item()), timestamp=old)
    assert response.status_code == 403
    # 3600s, or 3601s when the clock ticked over between signing and checking.
    assert re.fullmatch(
        r"signature refused: X-Webcare-Timestamp is 360[01]s old \(tolerance 300s\)", response.json()["detail"]
    )
    assert WebhookDelivery.objects.count() == 0


def test_body_over_the_limit_is_413_and_nothing_stored(client, generic_source, settings, caplog):
    body = payload(item(text="x" * 2000))
    settings.WEBCARE = {**settings.WEBCARE, "WEBHOOK_MAX_BYTES": 1024}

    with caplog.at_level(logging.WARNING, logger="inbox.api.webhooks"):
        response = post(client, generic_source, body)

    assert response.status_code == 413
    assert response.json() == {"detail": "body is larger than 1024 bytes"}
    assert WebhookDelivery.objects.count() == 0
    assert "body over 1024 bytes" in caplog.text


def test_default_limit_is_one_mebibyte(client, generic_source):
    body = payload(item(text="x" * (1024 * 1024)))
    assert post(client, generic_source, body).status_code == 413


def test_unknown_disabled_or_other_platform_source_is_404(client, generic_source):
    disabled = SourceFactory(name="off", platform="generic", enabled=False, secrets={"webhook_secret": SECRET})
    simulated = SourceFactory(name="sim", secrets={"webhook_secret": SECRET})
    body = payload(item())

    for source in (disabled, simulated):
        assert post(client, source, body).status_code == 404
    response = client.post(reverse("webhook-generic", args=[999_999]), data=body, content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"detail": "no such webhook source"}
    assert WebhookDelivery.objects.count() == 0


def test_only_post_is_allowed(client, generic_source):
    assert client.get(url(generic_source)).status_code == 405


def test_overlong_delivery_id_is_400(client, generic_source):
    response = post(client, generic_source, payload(item()), delivery="d" * 201)
    assert response.status_code == 400
    assert WebhookDelivery.objects.count() == 0


# --- Stored, then rejected by the task ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"messages": [', "body is not valid JSON: Expecting value: line 1 column 15 (char 14)"),
        (b'{"tickets": []}', 'unknown event shape: expected a "messages" list, got keys: tickets'),
        (b'{"type": "typing", "messages": []}', "unknown event type 'typing' (known: messages)"),
    ],
)
def test_unreadable_delivery_is_kept_and_rejected_with_the_reason(client, generic_source, body, reason):
    response = post(client, generic_source, body)
    assert response.status_code == 202
    delivery = WebhookDelivery.objects.get()

    assert process(delivery.pk) == "rejected"
    assert process(delivery.pk) == "rejected"

    delivery.refresh_from_db()
    assert (delivery.state, delivery.error, delivery.attempts) == ("rejected", reason, 1)
    assert bytes(delivery.body) == body
    assert Message.objects.count() == 0


def test_bad_items_are_dead_lettered_and_the_good_ones_ingested(client, generic_source):
    body = payload(item("c-1"), {**item("c-2"), "author": "visitor-4"}, item("c-3"), item("c 4"))
    post(client, generic_source, body)
    delivery = WebhookDelivery.objects.get()

    assert process(delivery.pk) == "processed"

    assert sorted(Message.objects.values_list("external_id", flat=True)) == ["c-1", "c-3"]
    letters = list(DeadLetter.objects.order_by("id").values_list("origin", "external_id", "reason"))
    assert letters == [
        ("webhook", "c-2", "messages[1]: author must be an object, got str"),
        ("webhook", "c 4", "external_id contains whitespace or NUL: 'c 4'"),
    ]
    assert all(dead.source_id == generic_source.pk for dead in DeadLetter.objects.all())
    delivery.refresh_from_db()
    assert delivery.error == (
        "2 of 4 items dead-lettered: messages[1]: author must be an object, got str; "
        "external_id contains whitespace or NUL: 'c 4'"
    )


def test_unicode_emoji_and_nul_arrive_intact(client, generic_source):
    text = "Mijn koffer 🧳 is weg 👩🏽‍✈️ — ‏שלום‏ ok\u0000done"
    body = payload(item("c-1", text=text))
    assert b"\\u0000" in body
    post(client, generic_source, body)

    process(WebhookDelivery.objects.get().pk)

    # PostgreSQL cannot store NUL in text: ingest keeps it visible as U+FFFD.
    assert Message.objects.get().text == text.replace("\x00", "\ufffd")


def test_raw_bytes_are_stored_exactly_even_when_not_utf8(client, generic_source):
    body = b'{"messages": []}\xff\x00'
    post(client, generic_source, body)
    delivery = WebhookDelivery.objects.get()
    assert bytes(delivery.body) == body

    assert process(delivery.pk) == "rejected"
    delivery.refresh_from_db()
    assert delivery.error.startswith("body is not UTF-8")


def test_deliveries_left_waiting_are_found_by_the_sweep(client, generic_source):
    post(client, generic_source, payload(item("c-1")))
    post(client, generic_source, payload(item("c-2")))
    done, waiting = WebhookDelivery.objects.order_by("id")
    process(done.pk)

    assert webhook_deliveries_unprocessed(older_than_seconds=0) == [waiting.pk]
    assert webhook_deliveries_unprocessed(older_than_seconds=3600) == []


def test_delivery_of_a_deleted_source_is_rejected(client, generic_source):
    post(client, generic_source, payload(item("c-1")))
    delivery = WebhookDelivery.objects.get()
    generic_source.delete()

    assert process(delivery.pk) == "rejected"
    delivery.refresh_from_db()
    assert delivery.error == "the delivery has no source (deleted?)"


def test_without_the_generic_connector_registered_nothing_is_stored(client, generic_source, monkeypatch):
    monkeypatch.delitem(registry._REGISTRY, "generic")

    response = post(client, generic_source, payload(item()))

    assert response.status_code == 503
    assert WebhookDelivery.objects.count() == 0


def test_processing_a_missing_delivery_is_a_no_op(db):
    assert process(987_654) == "missing"
