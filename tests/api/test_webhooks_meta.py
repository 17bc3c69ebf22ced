"""Meta's webhook endpoint: ``GET /webhooks/meta/`` handshake, ``POST`` signed with the app
secret (``X-Hub-Signature-256``), stored without a source, routed by the task to the source of
each Page or Instagram account."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging

import pytest
from django.urls import reverse

from inbox.models import Message, Ticket, WebhookDelivery
from inbox.tasks.webhooks import process_webhook_delivery
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

APP_SECRET = "meta-app-secret-test-8c1"
VERIFY_TOKEN = "verify-token-test-4be"
PAGE = "104857600001"
IG = "17841400000000001"
URL = "/webhooks/meta/"


@pytest.fixture(autouse=True)
def meta_settings(settings):
    settings.WEBCARE = {**settings.WEBCARE, "META_APP_SECRET": APP_SECRET, "META_VERIFY_TOKEN": VERIFY_TOKEN}


@pytest.fixture
def page_source(default_queue):
    return SourceFactory(name="KLM page", platform="facebook", account_id=PAGE, default_queue=default_queue,
                         secrets={"page_access_token": "page-token"})


@pytest.fixture
def messenger_source(default_queue):
    return SourceFactory(name="KLM Messenger", platform="messenger", account_id=PAGE,
                         default_queue=default_queue, secrets={"page_access_token": "page-token"})


def comment(comment_id: str, text: str, *, author: str = "5550001", name: str = "Joost") -> dict:
    return {
        "field": "feed",
        "value": {
            "from": {"id": author, "name": name},
            "post": {"id": f"{PAGE}_900", "status_type": "added_photos", "is_published": True},
            "message": text,
            "post_id": f"{PAGE}_900",
            "comment_id": f"900_{comment_id}",
            "created_time": 1_795_000_000,
            "item": "comment",
            "parent_id": f"{PAGE}_900",
            "verb": "add",
        },
    }


def dm(mid: str, text: str, *, psid: str = "24000001") -> dict:
    return {"sender": {"id": psid}, "recipient": {"id": PAGE}, "timestamp": 1_795_000_000_123,
            "message": {"mid": mid, "text": text}}


def page_body(*, changes=(), messaging=()) -> bytes:
    entry: dict = {"id": PAGE, "time": 1_795_000_000}
    if changes:
        entry["changes"] = list(changes)
    if messaging:
        entry["messaging"] = list(messaging)
    return json.dumps({"object": "page", "entry": [entry]}, ensure_ascii=False).encode()


def signature(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post(client, body: bytes, *, sig: str | None = "sign", **headers):
    if sig == "sign":
        sig = signature(body)
    if sig is not None:
        headers["X-Hub-Signature-256"] = sig
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def process(delivery_id: int) -> str:
    return process_webhook_delivery.apply(args=[delivery_id]).get()


# --- Handshake ------------------------------------------------------------------------------


def test_url_name():
    assert reverse("webhook-meta") == URL


def test_handshake_echoes_the_challenge_for_the_right_token(client):
    response = client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN,
                                "hub.challenge": "1158201444"})

    assert response.status_code == 200
    assert response.content == b"1158201444"
    assert response["Content-Type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.challenge": "1"},
    ],
)
def test_handshake_with_a_wrong_token_or_mode_is_403(client, params, caplog):
    with caplog.at_level(logging.WARNING):
        response = client.get(URL, params)

    assert response.status_code == 403
    assert b"1" != response.content
    assert VERIFY_TOKEN not in response.content.decode()
    assert "handshake refused" in caplog.text


def test_switched_off_without_the_app_secret(client, settings, page_source):
    settings.WEBCARE = {**settings.WEBCARE, "META_APP_SECRET": "", "META_VERIFY_TOKEN": ""}
    body = page_body(changes=[comment("1", "Hallo")])

    assert client.get(URL, {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}).status_code == 404
    assert post(client, body).status_code == 404
    assert WebhookDelivery.objects.count() == 0


def test_only_get_and_post(client):
    assert client.put(URL, data=b"{}").status_code == 405


# --- Deliveries ------------------------------------------------------------------------------


def test_signed_delivery_is_stored_then_routed_to_the_page_and_messenger_sources(
    client, page_source, messenger_source, django_capture_on_commit_callbacks
):
    body = page_body(changes=[comment("1", "Mijn koffer is weg 🧳")], messaging=[dm("m_1", "Hallo? 👋")])

    with django_capture_on_commit_callbacks() as enqueued:
        response = post(client, body)

    assert response.status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert (delivery.source, delivery.platform, bytes(delivery.body)) == (None, "meta", body)
    assert delivery.headers["signature_headers"] == ["X-Hub-Signature-256"]
    assert len(enqueued) == 1

    assert process(delivery.pk) == "processed"

    public = Message.objects.get(source=page_source)
    private = Message.objects.get(source=messenger_source)
    assert (public.text, public.is_public, public.external_id) == ("Mijn koffer is weg 🧳", True, "900_1")
    assert (private.text, private.is_public, private.external_id) == ("Hallo? 👋", False, "m_1")
    assert Ticket.objects.count() == 2


def test_a_replayed_body_is_ingested_once(client, page_source):
    body = page_body(changes=[comment("1", "Hallo")])
    for _ in range(2):
        assert post(client, body).status_code == 200

    first, second = WebhookDelivery.objects.order_by("id")
    assert (process(first.pk), process(second.pk)) == ("processed", "processed")
    assert Message.objects.count() == 1


@pytest.mark.parametrize(
    ("sig", "reason"),
    [
        (None, "missing"),
        ("sha256=" + "0" * 64, "does not match"),
        (signature(b"another body"), "does not match"),
        (signature(page_body(changes=[comment("1", "Hallo")]), secret="not-the-app-secret"), "does not match"),
        ("md5=abc", "sha256="),
    ],
)
def test_forged_or_missing_signature_is_403_logged_and_nothing_stored(client, page_source, caplog, sig, reason):
    with caplog.at_level(logging.WARNING):
        response = post(client, page_body(changes=[comment("1", "Hallo")]), sig=sig)

    assert response.status_code == 403
    assert reason in response.json()["detail"]
    assert "Meta delivery refused" in caplog.text
    assert APP_SECRET not in caplog.text
    assert WebhookDelivery.objects.count() == 0


def test_body_over_the_limit_is_413(client, settings, page_source):
    settings.WEBCARE = {**settings.WEBCARE, "WEBHOOK_MAX_BYTES": 2048}
    body = page_body(changes=[comment("1", "x" * 3000)])

    assert post(client, body).status_code == 413
    assert WebhookDelivery.objects.count() == 0


def test_unknown_object_type_is_kept_and_rejected_with_the_reason(client, page_source):
    body = json.dumps({"object": "user", "entry": [{"id": "1", "changes": [{"field": "email"}]}]}).encode()

    assert post(client, body).status_code == 200
    delivery = WebhookDelivery.objects.get()
    assert process(delivery.pk) == "rejected"

    delivery.refresh_from_db()
    assert "unknown object type 'user'" in delivery.error
    assert bytes(delivery.body) == body


def test_a_page_without_a_source_is_said_on_the_delivery(client, page_source):
    other = page_body(changes=[comment("1", "Hallo")]).replace(PAGE.encode(), b"999")

    post(client, other)
    delivery = WebhookDelivery.objects.get()

    assert process(delivery.pk) == "rejected"
    delivery.refresh_from_db()
    assert "no facebook source has account id 999" in delivery.error
    assert Message.objects.count() == 0
