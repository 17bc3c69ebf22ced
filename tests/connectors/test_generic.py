"""Generic webhook connector: the documented JSON format in, signed replies out."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest

from inbox.connectors import registry

# The registry loads the built-in connectors only while it is empty: load them before
# importing the generic package registers it, or the simulated platform would go missing.
registry._registry()

from inbox.connectors.base import InvalidWebhook, PermanentError, SignatureRefused  # noqa: E402
from inbox.connectors.generic import GenericConnector  # noqa: E402
from inbox.connectors.generic.signature import sign  # noqa: E402
from inbox.connectors.http import PlatformHTTP  # noqa: E402
from inbox.models import DeliveryAttempt, Message, OutboundDelivery, Ticket  # noqa: E402
from inbox.services.ingest import ingest_batch  # noqa: E402
from inbox.services.replies import delivery_send, reply_create  # noqa: E402
from tests.connectors.fake_generic import FakeReceiver  # noqa: E402
from tests.factories import AgentProfileFactory, SourceFactory  # noqa: E402

pytestmark = pytest.mark.django_db

SECRET = "whsec-generic-test-7c1"
NOW = 1_795_000_000


def item(external_id="g-1", *, author="cust-9", text="Where is my parcel?", **extra):
    return {
        "id": external_id,
        "author": {"id": author, "handle": "jan", "name": "Jan Jansen"},
        "text": text,
        "created_at": "2026-11-27T09:15:00Z",
        **extra,
    }


def body(*items, **top):
    return json.dumps({"messages": list(items), **top}).encode()


@pytest.fixture
def generic_source(default_queue):
    return SourceFactory(
        name="web-form",
        platform="generic",
        account_id="brand",
        default_queue=default_queue,
        config={},
        secrets={"webhook_secret": SECRET},
    )


def connector(source) -> GenericConnector:
    return GenericConnector(source)


def test_registry_builds_the_generic_connector_and_never_polls_it(generic_source):
    assert type(registry.get_connector(generic_source)) is GenericConnector
    assert "generic" in registry.webhook_only_platforms()
    with pytest.raises(PermanentError, match="never polled"):
        connector(generic_source).fetch(None)


# --- Signature ----------------------------------------------------------------------------


def test_signature_is_hmac_sha256_of_timestamp_dot_body():
    payload = b'{"messages": []}'
    expected = hmac.new(SECRET.encode(), b"1795000000." + payload, hashlib.sha256).hexdigest()
    assert sign(SECRET, payload, "1795000000") == f"sha256={expected}"
    assert sign(SECRET, payload) == "sha256=" + hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "X-Webcare-Signature header is missing"),
        ({"X-Webcare-Signature": "sha256=" + "0" * 64}, "does not match the body"),
        ({"X-Webcare-Signature": sign("other-secret", b"{}")}, "does not match the body"),
        (
            {"X-Webcare-Signature": sign(SECRET, b"{}", str(NOW - 301)), "X-Webcare-Timestamp": str(NOW - 301)},
            "X-Webcare-Timestamp is 301s old",
        ),
        (
            {"X-Webcare-Signature": sign(SECRET, b"{}", str(NOW + 400)), "X-Webcare-Timestamp": str(NOW + 400)},
            "400s in the future",
        ),
        ({"X-Webcare-Signature": sign(SECRET, b"{}", "abc"), "X-Webcare-Timestamp": "abc"}, "Unix seconds"),
        # A timestamped signature with its timestamp stripped no longer matches.
        ({"X-Webcare-Signature": sign(SECRET, b"{}", str(NOW))}, "does not match the body"),
    ],
)
def test_unproven_requests_are_refused_with_the_reason(generic_source, headers, reason):
    with pytest.raises(SignatureRefused, match=reason) as refused:
        connector(generic_source).verify_webhook(b"{}", headers, now=NOW)
    assert SECRET not in str(refused.value)


def test_signed_requests_pass_with_or_without_a_fresh_timestamp(generic_source):
    checker = connector(generic_source)
    checker.verify_webhook(b"{}", {"X-Webcare-Signature": sign(SECRET, b"{}")}, now=NOW)
    stamp = str(NOW - 299)
    checker.verify_webhook(b"{}", {"X-Webcare-Signature": sign(SECRET, b"{}", stamp), "X-Webcare-Timestamp": stamp},
                           now=NOW)


def test_a_source_can_require_the_timestamp(generic_source):
    generic_source.config = {"require_timestamp": True}
    with pytest.raises(SignatureRefused, match="requires it"):
        connector(generic_source).verify_webhook(b"{}", {"X-Webcare-Signature": sign(SECRET, b"{}")}, now=NOW)


def test_a_source_without_a_secret_accepts_nothing(generic_source):
    generic_source.secrets = {}
    with pytest.raises(SignatureRefused, match="no webhook_secret"):
        connector(generic_source).verify_webhook(b"{}", {"X-Webcare-Signature": sign("", b"{}")}, now=NOW)


# --- Parsing ------------------------------------------------------------------------------


def test_parse_maps_every_documented_field(generic_source):
    parsed = connector(generic_source).parse_webhook(
        body(
            item("g-1"),
            item("g-2", text="and a DM", private=True, in_reply_to="g-1", conversation_id="chat-5"),
            item("g-3", author="brand", text="our own answer"),
        )
    )

    first, second, third = parsed.messages
    assert parsed.rejected == []
    assert (first.external_id, first.author.external_id, first.author.handle, first.author.display_name) == (
        "g-1", "cust-9", "jan", "Jan Jansen",
    )
    assert first.created_at == datetime(2026, 11, 27, 9, 15, tzinfo=UTC)
    assert (first.is_public, first.conversation_id, first.in_reply_to_external_id) == (True, "", "")
    assert (second.is_public, second.conversation_id, second.in_reply_to_external_id) == (False, "chat-5", "g-1")
    assert (first.author_is_brand, third.author_is_brand) == (False, True)
    assert first.raw == item("g-1")


def test_private_message_without_conversation_is_threaded_per_customer(generic_source):
    [message] = connector(generic_source).parse_webhook(body(item(private=True))).messages
    assert (message.is_public, message.conversation_id) == (False, "private:cust-9")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "body is not valid JSON: Expecting property name enclosed in double quotes"),
        (b"\xff\xfe{}", "body is not UTF-8"),
        (b"[]", "unknown event shape: expected a JSON object, got list"),
        (b'{"events": []}', 'unknown event shape: expected a "messages" list, got keys: events'),
        (b'{"messages": {}}', 'unknown event shape: "messages" must be a list, got dict'),
        (b'{"type": "reaction", "messages": []}', "unknown event type 'reaction' (known: messages)"),
    ],
)
def test_unreadable_deliveries_raise_with_a_precise_reason(generic_source, raw, reason):
    with pytest.raises(InvalidWebhook) as invalid:
        connector(generic_source).parse_webhook(raw)
    assert str(invalid.value).startswith(reason)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("just text", "messages[1]: item must be an object, got str"),
        ({**item("b"), "id": None}, "messages[1]: id is missing"),
        ({**item("b"), "author": None}, "messages[1]: author is missing"),
        ({**item("b"), "author": {"handle": "x"}}, "messages[1]: author.id is missing"),
        ({**item("b"), "text": 5}, "messages[1]: text must be a string, got int"),
        ({**item("b"), "created_at": "yesterday"}, "messages[1]: created_at is not ISO 8601: 'yesterday'"),
        ({**item("b"), "created_at": "2026-11-27T09:15:00"}, "messages[1]: created_at has no time zone offset"),
        ({**item("b"), "private": "yes"}, "messages[1]: private must be true or false, got 'yes'"),
        ({**item("b"), "in_reply_to": ["g-1"]}, "messages[1]: in_reply_to must be a string, got list"),
    ],
)
def test_a_bad_item_is_rejected_and_the_rest_kept(generic_source, bad, reason):
    parsed = connector(generic_source).parse_webhook(body(item("g-1"), bad, item("g-3")))

    assert [m.external_id for m in parsed.messages] == ["g-1", "g-3"]
    [rejected] = parsed.rejected
    assert rejected.reason.startswith(reason)
    assert rejected.raw == bad


def test_unicode_emoji_and_nul_survive_parsing(generic_source):
    text = "Koffer kwijt 🧳👩🏽‍✈️ — ‏مرحبا‏ \x00 end"
    [message] = connector(generic_source).parse_webhook(body(item(text=text))).messages
    assert message.text == text


# --- Replies ------------------------------------------------------------------------------


@pytest.fixture
def receiver():
    fake = FakeReceiver().start()
    yield fake
    fake.stop()


@pytest.fixture
def agent(db):
    return AgentProfileFactory(user__username="anna").user


@pytest.fixture
def question(generic_source, receiver):
    generic_source.config = {"reply_url": receiver.url, "timeout_seconds": 0.5}
    generic_source.save(update_fields=["config"])
    parsed = connector(generic_source).parse_webhook(body(item("g-1", private=True, conversation_id="chat-5")))
    ingest_batch(source=generic_source, messages=parsed.messages)
    return Message.objects.get(external_id="g-1")


def reply(agent, text="Sorry! Your parcel ships today 📦"):
    return reply_create(ticket=Ticket.objects.get(), author=agent, text=text)


def test_reply_is_posted_signed_with_an_idempotency_key(receiver, question, agent):
    delivery = reply(agent)

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    [post] = receiver.requests
    assert outcome.state == "sent"
    assert delivery.platform_id == "r-1"
    assert post.path == "/replies"
    assert post.headers["Idempotency-Key"] == str(delivery.idempotency_key)
    assert post.headers["X-Webcare-Signature"] == sign(SECRET, post.body, post.headers["X-Webcare-Timestamp"])
    assert post.headers["Content-Type"] == "application/json; charset=utf-8"
    assert post.json == {
        "id": str(delivery.idempotency_key),
        "text": "Sorry! Your parcel ships today 📦",
        "in_reply_to": "g-1",
        "conversation_id": "chat-5",
        "private": True,
        "created_at": delivery.message.created_at.isoformat(),
    }


def test_send_twice_after_a_timeout_posts_once(receiver, question, agent):
    delivery = reply(agent)
    receiver.delay = 1.0

    first = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert first.state == "queued" and delivery.outcome_unknown is True

    receiver.delay = 0
    second = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert second.state == "sent" and delivery.platform_id == "r-1"
    assert len(receiver.requests) == 2
    assert receiver.posts == {str(delivery.idempotency_key): "r-1"}
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == {str(delivery.idempotency_key)}


def test_receiver_5xx_is_retried(receiver, question, agent):
    delivery = reply(agent)
    receiver.status = 503

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.state == "queued" and outcome.retry_in is not None
    assert delivery.last_error == "RetryableError: platform error: 503 upstream down"
    receiver.status = 201
    assert delivery_send(delivery_id=delivery.pk).state == "sent"


def test_receiver_4xx_fails_with_its_reason(receiver, question, agent):
    delivery = reply(agent)
    receiver.status = 422

    assert delivery_send(delivery_id=delivery.pk).state == "failed"

    delivery.refresh_from_db()
    assert delivery.last_error == "422 parent conversation is closed"
    assert delivery.attempt_log.get().outcome == DeliveryAttempt.Outcome.PERMANENT


@pytest.mark.parametrize("status", [201, 422])
def test_each_reply_closes_the_http_client_it_made(
    receiver, question, agent, generic_source, monkeypatch, status
):
    # The generic connector holds no client: send_reply makes one per reply and closes it,
    # whether the receiver took the reply or refused it.
    made = []
    original = PlatformHTTP.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(PlatformHTTP, "__init__", remember)
    receiver.status = status
    delivery = reply(agent)
    conn = connector(generic_source)
    if status == 201:
        conn.send_reply(delivery)
    else:
        with pytest.raises(PermanentError):
            conn.send_reply(delivery)
    assert len(made) == 1 and made[0]._client.is_closed


def test_source_without_reply_url_takes_no_replies(receiver, question, agent, generic_source):
    generic_source.config = {}
    generic_source.save(update_fields=["config"])
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "failed"

    delivery.refresh_from_db()
    assert delivery.state == OutboundDelivery.State.FAILED
    assert delivery.last_error == "this source takes no replies (no reply_url in its config)"
    assert receiver.requests == []


def test_reply_url_must_be_http(generic_source):
    generic_source.config = {"reply_url": "ftp://example.com/x"}
    with pytest.raises(PermanentError, match="reply_url must be an http"):
        connector(generic_source).reply_url  # noqa: B018
