"""Webhooks end to end: a signed POST to the endpoint, a real Celery worker process ingesting
the stored delivery, an agent's reply posted back by the worker; replays ingest once."""

from __future__ import annotations

import json
import time

import pytest
from django.urls import reverse

from inbox.connectors.generic.signature import sign
from inbox.models import DeadLetter, Message, OutboundDelivery, Ticket, WebhookDelivery
from inbox.services.replies import reply_create
from tests.connectors.fake_generic import FakeReceiver
from tests.factories import SourceFactory
from tests.tasks.test_worker import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.worker]

SECRET = "whsec-worker-e2e-2f9"


@pytest.fixture
def receiver():
    fake = FakeReceiver().start()
    yield fake
    fake.stop()


@pytest.fixture
def widget(default_queue, receiver, redis_client):
    return SourceFactory(
        name="chat widget", platform="generic", account_id="brand", default_queue=default_queue,
        config={"reply_url": receiver.url, "timeout_seconds": 5},
        secrets={"webhook_secret": SECRET},
    )


def post(client, source, document: dict, *, delivery: str = ""):
    body = json.dumps(document, ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {"X-Webcare-Signature": sign(SECRET, body, timestamp), "X-Webcare-Timestamp": timestamp}
    if delivery:
        headers["X-Webcare-Delivery"] = delivery
    return client.post(reverse("webhook-generic", args=[source.pk]), data=body,
                       content_type="application/json", headers=headers)


def message(external_id: str, text: str, **extra) -> dict:
    return {"id": external_id, "author": {"id": "visitor-8", "handle": "visitor8", "name": "نور"},
            "text": text, "created_at": "2026-11-27T09:00:00+00:00", "conversation_id": "chat-8",
            "private": True, **extra}


def settled(delivery_id: int) -> str:
    state = WebhookDelivery.objects.filter(pk=delivery_id).values_list("state", flat=True).first()
    return state if state in ("processed", "rejected") else ""


def test_delivery_ingested_by_the_worker_once_and_the_reply_posted_back(celery_worker, client, widget, receiver,
                                                                        anna):
    first = post(client, widget, {"messages": [message("c-1", "Mijn vlucht is geannuleerd ✈️🚫"),
                                               message("c-2", "Wie helpt mij?")]}, delivery="evt-1")
    assert first.status_code == 202
    assert wait_for(lambda: settled(first.json()["delivery"]), what="the worker to process") == "processed"
    assert Message.objects.filter(source=widget).count() == 2

    # The sender retries the same delivery, and later sends one message again in a new one.
    replay = post(client, widget, {"messages": [message("c-1", "Mijn vlucht is geannuleerd ✈️🚫"),
                                                message("c-2", "Wie helpt mij?")]}, delivery="evt-1")
    assert replay.status_code == 202 and replay.json()["duplicate"] is True
    again = post(client, widget, {"messages": [message("c-2", "Wie helpt mij?"), message("c-3", "Hallo?")]})
    assert wait_for(lambda: settled(again.json()["delivery"]), what="the second delivery") == "processed"
    assert sorted(Message.objects.values_list("external_id", flat=True)) == ["c-1", "c-2", "c-3"]
    assert WebhookDelivery.objects.count() == 2

    # A delivery the worker cannot read is kept, rejected, with its reason; nothing is lost.
    broken = post(client, widget, {"type": "typing"})
    assert wait_for(lambda: settled(broken.json()["delivery"]), what="the broken delivery") == "rejected"
    assert WebhookDelivery.objects.get(pk=broken.json()["delivery"]).error == "unknown event type 'typing' (known: messages)"
    assert not DeadLetter.objects.exists()

    ticket = Ticket.objects.get(source=widget)
    ticket.assignee = anna
    ticket.save(update_fields=["assignee"])
    delivery = reply_create(ticket=ticket, author=anna, text="We boeken u om. 🙏")
    wait_for(lambda: OutboundDelivery.objects.get(pk=delivery.pk).state == "sent", what="the reply to be sent")

    (posted,) = receiver.requests
    assert posted.json["text"] == "We boeken u om. 🙏"
    assert (posted.json["conversation_id"], posted.json["private"]) == ("chat-8", True)
    assert posted.headers["Idempotency-Key"] == str(delivery.idempotency_key)
    assert OutboundDelivery.objects.get(pk=delivery.pk).platform_id == "r-1"


# --- Meta: one signed endpoint, routed by Page id, answered through the Send API ----------------

META_SECRET = "meta-app-secret-e2e-77d"


@pytest.fixture
def celery_worker_env() -> dict[str, str]:
    # The worker signs its Graph calls with the same app secret the endpoint verifies with.
    return {"META_APP_SECRET": META_SECRET, "META_VERIFY_TOKEN": "verify-e2e"}


@pytest.fixture
def graph():
    from tests.connectors.fake_graph import FakeGraph, FakeGraphServer

    with FakeGraphServer(FakeGraph(app_secret=META_SECRET)) as server:
        yield server


def test_meta_delivery_routed_by_the_worker_and_the_reply_sent_through_the_send_api(
    celery_worker, client, settings, graph, default_queue, redis_client, anna
):
    import hashlib
    import hmac
    from datetime import UTC, datetime

    from tests.connectors.fake_graph import PAGE_ID, TOKEN

    settings.WEBCARE = {**settings.WEBCARE, "META_APP_SECRET": META_SECRET, "META_VERIFY_TOKEN": "verify-e2e"}
    messenger = SourceFactory(name="Messenger", platform="messenger", account_id=PAGE_ID,
                              default_queue=default_queue, config={"graph_url": graph.url, "timeout_seconds": 5},
                              secrets={"page_access_token": TOKEN})
    now = datetime.now(UTC)
    graph.fake.customer_message("messenger", "psid-31", now)
    body = json.dumps({"object": "page", "entry": [{"id": PAGE_ID, "time": int(now.timestamp() * 1000), "messaging": [
        {"sender": {"id": "psid-31"}, "recipient": {"id": PAGE_ID}, "timestamp": int(now.timestamp() * 1000),
         "message": {"mid": "m_e2e_1", "text": "Mijn bagage is niet aangekomen 🧳"}},
        {"sender": {"id": "psid-31"}, "recipient": {"id": PAGE_ID}, "timestamp": int(now.timestamp() * 1000),
         "read": {"watermark": int(now.timestamp() * 1000)}},
    ]}]}).encode()
    signed = "sha256=" + hmac.new(META_SECRET.encode(), body, hashlib.sha256).hexdigest()

    for _ in range(2):  # Meta re-delivers; the second copy changes nothing
        response = client.post("/webhooks/meta/", data=body, content_type="application/json",
                               headers={"X-Hub-Signature-256": signed})
        assert response.status_code == 200
        delivery_id = response.json()["delivery"]
        assert wait_for(lambda d=delivery_id: settled(d), what="the worker to route it") == "processed"
    (customer,) = Message.objects.filter(source=messenger)
    assert (customer.text, customer.is_public, customer.conversation_id) == (
        "Mijn bagage is niet aangekomen 🧳", False, "psid-31")
    assert "read" in WebhookDelivery.objects.first().error  # the read receipt is said, not dropped

    ticket = customer.ticket
    ticket.assignee = anna
    ticket.save(update_fields=["assignee"])
    delivery = reply_create(ticket=ticket, author=anna, text="We zoeken het uit! 🙏")
    wait_for(lambda: OutboundDelivery.objects.get(pk=delivery.pk).state == "sent", what="the reply to be sent")

    (sent,) = graph.fake.requests_to("POST", "/messages")
    assert sent.body["recipient"] == {"id": "psid-31"}
    assert (sent.body["messaging_type"], sent.body["message"]["text"]) == ("RESPONSE", "We zoeken het uit! 🙏")
    assert sent.param("appsecret_proof") == hmac.new(META_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
