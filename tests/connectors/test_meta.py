"""Meta connectors: the app webhook (handshake, signature, routing), parsing for Facebook
comments, Messenger and Instagram, and replies through the outbox against a local Graph API."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.test import override_settings

from inbox.connectors import registry

# Load the built-in connectors before importing the Meta package registers its own.
registry._registry()

from inbox.connectors.base import (  # noqa: E402
    AuthenticationFailed,
    InvalidWebhook,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RetryableError,
    SignatureRefused,
)
from inbox.connectors.meta import (  # noqa: E402
    FacebookConnector,
    InstagramConnector,
    MessengerConnector,
    MetaWebhookApp,
)
from inbox.models import DeliveryAttempt, Message, Source, Ticket  # noqa: E402
from inbox.services.ingest import ingest_batch  # noqa: E402
from inbox.services.replies import delivery_send, reply_create  # noqa: E402
from tests.connectors.fake_graph import (  # noqa: E402
    IG_ID,
    PAGE_ID,
    TOKEN,
    VERSION,
    FakeGraph,
    FakeGraphServer,
)
from tests.factories import AgentProfileFactory, SourceFactory  # noqa: E402

pytestmark = pytest.mark.django_db

APP_SECRET = "meta-app-secret-3f9"
VERIFY_TOKEN = "verify-me-41"
POST_ID = f"{PAGE_ID}_7001"
CUSTOMER = ("5550001", "Jan Jansen")
PSID = "24000000000000001"
IGSID = "18000000000000001"


@pytest.fixture(autouse=True)
def meta_settings():
    with override_settings(
        WEBCARE={**settings.WEBCARE, "META_APP_SECRET": APP_SECRET, "META_VERIFY_TOKEN": VERIFY_TOKEN}
    ):
        yield


@pytest.fixture
def server():
    with FakeGraphServer() as running:
        yield running


@pytest.fixture
def fake(server) -> FakeGraph:
    return server.fake


def make_source(platform: str, account: str, server=None, default_queue=None) -> Source:
    config = {"graph_url": server.url, "timeout_seconds": 5} if server else {}
    return SourceFactory(
        name=f"{platform}-brand",
        platform=platform,
        account_id=account,
        default_queue=default_queue,
        config=config,
        secrets={"page_access_token": TOKEN},
    )


@pytest.fixture
def facebook(server, default_queue):
    return make_source("facebook", PAGE_ID, server, default_queue)


@pytest.fixture
def messenger(server, default_queue):
    return make_source("messenger", PAGE_ID, server, default_queue)


@pytest.fixture
def instagram(server, default_queue):
    return make_source("instagram", IG_ID, server, default_queue)


# --- Meta-format builders ----------------------------------------------------------------


def delivery_body(kind: str, *entries) -> bytes:
    return json.dumps({"object": kind, "entry": list(entries)}, ensure_ascii=False).encode()


def entry(account: str, *, changes=None, messaging=None, time_=1_795_000_000, **extra):
    result = {"id": account, "time": time_, **extra}
    if changes is not None:
        result["changes"] = changes
    if messaging is not None:
        result["messaging"] = messaging
    return result


def feed_comment(
    comment_id: str,
    *,
    parent: str = POST_ID,
    text: str = "Where is my bag?",
    author=CUSTOMER,
    created: int = 1_795_000_000,
    verb: str = "add",
    item: str = "comment",
):
    return {
        "field": "feed",
        "value": {
            "from": {"id": author[0], "name": author[1]},
            "post": {"status_type": "added_photos", "is_published": True, "id": POST_ID},
            "message": text,
            "post_id": POST_ID,
            "comment_id": comment_id,
            "created_time": created,
            "item": item,
            "parent_id": parent,
            "verb": verb,
        },
    }


def messaging_event(
    mid: str,
    *,
    sender: str = PSID,
    recipient: str = PAGE_ID,
    text="Hi there",
    at: datetime | None = None,
    echo: bool = False,
    **message,
):
    body = {"mid": mid, **({"text": text} if text is not None else {}), **message}
    if echo:
        body["is_echo"] = True
        body["app_id"] = 1517776481860111
    at = at or datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    return {
        "sender": {"id": sender},
        "recipient": {"id": recipient},
        "timestamp": int(at.timestamp() * 1000),
        "message": body,
    }


def ig_comment(comment_id: str, *, parent: str = "", text: str = "Love it 😍", author=("17000001", "jan.j")):
    value = {
        "from": {"id": author[0], "username": author[1]},
        "media": {"id": "17900000000000777", "media_product_type": "FEED"},
        "id": comment_id,
        "text": text,
    }
    if parent:
        value["parent_id"] = parent
    return {"field": "comments", "value": value}


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- Registry --------------------------------------------------------------------------------


def test_registry_builds_the_three_connectors_and_the_app_and_never_polls_them(
    facebook, messenger, instagram
):
    assert type(registry.get_connector(facebook)) is FacebookConnector
    assert type(registry.get_connector(messenger)) is MessengerConnector
    assert type(registry.get_connector(instagram)) is InstagramConnector
    assert isinstance(registry.get_webhook_app("meta"), MetaWebhookApp)
    assert {"facebook", "messenger", "instagram"} <= set(registry.webhook_only_platforms())
    with pytest.raises(PermanentError, match="never polled"):
        FacebookConnector(facebook).fetch(None)


# --- Handshake and signature -------------------------------------------------------------------


def test_handshake_with_our_verify_token_echoes_the_challenge():
    app = MetaWebhookApp()
    assert app.configured() is True
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    assert app.verify_subscription(params) == "1158201444"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        (
            {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
            "hub.verify_token does not match META_VERIFY_TOKEN",
        ),
        (
            {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
            "hub.mode must be 'subscribe', got 'unsubscribe'",
        ),
        ({"hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"}, "hub.mode is missing"),
        ({"hub.mode": "subscribe", "hub.challenge": "1"}, "hub.verify_token is missing"),
        ({"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN}, "hub.challenge is missing"),
        (
            {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "9" * 201},
            "hub.challenge is not a handshake challenge",
        ),
    ],
)
def test_handshake_is_refused_with_the_reason_and_never_echoes_the_token(params, reason):
    with pytest.raises(SignatureRefused) as refused:
        MetaWebhookApp().verify_subscription(params)
    assert str(refused.value).startswith(reason)
    assert VERIFY_TOKEN not in str(refused.value)


def test_app_is_not_configured_without_secret_and_verify_token():
    with override_settings(WEBCARE={**settings.WEBCARE, "META_APP_SECRET": "", "META_VERIFY_TOKEN": ""}):
        assert MetaWebhookApp().configured() is False
        with pytest.raises(SignatureRefused, match="META_APP_SECRET is not set"):
            MetaWebhookApp().verify(b"{}", {"X-Hub-Signature-256": sign(b"{}")})


def test_a_body_signed_with_the_app_secret_is_accepted():
    body = delivery_body("page", entry(PAGE_ID, changes=[feed_comment(f"{POST_ID}_1")]))
    MetaWebhookApp().verify(body, {"X-Hub-Signature-256": sign(body)})
    MetaWebhookApp().verify(body, {"X-Hub-Signature-256": sign(body).upper().replace("SHA256", "sha256")})


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "X-Hub-Signature-256 header is missing"),
        ("sha1=abc", "X-Hub-Signature-256 is malformed: expected sha256=<64 hex digits>"),
        ("sha256=" + "z" * 64, "X-Hub-Signature-256 is malformed"),
        ("sha256=abcd", "X-Hub-Signature-256 is malformed"),
        ("forged", "X-Hub-Signature-256 does not match the body signed with META_APP_SECRET"),
        ("other-secret", "X-Hub-Signature-256 does not match the body signed with META_APP_SECRET"),
    ],
)
def test_forged_missing_or_malformed_signatures_are_refused(header, reason):
    body = delivery_body("page", entry(PAGE_ID, changes=[feed_comment(f"{POST_ID}_1")]))
    if header == "forged":
        header = sign(body.replace(b"Where", b"Whose"))
    elif header == "other-secret":
        header = sign(body, "not-our-secret")
    headers = {} if header is None else {"X-Hub-Signature-256": header}
    with pytest.raises(SignatureRefused, match=reason.replace("(", r"\(").replace("<", "<")):
        MetaWebhookApp().verify(body, headers)


# --- Routing --------------------------------------------------------------------------------


def test_page_feed_and_messaging_in_one_delivery_become_two_parts():
    comment = feed_comment(f"{POST_ID}_1")
    dm = messaging_event("m_1")
    body = delivery_body("page", entry(PAGE_ID, changes=[comment]), entry(PAGE_ID, messaging=[dm]))

    routed = MetaWebhookApp().route(body)

    assert [(p.platform, p.account_id, p.summary) for p in routed.parts] == [
        ("facebook", PAGE_ID, f"page {PAGE_ID}: 1 feed change"),
        ("messenger", PAGE_ID, f"page {PAGE_ID}: 1 messaging event"),
    ]
    assert json.loads(routed.parts[0].body) == {
        "object": "page",
        "entry": [{"id": PAGE_ID, "time": 1_795_000_000, "changes": [comment]}],
    }
    assert json.loads(routed.parts[1].body) == {
        "object": "page",
        "entry": [{"id": PAGE_ID, "time": 1_795_000_000, "messaging": [dm]}],
    }
    assert routed.ignored == []


def test_entries_of_one_account_are_grouped_and_accounts_are_kept_apart():
    other_page = "104857600000002"
    body = delivery_body(
        "page",
        entry(PAGE_ID, changes=[feed_comment(f"{POST_ID}_1")]),
        entry(other_page, changes=[feed_comment("x_2")]),
        entry(PAGE_ID, changes=[feed_comment(f"{POST_ID}_3"), feed_comment(f"{POST_ID}_4")]),
    )
    routed = MetaWebhookApp().route(body)
    assert [(p.platform, p.account_id, p.summary) for p in routed.parts] == [
        ("facebook", PAGE_ID, f"page {PAGE_ID}: 3 feed changes"),
        ("facebook", other_page, f"page {other_page}: 1 feed change"),
    ]
    assert len(json.loads(routed.parts[0].body)["entry"]) == 2


def test_instagram_comments_and_messages_go_to_the_instagram_source():
    body = delivery_body(
        "instagram",
        entry(IG_ID, changes=[ig_comment("1791")]),
        entry(IG_ID, messaging=[messaging_event("m_ig", sender=IGSID, recipient=IG_ID)]),
    )
    routed = MetaWebhookApp().route(body)
    [part] = routed.parts
    assert (part.platform, part.account_id) == ("instagram", IG_ID)
    assert part.summary == f"instagram {IG_ID}: 1 comment change, 1 messaging event"


def test_fields_the_desk_does_not_ingest_are_said_in_ignored():
    ratings = {"field": "ratings", "value": {"item": "rating", "verb": "add"}}
    mention = {"field": "mention", "value": {"item": "post", "verb": "add"}}
    body = delivery_body(
        "page",
        entry(PAGE_ID, changes=[ratings, ratings, mention]),
        entry(PAGE_ID, standby=[messaging_event("m_s")]),
        "not an entry",
        {"time": 1},
    )
    routed = MetaWebhookApp().route(body)
    assert routed.parts == []
    assert routed.ignored == [
        f"page {PAGE_ID}: field 'mention' is not ingested",
        f"page {PAGE_ID}: field 'ratings' is not ingested (2 changes)",
        f"page {PAGE_ID}: 'standby' events for another app of the handover protocol are not ingested",
        "entry[2]: not an object (malformed), left out",
        "entry[3]: no id (malformed), left out",
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"object": "user", "entry": []}', "unknown object type 'user' (known: page, instagram)"),
        (b'{"entry": []}', "unknown object type 'NoneType' (known: page, instagram)"),
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe", "body is not UTF-8"),
        (b"[1, 2]", "body must be a JSON object, got list"),
        (b'{"object": "page", "entry": {}}', '"entry" must be a list, got dict'),
        (b'{"object": "page"}', 'no "entry" list in the body'),
    ],
)
def test_unreadable_deliveries_are_invalid_with_the_reason(body, reason):
    with pytest.raises(InvalidWebhook) as invalid:
        MetaWebhookApp().route(body)
    assert str(invalid.value).startswith(reason)


# --- Parsing: Facebook comments -------------------------------------------------------------


def test_facebook_comments_thread_by_their_top_level_comment(facebook):
    top, reply, brand = f"{POST_ID}_101", f"{POST_ID}_102", f"{POST_ID}_103"
    body = delivery_body(
        "page",
        entry(
            PAGE_ID,
            changes=[
                feed_comment(top, created=1_795_000_000),
                feed_comment(reply, parent=top, text="Any news?", created=1_795_000_060),
                feed_comment(brand, parent=top, text="We are on it", author=(PAGE_ID, "SkyBlue Air")),
            ],
        ),
    )

    result = FacebookConnector(facebook).parse_webhook(body)

    assert result.rejected == [] and result.ignored == [] and result.next_cursor is None
    rows = [
        (m.external_id, m.conversation_id, m.in_reply_to_external_id, m.author_is_brand, m.is_public)
        for m in result.messages
    ]
    assert rows == [
        (top, top, "", False, True),
        (reply, top, top, False, True),
        (brand, top, top, True, True),
    ]
    first = result.messages[0]
    assert first.author.external_id == CUSTOMER[0] and first.author.display_name == CUSTOMER[1]
    assert first.created_at == datetime.fromtimestamp(1_795_000_000, tz=UTC)
    assert first.text == "Where is my bag?"


def test_facebook_reactions_edits_and_removals_are_ignored_with_counts(facebook):
    body = delivery_body(
        "page",
        entry(
            PAGE_ID,
            changes=[
                feed_comment(f"{POST_ID}_1", item="reaction"),
                feed_comment(f"{POST_ID}_2", item="reaction"),
                feed_comment(f"{POST_ID}_3", verb="edited"),
                feed_comment(f"{POST_ID}_4", verb="remove"),
                feed_comment(f"{POST_ID}_5", verb="hide"),
                feed_comment(f"{POST_ID}_6", item="status"),
                {"field": "ratings", "value": {}},
            ],
        ),
    )
    result = FacebookConnector(facebook).parse_webhook(body)
    assert result.messages == [] and result.rejected == []
    assert result.ignored == [
        f"page {PAGE_ID}: feed reaction add not ingested (2×)",
        f"page {PAGE_ID}: feed comment edited not ingested",
        f"page {PAGE_ID}: feed comment remove not ingested",
        f"page {PAGE_ID}: feed comment hide not ingested",
        f"page {PAGE_ID}: feed status add not ingested",
        f"page {PAGE_ID}: field 'ratings' is not ingested",
    ]


def test_a_malformed_comment_is_rejected_with_the_reason_and_the_rest_is_kept(facebook):
    no_author = feed_comment(f"{POST_ID}_2")
    del no_author["value"]["from"]
    bad_text = feed_comment(f"{POST_ID}_3")
    bad_text["value"]["message"] = 42
    bad_time = feed_comment(f"{POST_ID}_4")
    bad_time["value"]["created_time"] = "yesterday"
    body = delivery_body(
        "page",
        entry(
            PAGE_ID,
            changes=[
                feed_comment(f"{POST_ID}_1"),
                no_author,
                bad_text,
                bad_time,
                "junk",
                {"field": "feed"},
            ],
        ),
    )

    result = FacebookConnector(facebook).parse_webhook(body)

    assert [m.external_id for m in result.messages] == [f"{POST_ID}_1"]
    assert [(r.reason, r.external_id) for r in result.rejected] == [
        (
            "entry[0].changes[1]: from is missing (Meta leaves it out when the app may not see the author)",
            f"{POST_ID}_2",
        ),
        ("entry[0].changes[2]: message must be a string, got int", f"{POST_ID}_3"),
        ("entry[0].changes[3]: created_time is not a time: 'yesterday'", f"{POST_ID}_4"),
        ("entry[0].changes[4]: must be an object, got str", ""),
        ("entry[0].changes[5]: value must be an object", ""),
    ]
    assert result.rejected[1].raw == bad_text


def test_a_photo_comment_without_text_reads_as_the_photo(facebook):
    change = feed_comment(f"{POST_ID}_9", text="")
    change["value"]["photo"] = "https://scontent.example/photo.jpg"
    [message] = (
        FacebookConnector(facebook)
        .parse_webhook(delivery_body("page", entry(PAGE_ID, changes=[change])))
        .messages
    )
    assert message.text == "[photo] https://scontent.example/photo.jpg"


def test_entries_of_other_accounts_and_other_objects(facebook):
    body = delivery_body("page", entry("999", changes=[feed_comment("999_1")]))
    result = FacebookConnector(facebook).parse_webhook(body)
    assert result.messages == []
    assert result.ignored == [f"entry[0]: for account '999', not this source's ({PAGE_ID})"]
    with pytest.raises(InvalidWebhook, match="facebook sources read object 'page', got 'instagram'"):
        FacebookConnector(facebook).parse_webhook(delivery_body("instagram"))


TRICKY = "Waar is mijn koffer? 🧳👨‍👩‍👧 مرحبا بكم \u200f end\x00nul 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"


def test_unicode_rtl_emoji_and_nul_survive_parsing_unchanged(facebook, messenger, instagram):
    fb = FacebookConnector(facebook).parse_webhook(
        delivery_body("page", entry(PAGE_ID, changes=[feed_comment(f"{POST_ID}_1", text=TRICKY)]))
    )
    ms = MessengerConnector(messenger).parse_webhook(
        delivery_body("page", entry(PAGE_ID, messaging=[messaging_event("m_1", text=TRICKY)]))
    )
    ig = InstagramConnector(instagram).parse_webhook(
        delivery_body("instagram", entry(IG_ID, changes=[ig_comment("1791", text=TRICKY)]))
    )
    assert [r.messages[0].text for r in (fb, ms, ig)] == [TRICKY] * 3


# --- Parsing: Messenger and Instagram -----------------------------------------------------------


def test_messenger_messages_attachments_and_echoes(messenger):
    photo = {"type": "image", "payload": {"url": "https://cdn.example/p.jpg"}}
    body = delivery_body(
        "page",
        entry(
            PAGE_ID,
            messaging=[
                messaging_event("m_1", text="My flight is delayed"),
                messaging_event("m_2", text=None, attachments=[photo]),
                messaging_event("m_3", sender=PAGE_ID, recipient=PSID, text="We are looking", echo=True),
                {
                    "sender": {"id": PSID},
                    "recipient": {"id": PAGE_ID},
                    "timestamp": 1,
                    "delivery": {"mids": ["m_3"], "watermark": 1},
                },
                {
                    "sender": {"id": PSID},
                    "recipient": {"id": PAGE_ID},
                    "timestamp": 1,
                    "read": {"watermark": 1},
                },
                {
                    "sender": {"id": PSID},
                    "recipient": {"id": PAGE_ID},
                    "timestamp": 1,
                    "read": {"watermark": 2},
                },
                {
                    "sender": {"id": PSID},
                    "recipient": {"id": PAGE_ID},
                    "timestamp": 1,
                    "reaction": {"mid": "m_3", "action": "react", "emoji": "👍"},
                },
                messaging_event("m_4", text=None),
            ],
        ),
    )

    result = MessengerConnector(messenger).parse_webhook(body)

    rows = [
        (m.external_id, m.text, m.conversation_id, m.author_is_brand, m.is_public, m.author.external_id)
        for m in result.messages
    ]
    assert rows == [
        ("m_1", "My flight is delayed", PSID, False, False, PSID),
        ("m_2", "[image] https://cdn.example/p.jpg", PSID, False, False, PSID),
        ("m_3", "We are looking", PSID, True, False, PAGE_ID),
    ]
    assert result.messages[1].raw["message"]["attachments"] == [photo]
    assert result.messages[0].created_at == datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
    assert result.ignored == [
        f"messenger {PAGE_ID}: delivery events not ingested",
        f"messenger {PAGE_ID}: read events not ingested (2×)",
        f"messenger {PAGE_ID}: reaction events not ingested",
    ]
    assert [(r.reason, r.external_id) for r in result.rejected] == [
        ("entry[0].messaging[7]: message has neither text nor attachments", "m_4")
    ]


def test_instagram_comments_thread_and_direct_messages_are_private(instagram):
    body = delivery_body(
        "instagram",
        entry(
            IG_ID,
            time_=1_795_000_100,
            changes=[
                ig_comment("1791"),
                ig_comment("1792", parent="1791", text="@skyblueair hello?"),
                ig_comment("1793", parent="1791", text="Hi!", author=(IG_ID, "skyblueair")),
                {"field": "mentions", "value": {"media_id": "1", "comment_id": "2"}},
            ],
        ),
        entry(
            IG_ID,
            messaging=[
                messaging_event("m_ig1", sender=IGSID, recipient=IG_ID, text="DM here"),
                messaging_event("m_ig2", sender=IG_ID, recipient=IGSID, text="Answer", echo=True),
                messaging_event("m_ig3", sender=IGSID, recipient=IG_ID, text=None, is_deleted=True),
            ],
        ),
    )

    result = InstagramConnector(instagram).parse_webhook(body)

    rows = [
        (m.external_id, m.conversation_id, m.in_reply_to_external_id, m.is_public, m.author_is_brand)
        for m in result.messages
    ]
    assert rows == [
        ("1791", "1791", "", True, False),
        ("1792", "1791", "1791", True, False),
        ("1793", "1791", "1791", True, True),
        ("m_ig1", IGSID, "", False, False),
        ("m_ig2", IGSID, "", False, True),
    ]
    assert result.messages[0].author.handle == "jan.j"
    assert result.messages[0].created_at == datetime.fromtimestamp(1_795_000_100, tz=UTC)
    assert result.ignored == [
        f"instagram {IG_ID}: field 'mentions' is not ingested",
        f"instagram {IG_ID}: deleted (unsent) messages not ingested",
    ]


def test_a_duplicate_delivery_is_ingested_once_and_the_thread_is_one_ticket(facebook):
    top = f"{POST_ID}_101"
    body = delivery_body(
        "page",
        entry(
            PAGE_ID, changes=[feed_comment(top), feed_comment(f"{POST_ID}_102", parent=top, text="Hello? 🙋")]
        ),
    )

    for _ in range(2):
        result = FacebookConnector(facebook).parse_webhook(body)
        ingest_batch(source=facebook, messages=result.messages, rejected=result.rejected)

    assert Message.objects.filter(source=facebook).count() == 2
    assert Ticket.objects.count() == 1
    assert Message.objects.get(external_id=f"{POST_ID}_102").in_reply_to.external_id == top


# --- Replies ------------------------------------------------------------------------------------


@pytest.fixture
def agent(db):
    return AgentProfileFactory(user__username="anna").user


def ingest(connector_cls, source, body: bytes) -> None:
    result = connector_cls(source).parse_webhook(body)
    assert result.rejected == []
    ingest_batch(source=source, messages=result.messages)


def reply(agent, text="Sorry! Please send us your booking code 🙏", *, is_public=None):
    return reply_create(ticket=Ticket.objects.get(), author=agent, text=text, is_public=is_public)


def set_timeout(source, seconds: float) -> None:
    source.config = {**source.config, "timeout_seconds": seconds}
    source.save(update_fields=["config"])


@pytest.fixture
def fb_thread(fake, facebook):
    """A customer's comment and their follow-up reply to it, ingested and on the platform."""
    top, follow_up = f"{POST_ID}_101", f"{POST_ID}_102"
    now = datetime.now(UTC)
    fake.comment(top, author=CUSTOMER, at=now)
    fake.comment(follow_up, parent=top, author=CUSTOMER, at=now)
    created = int(now.timestamp())
    ingest(
        FacebookConnector,
        facebook,
        delivery_body(
            "page",
            entry(
                PAGE_ID,
                changes=[
                    feed_comment(top, created=created),
                    feed_comment(follow_up, parent=top, text="Anyone?", created=created + 1),
                ],
            ),
        ),
    )
    return top, follow_up


def test_facebook_public_reply_answers_the_top_level_comment(fake, facebook, fb_thread, agent):
    top, _ = fb_thread
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [post] = fake.requests_to("POST", "/comments")
    assert post.path == f"/{VERSION}/{top}/comments"
    assert post.body == {"message": "Sorry! Please send us your booking code 🙏"}
    [posted] = [c for c in fake.replies_to(top) if c["from"]["id"] == PAGE_ID]
    delivery.refresh_from_db()
    assert delivery.platform_id == posted["id"]
    assert Message.objects.get(pk=delivery.message_id).external_id == posted["id"]


def test_facebook_private_reply_goes_to_the_comment_through_messenger(fake, facebook, fb_thread, agent):
    _, follow_up = fb_thread
    delivery = reply(agent, "Sent you a message", is_public=False)

    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [post] = fake.requests_to("POST", "/messages")
    assert post.path == f"/{VERSION}/{PAGE_ID}/messages"
    assert post.body == {"recipient": {"comment_id": follow_up}, "message": {"text": "Sent you a message"}}
    delivery.refresh_from_db()
    assert delivery.platform_id == fake.conversations[("messenger", CUSTOMER[0])][0]["id"]


def test_a_private_reply_after_a_timeout_is_found_in_the_conversation(fake, facebook, fb_thread, agent):
    fake.fail("post-then-slow", method="POST", path_contains="/messages")
    set_timeout(facebook, 0.3)
    delivery = reply(agent, "Sent you a message", is_public=False)

    assert delivery_send(delivery_id=delivery.pk).state == "queued"
    set_timeout(facebook, 5)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [sent] = fake.conversations[("messenger", CUSTOMER[0])]
    delivery.refresh_from_db()
    assert delivery.platform_id == sent["id"]
    assert len(fake.requests_to("POST", "/messages")) == 1
    [lookup] = fake.requests_to("GET", f"/{PAGE_ID}/conversations")
    assert lookup.param("user_id") == CUSTOMER[0]


def test_a_second_private_reply_to_one_comment_keeps_metas_reason(fake, facebook, fb_thread, agent):
    fake.private_replied.add(fb_thread[1])
    delivery = reply(agent, "Sent you a message", is_public=False)
    assert delivery_send(delivery_id=delivery.pk).state == "failed"
    delivery.refresh_from_db()
    assert delivery.last_error == (
        "Meta refused the request: (#10900) Activity already replied to [code 10900, fbtrace_id AbCdEfGh123]"
    )


def age_customer_messages(days: float) -> None:
    """The reply waited in the queue (approval, outage) while the window closed."""
    Message.objects.filter(direction=Message.Direction.INBOUND).update(
        created_at=datetime.now(UTC) - timedelta(days=days)
    )


def test_facebook_private_reply_after_seven_days_is_refused_before_posting(fake, facebook, agent):
    fake.comment(f"{POST_ID}_5", at=datetime.now(UTC) - timedelta(days=8))
    ingest(
        FacebookConnector,
        facebook,
        delivery_body(
            "page",
            entry(
                PAGE_ID, changes=[feed_comment(f"{POST_ID}_5", created=int(datetime.now(UTC).timestamp()))]
            ),
        ),
    )
    delivery = reply(agent, is_public=False)
    age_customer_messages(8)

    assert delivery_send(delivery_id=delivery.pk).state == "failed"

    delivery.refresh_from_db()
    assert "the private reply window is closed" in delivery.last_error
    assert "within 7 days" in delivery.last_error
    assert fake.requests_to("POST", "") == []


def messenger_question(fake, messenger, *, hours_ago: float, mid: str = "m_q"):
    at = datetime.now(UTC) - timedelta(hours=hours_ago)
    fake.customer_message("messenger", PSID, at)
    ingest(
        MessengerConnector,
        messenger,
        delivery_body(
            "page", entry(PAGE_ID, messaging=[messaging_event(mid, text="Can you rebook me?", at=at)])
        ),
    )


def test_messenger_reply_inside_24_hours_is_a_response(fake, messenger, agent):
    messenger_question(fake, messenger, hours_ago=2)
    delivery = reply(agent, "Of course 😊")

    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [post] = fake.requests_to("POST", "/messages")
    assert post.path == f"/{VERSION}/{PAGE_ID}/messages"
    assert post.body == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "Of course 😊"},
    }
    delivery.refresh_from_db()
    assert delivery.platform_id == fake.conversations[("messenger", PSID)][0]["id"]


def test_messenger_reply_after_30_hours_carries_the_human_agent_tag(fake, messenger, agent):
    messenger_question(fake, messenger, hours_ago=30)
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [post] = fake.requests_to("POST", "/messages")
    assert post.body == {
        "recipient": {"id": PSID},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
        "message": {"text": "Sorry! Please send us your booking code 🙏"},
    }


def test_messenger_reply_after_8_days_fails_with_the_window_reason_and_posts_nothing(fake, messenger, agent):
    messenger_question(fake, messenger, hours_ago=2)
    delivery = reply(agent)
    age_customer_messages(8)

    assert delivery_send(delivery_id=delivery.pk).state == "failed"

    delivery.refresh_from_db()
    assert delivery.last_error.startswith("the reply window is closed: the customer last wrote on ")
    assert "up to 7 days after the customer's last message" in delivery.last_error
    assert "The customer must write again" in delivery.last_error
    assert fake.requests_to("POST", "") == []
    assert Message.objects.get(pk=delivery.message_id).delivery_state == Message.Delivery.FAILED


def test_a_window_closed_on_meta_keeps_metas_reason(fake, messenger, agent):
    """The desk thinks the window is open (its clock), Meta says it is not."""
    messenger_question(fake, messenger, hours_ago=2)
    fake.customer_message("messenger", PSID, datetime.now(UTC) - timedelta(days=2))
    delivery = reply(agent)
    assert delivery_send(delivery_id=delivery.pk).state == "failed"
    delivery.refresh_from_db()
    assert "outside the allowed reply window" in delivery.last_error
    assert "This message is sent outside of allowed window. [code 10/2018278" in delivery.last_error


@pytest.fixture
def ig_thread(fake, instagram):
    fake.comment("1791", platform="instagram", author=("17000001", "jan.j"))
    fake.comment("1792", platform="instagram", parent="1791", author=("17000001", "jan.j"))
    ingest(
        InstagramConnector,
        instagram,
        delivery_body(
            "instagram",
            entry(
                IG_ID,
                time_=int(datetime.now(UTC).timestamp()),
                changes=[ig_comment("1791"), ig_comment("1792", parent="1791", text="hello?")],
            ),
        ),
    )


def test_instagram_public_reply_goes_to_the_top_level_comments_replies(fake, instagram, ig_thread, agent):
    delivery = reply(agent, "Thanks 💙")

    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [post] = fake.requests_to("POST", "/replies")
    assert post.path == f"/{VERSION}/1791/replies"
    assert post.body == {"message": "Thanks 💙"}
    delivery.refresh_from_db()
    assert delivery.platform_id == [c["id"] for c in fake.replies_to("1791") if c["from"]["id"] == IG_ID][0]


def test_instagram_private_reply_to_a_comment(fake, instagram, ig_thread, agent):
    delivery = reply(agent, "Check your DMs", is_public=False)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    [post] = fake.requests_to("POST", "/messages")
    assert post.path == f"/{VERSION}/me/messages"
    assert post.body == {"recipient": {"comment_id": "1792"}, "message": {"text": "Check your DMs"}}


def test_instagram_direct_message_reply_uses_the_window(fake, instagram, agent):
    at = datetime.now(UTC) - timedelta(hours=30)
    fake.customer_message("instagram", IGSID, at)
    ingest(
        InstagramConnector,
        instagram,
        delivery_body(
            "instagram",
            entry(
                IG_ID,
                messaging=[messaging_event("m_ig1", sender=IGSID, recipient=IG_ID, text="DM here", at=at)],
            ),
        ),
    )
    delivery = reply(agent, "Here to help")

    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [post] = fake.requests_to("POST", "/messages")
    assert post.path == f"/{VERSION}/me/messages"
    assert post.body == {
        "recipient": {"id": IGSID},
        "messaging_type": "MESSAGE_TAG",
        "tag": "HUMAN_AGENT",
        "message": {"text": "Here to help"},
    }
    delivery.refresh_from_db()
    assert delivery.platform_id == fake.conversations[("instagram", IGSID)][0]["id"]


# --- Exactly once, errors -----------------------------------------------------------------------


def test_send_twice_after_a_timeout_posts_one_comment(fake, facebook, fb_thread, agent):
    top, _ = fb_thread
    fake.fail("post-then-slow", method="POST", path_contains="/comments")
    set_timeout(facebook, 0.3)
    delivery = reply(agent)

    first = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert first.state == "queued" and delivery.outcome_unknown is True
    set_timeout(facebook, 5)

    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    delivery.refresh_from_db()
    [posted] = [c for c in fake.replies_to(top) if c["from"]["id"] == PAGE_ID]
    assert delivery.platform_id == posted["id"]
    assert len(fake.requests_to("POST", "/comments")) == 1
    [lookup] = fake.requests_to("GET", f"/{top}/comments")
    assert lookup.param("fields") == "id,message,from,created_time"
    assert lookup.param("order") == "reverse_chronological"
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == [
        DeliveryAttempt.Outcome.UNKNOWN,
        DeliveryAttempt.Outcome.FOUND,
    ]


def test_send_twice_after_a_timeout_posts_one_messenger_message(fake, messenger, agent):
    messenger_question(fake, messenger, hours_ago=1)
    fake.fail("post-then-slow", method="POST", path_contains="/messages")
    set_timeout(messenger, 0.3)
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "queued"
    set_timeout(messenger, 5)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [sent] = fake.conversations[("messenger", PSID)]
    delivery.refresh_from_db()
    assert delivery.platform_id == sent["id"]
    [lookup] = fake.requests_to("GET", "/conversations")
    assert lookup.path == f"/{VERSION}/{PAGE_ID}/conversations"
    assert lookup.param("user_id") == PSID


def test_after_a_timeout_that_did_not_post_the_retry_posts_once(fake, instagram, ig_thread, agent):
    fake.fail("slow", method="POST", path_contains="/replies")
    set_timeout(instagram, 0.3)
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "queued"
    assert [c for c in fake.replies_to("1791") if c["from"]["id"] == IG_ID] == []
    set_timeout(instagram, 5)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    assert len([c for c in fake.replies_to("1791") if c["from"]["id"] == IG_ID]) == 1
    [lookup] = fake.requests_to("GET", "/1791/replies")
    assert lookup.param("fields") == "id,text,from,timestamp"


def test_find_sent_skips_other_texts_other_authors_and_posts_of_other_deliveries(
    fake, facebook, fb_thread, agent
):
    top, _ = fb_thread
    fake.comment(
        f"{POST_ID}_201", parent=top, text="Sorry! Please send us your booking code 🙏", author=CUSTOMER
    )
    fake.comment(f"{POST_ID}_202", parent=top, text="Something else", author=(PAGE_ID, "SkyBlue Air"))
    delivery = reply(agent)
    with FacebookConnector(facebook) as connector:
        assert connector.find_sent(delivery) is None


def test_deleted_parent_fails_permanently_with_metas_reason(fake, facebook, fb_thread, agent):
    top, _ = fb_thread
    fake.deleted.add(top)
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "failed"

    delivery.refresh_from_db()
    assert delivery.last_error.startswith(
        "the comment or message answered no longer exists on Meta: "
        f"Unsupported post request. Object with ID '{top}' does not exist"
    )
    assert "[code 100/33, fbtrace_id AbCdEfGh123]" in delivery.last_error
    assert delivery.attempt_log.get().outcome == DeliveryAttempt.Outcome.PERMANENT


def test_an_expired_token_fails_the_reply_and_marks_the_source_for_reauthorization(
    fake, facebook, fb_thread, agent
):
    fake.fail("expired")
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "failed"

    delivery.refresh_from_db()
    facebook.refresh_from_db()
    assert delivery.last_error.startswith(
        "authentication failed: Meta refused the Page access token: "
        "Error validating access token: Session has expired"
    )
    assert facebook.needs_reauth is True
    assert TOKEN not in delivery.last_error and TOKEN not in facebook.last_error


def test_a_rate_limit_waits_as_long_as_meta_says(fake, messenger, agent):
    messenger_question(fake, messenger, hours_ago=1)
    fake.fail("rate", method="POST", code=80006, regain_minutes=7)
    delivery = reply(agent)

    outcome = delivery_send(delivery_id=delivery.pk)

    assert outcome.state == "queued" and outcome.retry_in >= 7 * 60
    assert "RateLimited: Meta rate limit: (#80001) There have been too many calls" in outcome.detail
    assert fake.conversations == {}
    assert delivery_send(delivery_id=delivery.pk).state == "sent"


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80001, 80014])
def test_rate_limit_codes_raise_rate_limited_with_retry_after(fake, facebook, fb_thread, code):
    fake.fail("rate", method="GET", code=code, regain_minutes=3)
    with FacebookConnector(facebook) as connector, pytest.raises(RateLimited) as limited:
        connector.graph.get(f"{fb_thread[0]}/comments")
    assert limited.value.retry_after == 180


def test_transient_errors_are_retryable_for_reads_and_unknown_for_writes(fake, facebook, fb_thread):
    top, _ = fb_thread
    with FacebookConnector(facebook) as connector:
        fake.fail("transient", method="GET")
        with pytest.raises(RetryableError) as read:
            connector.graph.get(f"{top}/comments")
        assert not isinstance(read.value, OutcomeUnknown)
        fake.fail("transient", method="POST")
        with pytest.raises(OutcomeUnknown, match="the post may exist"):
            connector.graph.post(f"{top}/comments", {"message": "x"})
        fake.fail("html502", method="POST")
        with pytest.raises(OutcomeUnknown, match="HTTP 502"):
            connector.graph.post(f"{top}/comments", {"message": "x"})
        fake.fail("html502", method="GET")
        with pytest.raises(RetryableError, match="502"):
            connector.graph.get(f"{top}/comments")
        fake.fail("malformed", method="GET")
        with pytest.raises(RetryableError, match="not JSON"):
            connector.graph.get(f"{top}/comments")


def test_appsecret_proof_is_sent_on_every_call_and_checked(fake, facebook, fb_thread, agent):
    fake.app_secret = APP_SECRET
    delivery = reply(agent)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    expected = hmac.new(APP_SECRET.encode(), TOKEN.encode(), hashlib.sha256).hexdigest()
    assert {r.param("appsecret_proof") for r in fake.requests} == {expected}
    assert {r.param("access_token") for r in fake.requests} == {TOKEN}

    with override_settings(WEBCARE={**settings.WEBCARE, "META_APP_SECRET": "wrong-secret"}):
        with FacebookConnector(facebook) as connector, pytest.raises(PermanentError) as refused:
            connector.graph.get(f"{fb_thread[0]}/comments")
    assert "Invalid appsecret_proof provided in the API argument [code 100" in str(refused.value)
    with override_settings(WEBCARE={**settings.WEBCARE, "META_APP_SECRET": ""}):
        with FacebookConnector(facebook) as connector, pytest.raises(PermanentError, match="appsecret_proof"):
            connector.graph.get(f"{fb_thread[0]}/comments")


def test_a_wrong_token_is_an_authentication_failure(fake, facebook, fb_thread):
    facebook.secrets = {"page_access_token": "EAAG-revoked"}
    with FacebookConnector(facebook) as connector, pytest.raises(AuthenticationFailed) as refused:
        connector.graph.get(f"{fb_thread[0]}/comments")
    assert str(refused.value) == (
        "Meta refused the Page access token: Invalid OAuth access token - "
        "Cannot parse access token [code 190, fbtrace_id AbCdEfGh123]"
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"secrets": {}}, "facebook source 'facebook-brand' has no page_access_token in its secrets"),
        ({"config": {"graph_url": "ftp://x"}}, "facebook source config: graph_url must be an http(s) URL"),
        ({"config": {"api_version": "23"}}, "facebook source config: api_version must look like 'v23.0'"),
        ({"config": {"timeout_seconds": -1}}, "facebook source config: timeout_seconds must be a number"),
    ],
)
def test_config_errors_are_permanent_with_a_precise_message(facebook, change, reason):
    for key, value in change.items():
        setattr(facebook, key, value)
    with pytest.raises(PermanentError) as refused:
        FacebookConnector(facebook).graph  # noqa: B018
    assert str(refused.value).startswith(reason)


def test_instagram_without_token_says_which_token(instagram):
    instagram.secrets = {}
    with pytest.raises(PermanentError, match="the token of the Page the Instagram account is linked to"):
        InstagramConnector(instagram).graph  # noqa: B018


def test_default_graph_url_and_version_come_from_settings(facebook):
    facebook.config = {}
    with FacebookConnector(facebook) as connector:
        assert connector.graph.base == "https://graph.facebook.com/v23.0"


# --- Through the webhook service ----------------------------------------------------------------


def test_a_meta_delivery_is_ingested_by_each_sources_part_once(facebook, messenger):
    from inbox.services.webhooks import webhook_delivery_process, webhook_delivery_receive

    body = delivery_body(
        "page",
        entry(PAGE_ID, changes=[feed_comment(f"{POST_ID}_1"), {"field": "ratings", "value": {}}]),
        entry(PAGE_ID, messaging=[messaging_event("m_1")]),
    )
    headers = {"X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
    MetaWebhookApp().verify(body, headers)
    stored = []
    for _ in range(2):  # Meta re-delivers
        delivery, _created = webhook_delivery_receive(
            source=None, platform="meta", body=body, headers=headers
        )
        assert webhook_delivery_process(delivery_id=delivery.pk) == "processed"
        stored.append(delivery)

    rows = sorted(Message.objects.values_list("source__platform", "external_id", "is_public"))
    assert rows == [("facebook", f"{POST_ID}_1", True), ("messenger", "m_1", False)]
    stored[0].refresh_from_db()
    assert f"page {PAGE_ID}: field 'ratings' is not ingested" in stored[0].error
