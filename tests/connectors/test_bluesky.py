"""The Bluesky connector against a local PDS that speaks XRPC (tests/connectors/fake_bluesky.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

# Built-ins first: registering Bluesky alone would make the registry skip loading them.
from inbox.connectors import simulated  # noqa: F401
from inbox.connectors.base import (
    AuthenticationFailed,
    FetchResult,
    InboundMessage,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RetryableError,
)
from inbox.connectors.bluesky import BlueskyConnector
from inbox.connectors.bluesky import connector as bluesky_connector
from inbox.connectors.bluesky.tid import is_tid
from inbox.connectors.bluesky.xrpc import forget_sessions
from inbox.connectors.registry import get_connector
from inbox.models import Message, OutboundDelivery, Source, Ticket
from inbox.services.ingest import ingest_batch
from inbox.services.polling import source_poll
from inbox.services.replies import delivery_send, reply_create
from tests.connectors.fake_bluesky import APP_PASSWORD, BRAND_DID, BRAND_HANDLE, PROFILE, FakeBluesky
from tests.factories import AgentProfileFactory, SourceFactory

pytestmark = pytest.mark.django_db

LIST = "app.bsky.notification.listNotifications"
CREATE = "com.atproto.repo.createRecord"
GET_RECORD = "com.atproto.repo.getRecord"


@pytest.fixture
def fake():
    forget_sessions()
    server = FakeBluesky().start()
    yield server
    server.stop()
    forget_sessions()


@pytest.fixture
def bsky(fake, default_queue) -> Source:
    return SourceFactory(
        name="bluesky",
        platform="bluesky",
        account_id=BRAND_DID,
        default_queue=default_queue,
        config={"service_url": fake.url, "page_size": 3, "timeout_seconds": 2},
        secrets={"identifier": BRAND_HANDLE, "app_password": APP_PASSWORD},
    )


@pytest.fixture
def agent(db):
    return AgentProfileFactory(user__username="anna").user


def connector(source: Source, **config: object) -> BlueskyConnector:
    source.config = {**source.config, **config}
    return BlueskyConnector(source)


def drain(conn: BlueskyConnector, cursor: object) -> tuple[list[InboundMessage], list[FetchResult]]:
    """Fetch until the connector says nothing more, like the poller does."""
    messages: list[InboundMessage] = []
    results: list[FetchResult] = []
    while True:
        result = conn.fetch(cursor)
        results.append(result)
        messages.extend(result.messages)
        cursor = result.next_cursor
        if not result.has_more:
            return messages, results


def watermark_after(conn: BlueskyConnector, fake: FakeBluesky) -> dict:
    """A cursor that has seen everything on the fake so far."""
    result = conn.fetch(None)
    assert not result.has_more
    fake.requests.clear()
    return result.next_cursor


# --- Inbound --------------------------------------------------------------------------


def test_first_poll_reads_the_newest_page_and_normalises_posts(bsky, fake):
    brand_post = fake.brand_post("Our summer schedule is out")
    reply = fake.customer_post(
        "Is there a flight to Lisbon?", reason="reply", reply_to=brand_post["uri"], langs=["en"]
    )
    mention = fake.customer_post(
        "@brand.bsky.social hallo",
        langs=["nl"],
        handle="reiziger.bsky.social",
        author="did:plc:customer00000000000002",
    )

    result = connector(bsky).fetch(None)

    assert [m.external_id for m in result.messages] == [mention["uri"], reply["uri"]]
    second = result.messages[1]
    assert (second.author.external_id, second.author.handle, second.author.display_name) == (
        "did:plc:customer00000000000001",
        "traveller.bsky.social",
        "Traveller",
    )
    assert second.text == "Is there a flight to Lisbon?" and second.language == "en"
    assert second.in_reply_to_external_id == brand_post["uri"]
    assert second.is_public is True and second.conversation_id == "" and second.author_is_brand is False
    assert second.created_at == datetime(2026, 11, 2, 9, 2, tzinfo=UTC)
    assert second.raw["cid"] == reply["cid"]
    assert second.raw["root"] == second.raw["parent"] == {"uri": brand_post["uri"], "cid": brand_post["cid"]}
    assert result.messages[0].raw["root"] == {"uri": mention["uri"], "cid": mention["cid"]}
    assert result.messages[0].language == "nl"
    assert result.next_cursor == {
        "watermark": {"indexed_at": "2026-11-02T09:03:00+00:00", "uri": mention["uri"]},
        "page": None,
        "newest": None,
    }
    (request,) = fake.calls(LIST)
    assert request.query == {"limit": ["3"], "reasons": ["mention", "reply", "quote"]}
    assert request.headers["Authorization"].startswith("Bearer access-")
    assert fake.sessions_created == 1


def test_a_burst_of_several_pages_is_read_completely_before_the_watermark_moves(bsky, fake):
    fake.customer_post("old one")
    conn = connector(bsky)
    cursor = watermark_after(conn, fake)
    burst = [fake.customer_post(f"burst {n}") for n in range(8)]

    result = conn.fetch(cursor)

    assert [m.text for m in result.messages] == [f"burst {n}" for n in reversed(range(8))]
    assert result.has_more is False
    assert result.next_cursor["watermark"]["uri"] == burst[-1]["uri"]
    # Three pages of three; the third stops at the watermark ("old one").
    pages = fake.calls(LIST)
    assert len(pages) == 3
    assert "cursor" not in pages[0].query and all("cursor" in p.query for p in pages[1:])
    assert conn.fetch(result.next_cursor).messages == []


def test_page_boundary_during_a_poll_resumes_there_without_gaps_or_duplicates(bsky, fake):
    fake.customer_post("seen before")
    conn = connector(bsky, page_size=2, max_pages=2)
    cursor = watermark_after(conn, fake)
    burst = [fake.customer_post(f"burst {n}") for n in range(7)]

    first = conn.fetch(cursor)
    assert [m.text for m in first.messages] == ["burst 6", "burst 5", "burst 4", "burst 3"]
    assert first.has_more is True
    # Until the burst is read completely the watermark stays where it was.
    assert first.next_cursor["watermark"] == cursor["watermark"]
    assert first.next_cursor["newest"]["uri"] == burst[-1]["uri"] and first.next_cursor["page"]

    late = fake.customer_post("arrived while paging")
    second = conn.fetch(first.next_cursor)
    assert [m.text for m in second.messages] == ["burst 2", "burst 1", "burst 0"]
    assert second.has_more is False
    assert second.next_cursor["watermark"]["uri"] == burst[-1]["uri"]

    third = conn.fetch(second.next_cursor)
    assert [m.external_id for m in third.messages] == [late["uri"]]


def test_duplicates_across_pages_are_ingested_exactly_once(bsky, fake):
    fake.duplicate_page_items = 1  # the PDS repeats the last item of each page on the next
    fake.customer_post("seen before")
    conn = connector(bsky)
    cursor = watermark_after(conn, fake)
    for n in range(7):
        fake.customer_post(f"dup {n}", author=f"did:plc:customer{n:017d}", handle=f"c{n}.bsky.social")

    messages, _ = drain(conn, cursor)
    assert sorted(m.text for m in messages) == [f"dup {n}" for n in range(7)]
    assert len({m.external_id for m in messages}) == 7

    first = ingest_batch(source=bsky, messages=messages)
    again = ingest_batch(source=bsky, messages=messages)
    assert (first.created, again.created, again.duplicates) == (7, 0, 7)
    assert Message.objects.filter(source=bsky).count() == 7
    assert Ticket.objects.count() == 7


def test_only_mentions_replies_and_quotes_are_messages(bsky, fake):
    fake.customer_post("liked", reason="like")
    fake.customer_post("quoted you", reason="quote")
    result = connector(bsky).fetch(None)
    # The fake honours reasons[]; a PDS that ignores it still gives only these three kinds.
    assert [m.text for m in result.messages] == ["quoted you"]


def test_brand_posts_are_marked_as_the_brand(bsky, fake):
    fake.customer_post("thread note by us", author=BRAND_DID, handle=BRAND_HANDLE)
    (message,) = connector(bsky).fetch(None).messages
    assert message.author_is_brand is True


def test_unicode_and_four_byte_emoji_survive_unchanged(bsky, fake):
    text = "Où est ma valise? 🧳👩🏽‍✈️ 𝄞 日本語 🇳🇱"
    fake.customer_post(text)
    (message,) = connector(bsky).fetch(None).messages
    assert message.text == text
    ingest_batch(source=bsky, messages=[message])
    assert Message.objects.get(source=bsky).text == text


def test_a_malformed_item_is_rejected_and_the_rest_of_the_page_goes_on(bsky, fake):
    fake.customer_post("fine before")
    broken = fake.customer_post("", record={"$type": "app.bsky.feed.post", "text": "no date"})
    fake.customer_post("fine after")

    result = connector(bsky).fetch(None)

    assert [m.text for m in result.messages] == ["fine after", "fine before"]
    (rejected,) = result.rejected
    assert rejected.external_id == broken["uri"]
    assert rejected.reason.startswith(f"mention {broken['uri']}: record createdAt is unreadable")
    assert rejected.raw["uri"] == broken["uri"]


def test_a_malformed_json_page_is_retryable_and_the_cursor_stays(bsky, fake):
    fake.inject(LIST, raw=b"<html>502 Bad Gateway</html>")
    with pytest.raises(RetryableError, match="not JSON"):
        connector(bsky).fetch(None)


def test_rate_limit_gives_the_reset_time(bsky, fake):
    reset = int(time.time()) + 120
    fake.inject(
        LIST,
        status=429,
        body={"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        headers={"RateLimit-Reset": str(reset), "RateLimit-Remaining": "0"},
    )
    with pytest.raises(RateLimited) as caught:
        connector(bsky).fetch(None)
    assert 115 <= caught.value.retry_after <= 120


def test_server_error_is_retryable(bsky, fake):
    fake.inject(LIST, status=502, body={"error": "UpstreamFailure", "message": "Upstream Failure"})
    with pytest.raises(RetryableError, match="502 UpstreamFailure"):
        connector(bsky).fetch(None)


def test_timeout_is_retryable(bsky, fake):
    fake.inject(LIST, delay=1.0)
    with pytest.raises(RetryableError, match="timed out") as caught:
        connector(bsky, timeout_seconds=0.2).fetch(None)
    assert not isinstance(caught.value, OutcomeUnknown)


def test_wrong_app_password_is_an_authentication_failure_without_the_secret(bsky, fake):
    bsky.secrets = {"identifier": BRAND_HANDLE, "app_password": "wrong-pass-word-1234"}
    with pytest.raises(AuthenticationFailed) as caught:
        connector(bsky).fetch(None)
    assert "401 AuthenticationRequired: Invalid identifier or password" in str(caught.value)
    assert "wrong-pass" not in str(caught.value)


def test_refused_credentials_mark_the_source_for_reauthorization(bsky, fake, redis_client):
    bsky.secrets = {"identifier": BRAND_HANDLE, "app_password": "wrong-pass-word-1234"}
    bsky.save(update_fields=["secrets"])
    outcome = source_poll(source_id=bsky.pk)
    bsky.refresh_from_db()
    assert outcome.status == "reauth" and bsky.needs_reauth is True
    assert "Invalid identifier or password" in bsky.last_error


def test_expired_access_token_is_refreshed_and_the_call_repeated(bsky, fake):
    conn = connector(bsky)
    conn.fetch(None)
    fake.expire_access_tokens()
    fake.customer_post("after expiry")

    assert [m.text for m in connector(bsky).fetch(None).messages] == ["after expiry"]
    assert len(fake.calls("com.atproto.server.refreshSession")) == 1
    assert fake.sessions_created == 1  # the session lives on across connector instances


def test_refused_refresh_logs_in_again(bsky, fake):
    connector(bsky).fetch(None)
    fake.expire_access_tokens()
    fake.refresh_refused = True
    connector(bsky).fetch(None)
    assert fake.sessions_created == 2


def test_an_invalid_token_with_refused_login_is_an_authentication_failure(bsky, fake):
    conn = connector(bsky)
    conn.fetch(None)
    fake.access_tokens.clear()  # revoked: 401 InvalidToken
    fake.refresh_refused = True
    fake.app_password = "a-new-app-password"  # the brand revoked ours
    with pytest.raises(AuthenticationFailed, match="Invalid identifier or password"):
        conn.fetch(None)
    assert [c.nsid for c in fake.requests[-3:]] == [
        LIST,
        "com.atproto.server.refreshSession",
        "com.atproto.server.createSession",
    ]


@pytest.mark.parametrize(
    ("config", "secrets", "reason"),
    [
        ({}, {"identifier": BRAND_HANDLE, "app_password": APP_PASSWORD}, "service_url (the PDS base URL"),
        (
            {"service_url": "bsky.social"},
            {"identifier": BRAND_HANDLE, "app_password": APP_PASSWORD},
            "service_url must start with https://",
        ),
        ({"service_url": "https://bsky.social"}, {"app_password": APP_PASSWORD}, "identifier"),
        ({"service_url": "https://bsky.social"}, {"identifier": BRAND_HANDLE}, "app_password is missing"),
        (
            {"service_url": "https://bsky.social", "page_size": 500},
            {"identifier": BRAND_HANDLE, "app_password": APP_PASSWORD},
            "page_size must be an integer between 1",
        ),
    ],
)
def test_config_errors_are_permanent_and_precise(bsky, config, secrets, reason):
    bsky.config, bsky.secrets = config, secrets
    with pytest.raises(PermanentError, match=reason.replace("(", r"\(")) as caught:
        BlueskyConnector(bsky).fetch(None)
    assert APP_PASSWORD not in str(caught.value)


# --- Outbound -------------------------------------------------------------------------


def _ticket_for(bsky: Source, fake: FakeBluesky, conn: BlueskyConnector | None = None) -> Ticket:
    messages = (conn or connector(bsky)).fetch(None).messages
    ingest_batch(source=bsky, messages=messages)
    return Ticket.objects.get()


def test_reply_lands_in_the_customers_thread_with_parent_and_root(bsky, fake, agent, redis_client):
    brand_post = fake.brand_post("Our summer schedule is out")
    first = fake.customer_post("Lisbon?", reason="reply", reply_to=brand_post["uri"], langs=["pt"])
    ticket = _ticket_for(bsky, fake)
    delivery = reply_create(ticket=ticket, author=agent, text="Sim! Every Friday ✈️")

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.state == "sent" and delivery.state == "sent"
    (call,) = fake.calls(CREATE)
    body = call.body
    assert body["repo"] == BRAND_DID and body["collection"] == "app.bsky.feed.post"
    assert is_tid(body["rkey"])
    record = body["record"]
    assert record["reply"] == {
        "parent": {"uri": first["uri"], "cid": first["cid"]},
        "root": {"uri": brand_post["uri"], "cid": brand_post["cid"]},
    }
    assert record["text"] == "Sim! Every Friday ✈️" and record["langs"] == ["pt"]
    assert record["createdAt"].endswith("Z")
    assert delivery.platform_id == f"at://{BRAND_DID}/app.bsky.feed.post/{body['rkey']}"
    assert fake.repo[body["rkey"]]["value"] == record


def test_reply_to_a_top_level_mention_uses_it_as_root(bsky, fake, agent):
    mention = fake.customer_post("@brand.bsky.social my bag is lost")
    ticket = _ticket_for(bsky, fake)
    delivery = reply_create(ticket=ticket, author=agent, text="Sorry! DM us your file number?")

    result = connector(bsky).send_reply(delivery)

    ref = {"uri": mention["uri"], "cid": mention["cid"]}
    assert fake.calls(CREATE)[0].body["record"]["reply"] == {"parent": ref, "root": ref}
    assert fake.calls(CREATE)[0].body["record"]["langs"] == ["en"]
    assert result.raw["uri"] == result.platform_id


def test_deleted_parent_is_a_permanent_error_with_the_reason(bsky, fake, agent, redis_client):
    mention = fake.customer_post("@brand.bsky.social help")
    ticket = _ticket_for(bsky, fake)
    fake.deleted.add(mention["uri"])
    delivery = reply_create(ticket=ticket, author=agent, text="Hi!")

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.state == "failed" and delivery.state == OutboundDelivery.State.FAILED
    assert delivery.last_error == f"the post being answered was deleted or is not visible: {mention['uri']}"
    assert fake.calls(CREATE) == []


def test_platform_refusal_is_visible_on_the_delivery(bsky, fake, agent, redis_client):
    fake.customer_post("@brand.bsky.social help")
    ticket = _ticket_for(bsky, fake)
    fake.inject(
        CREATE, status=400, body={"error": "InvalidRequest", "message": "Record/langs must be BCP-47"}
    )
    delivery = reply_create(ticket=ticket, author=agent, text="Hi!")

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.state == "failed"
    assert delivery.last_error == "400 InvalidRequest: Record/langs must be BCP-47"
    assert Message.objects.get(pk=delivery.message_id).delivery_state == Message.Delivery.FAILED


def test_send_twice_after_a_timeout_posts_once(bsky, fake, agent, redis_client):
    fake.customer_post("@brand.bsky.social where is my bag")
    ticket = _ticket_for(bsky, fake)
    bsky.config = {**bsky.config, "timeout_seconds": 0.3}
    bsky.save(update_fields=["config"])
    fake.inject(CREATE, after=True, delay=1.0)  # the post lands, the answer comes too late
    delivery = reply_create(ticket=ticket, author=agent, text="We are on it 🔎")

    first = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert first.state == "queued" and delivery.outcome_unknown is True

    second = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert second.state == "sent" and second.detail == "found an earlier post"
    assert len(fake.calls(CREATE)) == 1 and len(fake.repo) == 1
    (post,) = fake.repo.values()
    assert delivery.platform_id == post["uri"] and post["value"]["text"] == "We are on it 🔎"
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == ["unknown", "found"]


@pytest.mark.parametrize("duplicate_status", [500, 400])
def test_posting_the_same_delivery_again_is_recognised_as_already_posted(bsky, fake, agent, duplicate_status):
    fake.duplicate_rkey_status = duplicate_status
    fake.customer_post("@brand.bsky.social hi")
    ticket = _ticket_for(bsky, fake)
    delivery = reply_create(ticket=ticket, author=agent, text="Hello!")
    conn = connector(bsky)

    one = conn.send_reply(delivery)
    two = conn.send_reply(delivery)

    assert one.platform_id == two.platform_id
    assert len(fake.repo) == 1 and len(fake.calls(CREATE)) == 2


def test_find_sent_is_none_before_posting_and_the_post_after(bsky, fake, agent):
    fake.customer_post("@brand.bsky.social hi")
    ticket = _ticket_for(bsky, fake)
    delivery = reply_create(ticket=ticket, author=agent, text="Hello!")
    conn = connector(bsky)

    assert conn.find_sent(delivery) is None
    sent = conn.send_reply(delivery)
    found = conn.find_sent(delivery)
    assert found is not None and found.platform_id == sent.platform_id
    assert found.raw["record"]["text"] == "Hello!"


def test_over_300_graphemes_is_refused_before_posting(bsky, fake, agent):
    fake.customer_post("@brand.bsky.social hi")
    ticket = _ticket_for(bsky, fake)
    delivery = reply_create(ticket=ticket, author=agent, text="ok")
    delivery.message.text = "👩🏽‍✈️" * 301
    with pytest.raises(PermanentError, match="301 graphemes long; Bluesky allows 300"):
        connector(bsky).send_reply(delivery)
    delivery.message.text = "👩🏽‍✈️" * 300
    connector(bsky).send_reply(delivery)
    assert len(fake.repo) == 1


def test_expired_token_on_a_reply_is_refreshed_and_posts_once(bsky, fake, agent):
    fake.customer_post("@brand.bsky.social hi")
    ticket = _ticket_for(bsky, fake)
    delivery = reply_create(ticket=ticket, author=agent, text="Hello!")
    fake.expire_access_tokens()

    connector(bsky).send_reply(delivery)

    assert len(fake.repo) == 1


def test_private_replies_are_refused_clearly(bsky, fake, agent):
    fake.customer_post("@brand.bsky.social hi")
    ticket = _ticket_for(bsky, fake)
    delivery = reply_create(ticket=ticket, author=agent, text="Hello!")
    delivery.message.is_public = False
    with pytest.raises(PermanentError, match="private replies"):
        connector(bsky).send_reply(delivery)


def test_the_registry_builds_the_bluesky_connector(bsky):
    assert type(get_connector(bsky)) is BlueskyConnector


def test_a_page_failing_mid_burst_keeps_what_was_read_and_resumes_at_that_page(bsky, fake):
    fake.customer_post("seen before")
    conn = connector(bsky, page_size=2)
    cursor = watermark_after(conn, fake)
    burst = [fake.customer_post(f"burst {n}") for n in range(7)]
    fake.inject(LIST)  # page 1 answers normally
    fake.inject(
        LIST,
        status=429,
        body={"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        headers={"RateLimit-Reset": str(int(time.time()) + 60)},
    )

    first = conn.fetch(cursor)
    assert [m.text for m in first.messages] == ["burst 6", "burst 5"]
    assert first.has_more is True and first.next_cursor["watermark"] == cursor["watermark"]

    rest, _ = drain(conn, first.next_cursor)
    assert [m.text for m in rest] == ["burst 4", "burst 3", "burst 2", "burst 1", "burst 0"]
    assert fake.calls(LIST)[2].query["cursor"] == fake.calls(LIST)[1].query["cursor"]
    assert conn.fetch(drain(conn, first.next_cursor)[1][-1].next_cursor).messages == []
    assert burst[-1]["uri"] == first.next_cursor["newest"]["uri"]


def test_a_record_key_taken_by_another_post_is_never_mistaken_for_this_reply(bsky, fake, agent):
    fake.customer_post("@brand.bsky.social hi")
    ticket = _ticket_for(bsky, fake)
    delivery = reply_create(ticket=ticket, author=agent, text="Hello!")
    conn = connector(bsky)
    conn.send_reply(delivery)
    delivery.message.text = "A different reply"

    assert conn.find_sent(delivery) is None
    with pytest.raises(PermanentError, match="already holds another post of the brand"):
        conn.send_reply(delivery)
    assert len(fake.repo) == 1


# --- Keyword tracking -------------------------------------------------------------------


def test_brand_keywords_are_tracked_with_search_down_to_their_own_watermark(bsky, fake):
    fake.customer_post("old news about AcmeAir", notify=False)
    fake.customer_post("@brand.bsky.social first mention")
    conn = connector(bsky, keywords=["acmeair"])
    cursor = watermark_after(conn, fake)
    assert set(cursor["search"]) == {"acmeair"}

    hits = [fake.customer_post(f"AcmeAir lost my bag {n}", notify=False) for n in range(5)]
    mention = fake.customer_post("@brand.bsky.social AcmeAir again")  # both a mention and a hit
    fake.customer_post("nothing to do with us", notify=False)

    messages, results = drain(conn, cursor)

    texts = [m.text for m in messages]
    assert texts == ["@brand.bsky.social AcmeAir again"] + [
        f"AcmeAir lost my bag {n}" for n in range(4, -1, -1)
    ]
    assert messages[1].raw["reason"] == "search acmeair" and messages[1].raw["root"]["uri"] == hits[4]["uri"]
    final = results[-1].next_cursor
    assert final["watermark"]["uri"] == mention["uri"]
    assert final["search"]["acmeair"]["watermark"]["uri"] == mention["uri"]
    searches = fake.calls("app.bsky.feed.searchPosts")
    assert searches[0].query["q"] == ["acmeair"] and searches[0].query["sort"] == ["latest"]
    assert searches[0].query["since"] == [
        cursor["search"]["acmeair"]["watermark"]["indexed_at"].replace("+00:00", ".000Z")
    ]
    assert conn.fetch(final).messages == []


def test_a_keyword_burst_waits_until_the_notifications_are_read(bsky, fake):
    fake.customer_post("@brand.bsky.social seen")
    conn = connector(bsky, keywords=["acmeair"], page_size=2, max_pages=1)
    cursor = watermark_after(conn, fake)
    fake.customer_post("AcmeAir search hit", notify=False)
    for n in range(3):
        fake.customer_post(f"@brand.bsky.social mention {n}")

    first = conn.fetch(cursor)
    assert [m.text for m in first.messages] == [
        "@brand.bsky.social mention 2",
        "@brand.bsky.social mention 1",
    ]
    assert first.has_more is True and fake.calls("app.bsky.feed.searchPosts") == []
    assert first.next_cursor["search"] == cursor["search"]
    rest, _ = drain(conn, first.next_cursor)
    assert [m.text for m in rest] == ["@brand.bsky.social mention 0", "AcmeAir search hit"]


def test_keywords_must_be_a_list_of_words(bsky):
    bsky.config = {**bsky.config, "keywords": "acmeair"}
    with pytest.raises(PermanentError, match="keywords must be a list of non-empty strings"):
        BlueskyConnector(bsky).fetch(None)


# --- Profile note ------------------------------------------------------------------------

PUT = "com.atproto.repo.putRecord"
AVATAR = {"$type": "blob", "ref": {"$link": "bafkreiavatar"}, "mimeType": "image/jpeg", "size": 12345}


def test_the_profile_note_replaces_only_the_description(bsky, fake):
    old = fake.set_profile(
        {"displayName": "SkyBlue Air", "description": "Flying since 1999", "avatar": AVATAR}
    )
    with connector(bsky) as conn:
        conn.update_profile_note("We answer within 12 minutes 🛫")

    assert fake.profile["value"] == {
        "$type": PROFILE,
        "displayName": "SkyBlue Air",
        "description": "We answer within 12 minutes 🛫",
        "avatar": AVATAR,
    }
    [put] = fake.calls(PUT)
    assert (put.body["repo"], put.body["collection"], put.body["rkey"]) == (BRAND_DID, PROFILE, "self")
    assert put.body["swapRecord"] == old["cid"]


def test_the_profile_record_is_created_when_the_account_has_none(bsky, fake):
    connector(bsky).update_profile_note("We answer within 12 minutes")
    assert fake.profile["value"] == {"$type": PROFILE, "description": "We answer within 12 minutes"}
    [put] = fake.calls(PUT)
    assert "swapRecord" in put.body and put.body["swapRecord"] is None  # "there must be none yet"


def test_an_edit_made_between_reading_and_writing_the_profile_is_kept(bsky, fake):
    fake.set_profile({"displayName": "SkyBlue Air", "description": "Flying since 1999"})
    fake.edit_profile_after_read = {"displayName": "SkyBlue Airlines", "avatar": AVATAR}

    connector(bsky).update_profile_note("We answer within 12 minutes")

    assert fake.profile["value"] == {
        "$type": PROFILE,
        "displayName": "SkyBlue Airlines",
        "avatar": AVATAR,
        "description": "We answer within 12 minutes",
    }
    profile_calls = [r.nsid for r in fake.requests if r.nsid in (GET_RECORD, PUT)]
    assert profile_calls == [GET_RECORD, PUT, GET_RECORD, PUT]


def test_a_profile_that_keeps_changing_is_left_for_a_retry(bsky, fake):
    fake.set_profile({"description": "Flying since 1999"})
    for _ in range(3):
        fake.inject(PUT, status=400, body={"error": "InvalidSwap", "message": "Record was at bafyreiother"})
    with pytest.raises(RetryableError, match="profile changed while the note was written, 3 times"):
        connector(bsky).update_profile_note("We answer within 12 minutes")
    assert fake.profile["value"]["description"] == "Flying since 1999"


def test_a_profile_note_over_256_graphemes_is_refused_before_writing(bsky, fake):
    conn = connector(bsky)
    conn.update_profile_note("👍🏽" * 256)  # 512 code points, 256 graphemes: fits
    with pytest.raises(PermanentError, match="257 graphemes .* Bluesky allows 256 graphemes") as caught:
        conn.update_profile_note("👍🏽" * 257)
    assert not isinstance(caught.value, (AuthenticationFailed, RetryableError))
    assert len(fake.calls(PUT)) == 1 and fake.profile["value"]["description"] == "👍🏽" * 256


def test_the_pds_refusing_a_profile_note_keeps_its_reason(bsky, fake, monkeypatch):
    # A PDS with a stricter rule than ours: its own reason reaches the agent.
    monkeypatch.setattr(bluesky_connector, "MAX_DESCRIPTION_GRAPHEMES", 1000)
    with pytest.raises(PermanentError) as caught:
        connector(bsky).update_profile_note("x" * 257)
    assert str(caught.value) == (
        "400 InvalidRequest: Invalid app.bsky.actor.profile record: "
        "Record/description must not be longer than 256 graphemes"
    )
    assert not isinstance(caught.value, AuthenticationFailed) and fake.profile is None


def test_a_profile_note_with_a_revoked_app_password_is_an_authentication_failure(bsky, fake):
    fake.app_password = "a-new-app-password"
    with pytest.raises(AuthenticationFailed, match="Invalid identifier or password") as caught:
        connector(bsky).update_profile_note("We answer within 12 minutes")
    assert caught.value.response.status_code == 401
    assert fake.calls(PUT) == [] and fake.profile is None


# --- Lifecycle ---------------------------------------------------------------------------


def test_close_closes_the_xrpc_client_and_can_be_called_twice(bsky, fake):
    fake.customer_post("hello")
    with connector(bsky) as conn:
        assert len(conn.fetch(None).messages) == 1
    conn.close()
    with pytest.raises(RuntimeError, match="client has been closed"):
        conn.fetch(None)
    assert len(fake.calls(LIST)) == 1


def test_close_of_an_unused_connector_builds_nothing(bsky):
    bsky.config = {}  # no service_url: a client could not even be configured
    conn = BlueskyConnector(bsky)
    conn.close()
    assert "xrpc" not in conn.__dict__
