"""The X (API v2) connector against a local X on loopback (tests/connectors/fake_x.py)."""

from __future__ import annotations

import pytest

from inbox.connectors import registry
from inbox.connectors.base import (
    AuthenticationFailed,
    NotSupported,
    PermanentError,
    RateLimited,
    RetryableError,
)

# The registry loads the built-in connectors only while it is empty: load them before
# importing the X package registers it, or the simulated platform would go missing.
registry._registry()

from inbox.connectors.x import XConnector  # noqa: E402
from inbox.models import DeliveryAttempt, Message, OutboundDelivery, Ticket  # noqa: E402
from inbox.services.ingest import ingest_batch  # noqa: E402
from inbox.services.replies import delivery_send, reply_create  # noqa: E402
from tests.connectors.fake_x import BRAND_ID, TOKEN, FakeX, FakeXServer  # noqa: E402
from tests.factories import AgentProfileFactory, SourceFactory  # noqa: E402

pytestmark = pytest.mark.django_db

FIELDS = "created_at,conversation_id,in_reply_to_user_id,referenced_tweets,lang,author_id"


@pytest.fixture
def server():
    with FakeXServer() as running:
        yield running


@pytest.fixture
def fake(server) -> FakeX:
    fake = server.fake
    fake.add_user("2001", "janneke", "Janneke", followers=321, verified=False)
    fake.add_user("2002", "marco_r", "Marco 🇮🇹", followers=5, verified=True)
    return fake


@pytest.fixture
def x_source(server, default_queue):
    return SourceFactory(
        name="x-brand",
        platform="x",
        account_id=BRAND_ID,
        default_queue=default_queue,
        config={"api_base": server.url, "page_size": 5, "timeout_seconds": 5},
        secrets={"access_token": TOKEN},
    )


def connector(source, **config) -> XConnector:
    source.config = {**source.config, **config}
    return XConnector(source)


def mentions(fake: FakeX, count: int, author: str = "2001") -> list[str]:
    return [fake.tweet(author, f"@SkyBlueAir mention {n}")["id"] for n in range(count)]


def ids_newest_first(ids: list[str]) -> list[str]:
    return sorted(ids, key=int, reverse=True)


# --- Inbound ----------------------------------------------------------------------------


def test_registry_builds_the_x_connector(x_source):
    assert type(registry.get_connector(x_source)) is XConnector


def test_burst_of_several_pages_is_read_in_one_fetch_and_the_watermark_moves_last(fake, x_source):
    ids = mentions(fake, 12)

    result = connector(x_source).fetch(None)

    assert [m.external_id for m in result.messages] == ids_newest_first(ids)
    assert result.next_cursor == {"since_id": max(ids, key=int)}
    assert (result.has_more, result.rejected) == (False, [])
    calls = fake.requests_to("GET", "/mentions")
    assert [c.path for c in calls] == [f"/2/users/{BRAND_ID}/mentions"] * 3
    order = ids_newest_first(ids)
    assert [c.param("pagination_token") for c in calls] == [None, f"pt{order[4]}", f"pt{order[9]}"]
    assert {c.param("since_id") for c in calls} == {None}
    assert {
        (c.param("max_results"), c.param("tweet.fields"), c.param("expansions"), c.param("user.fields"))
        for c in calls
    } == {("5", FIELDS, "author_id", "username,name,verified,public_metrics")}
    assert calls[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_next_poll_asks_since_the_watermark_and_gets_only_new_mentions(fake, x_source):
    old = mentions(fake, 3)
    conn = connector(x_source)
    first = conn.fetch(None)
    new = mentions(fake, 2)

    second = conn.fetch(first.next_cursor)

    assert [m.external_id for m in second.messages] == ids_newest_first(new)
    assert fake.requests_to("GET", "/mentions")[-1].param("since_id") == max(old, key=int)
    assert second.next_cursor == {"since_id": max(new, key=int)}
    assert conn.fetch(second.next_cursor).messages == []
    assert conn.fetch(second.next_cursor).next_cursor == second.next_cursor


def test_watermark_compares_ids_as_numbers_not_text(fake, x_source):
    # "999" > "1000" as text; as tweet ids 1000 is newer.
    [newest] = mentions(fake, 1)
    assert connector(x_source).fetch({"since_id": "99999999999999999"}).next_cursor == {"since_id": newest}


def test_a_page_that_fails_midway_keeps_the_old_watermark_and_resumes_exactly(fake, x_source):
    before = mentions(fake, 2)
    conn = connector(x_source)
    watermark = conn.fetch(None).next_cursor
    burst = mentions(fake, 12)
    fake.fail("503", path_contains="/mentions", after=1)

    partial = conn.fetch(watermark)

    newest = max(burst, key=int)
    assert [m.external_id for m in partial.messages] == ids_newest_first(burst)[:5]
    assert partial.has_more is True
    order = ids_newest_first(burst)
    token = f"pt{order[4]}"
    assert partial.next_cursor == {
        "since_id": max(before, key=int),
        "pagination_token": token,
        "newest_id": newest,
    }
    later = mentions(fake, 1)  # arrives while the burst is half read

    rest = conn.fetch(partial.next_cursor)
    resumed = fake.requests_to("GET", "/mentions")[-2:]
    assert [(r.param("since_id"), r.param("pagination_token")) for r in resumed] == [
        (max(before, key=int), token),
        (max(before, key=int), f"pt{order[9]}"),
    ]
    assert [m.external_id for m in rest.messages] == ids_newest_first(burst)[5:]
    assert (rest.has_more, rest.next_cursor) == (False, {"since_id": newest})

    last = conn.fetch(rest.next_cursor)
    assert [m.external_id for m in last.messages] == later
    seen = [m.external_id for r in (partial, rest, last) for m in r.messages]
    assert sorted(seen, key=int) == burst + later  # none missed, none twice


def test_more_pages_than_max_pages_hands_over_a_batch_and_comes_back(fake, x_source):
    ids = mentions(fake, 12)
    conn = connector(x_source, max_pages=2)

    first = conn.fetch({"since_id": "1"})
    assert (len(first.messages), first.has_more) == (10, True)
    token = f"pt{ids_newest_first(ids)[9]}"
    assert first.next_cursor == {"since_id": "1", "pagination_token": token, "newest_id": max(ids, key=int)}
    second = conn.fetch(first.next_cursor)
    assert [m.external_id for m in second.messages] == ids_newest_first(ids)[10:]
    assert (second.has_more, second.next_cursor) == (False, {"since_id": max(ids, key=int)})


def test_an_expired_pagination_token_reads_the_burst_again_from_its_watermark(fake, x_source):
    ids = mentions(fake, 7)
    result = connector(x_source).fetch({"since_id": "1", "pagination_token": "expired", "newest_id": "2"})
    assert [m.external_id for m in result.messages] == ids_newest_first(ids)
    assert result.next_cursor == {"since_id": max(ids, key=int)}


def test_first_page_rate_limited_raises_with_the_reset_time(fake, x_source):
    mentions(fake, 1)
    fake.fail("429", path_contains="/mentions", reset_in=120)
    with pytest.raises(RateLimited) as caught:
        connector(x_source).fetch({"since_id": "1"})
    assert 115 <= caught.value.retry_after <= 120


def test_rate_limit_on_a_later_page_returns_what_was_read(fake, x_source):
    ids = mentions(fake, 8)
    fake.fail("429", path_contains="/mentions", after=1)
    result = connector(x_source).fetch({"since_id": "1"})
    assert [m.external_id for m in result.messages] == ids_newest_first(ids)[:5]
    assert result.has_more is True and result.next_cursor["since_id"] == "1"


@pytest.mark.parametrize("kind", ["500", "503"])
def test_server_error_is_retryable(fake, x_source, kind):
    fake.fail(kind, path_contains="/mentions")
    with pytest.raises(RetryableError, match=f"platform error: {kind}"):
        connector(x_source).fetch(None)


def test_a_slow_answer_times_out_as_retryable(fake, x_source):
    fake.fail("slow", path_contains="/mentions")
    with pytest.raises(RetryableError, match="timed out") as caught:
        connector(x_source, timeout_seconds=0.2).fetch(None)
    assert not isinstance(caught.value, RateLimited)


def test_invalid_token_is_an_authentication_failure(fake, x_source):
    x_source.secrets = {"access_token": "revoked-token"}
    with pytest.raises(AuthenticationFailed) as caught:
        connector(x_source).fetch(None)
    assert "revoked-token" not in str(caught.value)
    assert "401 Unauthorized" in str(caught.value)


def test_malformed_json_page_is_retryable_first_and_partial_later(fake, x_source):
    ids = mentions(fake, 7)
    fake.fail("malformed", path_contains="/mentions")
    with pytest.raises(RetryableError, match="not JSON"):
        connector(x_source).fetch({"since_id": "1"})
    fake.fail("malformed", path_contains="/mentions", after=1)
    result = connector(x_source).fetch({"since_id": "1"})
    assert [m.external_id for m in result.messages] == ids_newest_first(ids)[:5]
    assert result.has_more is True


def test_a_malformed_tweet_is_rejected_with_the_reason_and_the_page_goes_on(fake, x_source):
    good, bad, no_time = mentions(fake, 3)
    fake.corrupt[bad] = {"id": bad, "text": None, "author_id": "2001"}
    fake.corrupt[no_time] = {**fake.public(fake.tweets[no_time]), "created_at": "yesterday"}

    result = connector(x_source).fetch(None)

    assert [m.external_id for m in result.messages] == [good]
    assert [(r.external_id, r.reason) for r in result.rejected] == [
        (no_time, f"x tweet {no_time}: Invalid isoformat string: 'yesterday'"),
        (bad, f"x tweet {bad}: text must be a string, got None"),
    ]
    assert result.rejected[1].raw == {"id": bad, "text": None, "author_id": "2001"}
    assert result.next_cursor == {"since_id": no_time}
    stored = ingest_batch(source=x_source, messages=result.messages, rejected=result.rejected)
    assert stored.created == 1


def test_unicode_and_four_byte_emoji_survive_unchanged(fake, x_source):
    text = "@SkyBlueAir Koffer kaputt 🧳💔 👨‍👩‍👧 Ünïcödé 日本語 🇳🇱 𝒳 &amp; &lt;3"
    tweet = fake.tweet("2002", text, lang="de")

    [message] = connector(x_source).fetch(None).messages

    expected = "@SkyBlueAir Koffer kaputt 🧳💔 👨‍👩‍👧 Ünïcödé 日本語 🇳🇱 𝒳 & <3"
    assert message.text == expected
    ingest_batch(source=x_source, messages=[message])
    assert Message.objects.get(external_id=tweet["id"]).text == expected
    assert message.author.display_name == "Marco 🇮🇹"


def test_mentions_become_public_messages_with_author_reply_refs_and_language(fake, x_source):
    brand_post = fake.tweet(BRAND_ID, "Flights to Rome are back!", mentions_brand=False)
    question = fake.tweet("2001", "@SkyBlueAir wanneer vertrekt SB123?", reply_to=brand_post["id"], lang="nl")
    emoji_only = fake.tweet("2002", "@SkyBlueAir 👍", lang="und")
    self_mention = fake.tweet(BRAND_ID, "Thanks @SkyBlueAir team!")

    messages = {m.external_id: m for m in connector(x_source).fetch(None).messages}

    assert set(messages) == {question["id"], emoji_only["id"], self_mention["id"]}
    customer = messages[question["id"]]
    assert (customer.is_public, customer.in_reply_to_external_id, customer.conversation_id) == (
        True,
        brand_post["id"],
        "",
    )
    assert (
        customer.author.external_id,
        customer.author.handle,
        customer.author.display_name,
        customer.author.followers_count,
        customer.author.verified,
    ) == ("2001", "janneke", "Janneke", 321, False)
    assert (customer.language, customer.author_is_brand) == ("nl", False)
    assert customer.raw["conversation_id"] == brand_post["id"]
    assert customer.raw["author"]["username"] == "janneke"
    assert customer.created_at.isoformat() == question["created_at"].replace(".000Z", "+00:00")
    assert messages[emoji_only["id"]].language == ""
    assert messages[emoji_only["id"]].author.verified is True
    assert messages[self_mention["id"]].author_is_brand is True


def test_duplicate_across_pages_is_ingested_exactly_once(fake, x_source):
    ids = mentions(fake, 12)
    fake.duplicate_across_pages = True

    result = connector(x_source).fetch(None)
    assert [m.external_id for m in result.messages] == ids_newest_first(ids)

    first = ingest_batch(source=x_source, messages=result.messages)
    # The same items delivered again (a replayed page): nothing new.
    again = ingest_batch(source=x_source, messages=result.messages)
    assert (first.created, again.created, again.duplicates) == (12, 0, 12)
    assert Message.objects.filter(source=x_source).count() == 12
    assert Ticket.objects.count() == 12


# --- Config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"secrets": {}}, "x source secrets: access_token (OAuth 2.0 user token) is missing"),
        (
            {"account_id": "@SkyBlueAir"},
            "x source: account_id must be the brand's numeric X user id, got '@SkyBlueAir'",
        ),
        (
            {"config": {"api_base": "api.x.com"}},
            "x source config: api_base must be an http(s) URL, got 'api.x.com'",
        ),
        (
            {"config": {"page_size": 500}},
            "x source config: page_size must be an integer between 5 and 100, got 500",
        ),
        (
            {"config": {"timeout_seconds": 0}},
            "x source config: timeout_seconds must be a number above 0 and at most 120, got 0",
        ),
    ],
)
def test_config_errors_are_permanent_with_a_precise_message(x_source, change, reason):
    for field, value in change.items():
        setattr(x_source, field, value)
    with pytest.raises(PermanentError) as caught:
        XConnector(x_source).fetch(None)
    assert str(caught.value) == reason
    assert not isinstance(caught.value, AuthenticationFailed)


def test_default_api_base_is_x(x_source):
    x_source.config = {}
    assert XConnector(x_source).config.api_base == "https://api.x.com"


def test_a_malformed_cursor_is_permanent(x_source):
    with pytest.raises(PermanentError, match="x cursor is malformed"):
        connector(x_source).fetch({"since_id": "abc"})


# --- Outbound -----------------------------------------------------------------------------


@pytest.fixture
def agent(db):
    return AgentProfileFactory(user__username="anna").user


@pytest.fixture
def question(fake, x_source):
    """A customer's mention, ingested: its ticket is what the agent answers."""
    tweet = fake.tweet("2001", "@SkyBlueAir where is my bag? 🧳")
    ingest_batch(source=x_source, messages=connector(x_source).fetch(None).messages)
    return tweet


def set_timeout(source, seconds: float) -> None:
    source.config = {**source.config, "timeout_seconds": seconds}
    source.save(update_fields=["config"])


def reply(agent, text="Sorry! Could you DM us your file number? 🙏"):
    return reply_create(ticket=Ticket.objects.get(), author=agent, text=text)


def test_reply_lands_in_the_customers_thread(fake, x_source, question, agent):
    delivery = reply(agent)

    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    [post] = fake.requests_to("POST", "/2/tweets")
    assert post.body == {
        "text": "Sorry! Could you DM us your file number? 🙏",
        "reply": {"in_reply_to_tweet_id": question["id"]},
    }
    [tweet] = fake.brand_posts()
    assert outcome.state == "sent" and delivery.platform_id == tweet["id"]
    assert tweet["referenced_tweets"] == [{"type": "replied_to", "id": question["id"]}]
    assert tweet["conversation_id"] == question["conversation_id"]
    assert tweet["text"] == "@janneke Sorry! Could you DM us your file number? 🙏"
    assert Message.objects.get(pk=delivery.message_id).external_id == tweet["id"]


def test_send_twice_after_a_timeout_posts_once(fake, x_source, question, agent):
    fake.fail("post-then-slow", method="POST", path_contains="/2/tweets")
    set_timeout(x_source, 0.2)
    delivery = reply(agent, "We are on it & will DM you: https://example.com/claims/ABC123")

    first = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert first.state == "queued" and delivery.outcome_unknown is True
    set_timeout(x_source, 5)  # the lookup must not time out on a busy machine

    second = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    [tweet] = fake.brand_posts()
    assert second.state == "sent" and delivery.platform_id == tweet["id"]
    assert len(fake.requests_to("POST", "/2/tweets")) == 1
    [lookup] = fake.requests_to("GET", f"/2/users/{BRAND_ID}/tweets")
    assert lookup.param("since_id") == question["id"]
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == [
        DeliveryAttempt.Outcome.UNKNOWN,
        DeliveryAttempt.Outcome.FOUND,
    ]


def test_after_a_timeout_that_did_not_post_the_retry_posts_once(fake, x_source, question, agent):
    fake.fail("slow", method="POST", path_contains="/2/tweets")
    set_timeout(x_source, 0.2)
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "queued"
    assert fake.brand_posts() == []
    set_timeout(x_source, 5)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    assert len(fake.brand_posts()) == 1
    assert len(fake.requests_to("POST", "/2/tweets")) == 2


def test_a_refused_lookup_after_a_timeout_ends_failed_with_the_reason(fake, x_source, question, agent):
    fake.fail("post-then-slow", method="POST", path_contains="/2/tweets")
    set_timeout(x_source, 0.2)
    delivery = reply(agent)
    assert delivery_send(delivery_id=delivery.pk).state == "queued"
    set_timeout(x_source, 5)
    fake.token = "rotated"

    assert delivery_send(delivery_id=delivery.pk).state == "queued"
    assert delivery_send(delivery_id=delivery.pk, final_attempt=True).state == "failed"

    delivery.refresh_from_db()
    assert delivery.last_error == (
        "gave up after 1 attempts: RetryableError: x: could not look up an earlier post: "
        "credentials refused: 401 Unauthorized"
    )
    assert len(fake.brand_posts()) == 1 and len(fake.requests_to("POST", "/2/tweets")) == 1


def test_find_sent_ignores_other_replies_and_other_texts(fake, x_source, question, agent):
    delivery = reply(agent, "Hello there")
    other = fake.tweet("2001", "@SkyBlueAir another question")
    fake.tweet(BRAND_ID, "@janneke Hello there", reply_to=other["id"], mentions_brand=False)
    fake.tweet(BRAND_ID, "@janneke Hello again", reply_to=question["id"], mentions_brand=False)
    conn = XConnector(x_source)
    assert conn.find_sent(delivery) is None

    mine = fake.tweet(BRAND_ID, "@janneke Hello there", reply_to=question["id"], mentions_brand=False)
    assert conn.find_sent(delivery).platform_id == mine["id"]


def test_deleted_parent_fails_permanently_with_the_platforms_reason(fake, x_source, question, agent):
    fake.deleted.add(question["id"])
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "failed"

    delivery.refresh_from_db()
    reason = "403 Forbidden: You attempted to reply to a Tweet that is deleted or not visible to you."
    assert delivery.last_error == reason
    assert delivery.state == OutboundDelivery.State.FAILED
    assert Message.objects.get(pk=delivery.message_id).delivery_state == "failed"
    assert fake.brand_posts() == []


def test_conversation_closed_to_replies_keeps_the_detail(fake, x_source, question, agent):
    fake.reply_restricted.add(question["id"])
    with pytest.raises(PermanentError, match="Reply to this conversation is not allowed because") as caught:
        XConnector(x_source).send_reply(reply(agent))
    # A 403 about this post, not about the credentials: the source keeps working.
    assert not isinstance(caught.value, AuthenticationFailed)


def test_over_long_reply_is_refused_before_posting(fake, x_source, question, agent):
    delivery = reply(agent, "ok")
    delivery.message.text = "🙏" * 141  # 282 weighted characters
    with pytest.raises(PermanentError, match="reply is 282 weighted characters long; X allows 280"):
        XConnector(x_source).send_reply(delivery)
    assert fake.requests_to("POST", "/2/tweets") == []


def test_invalid_token_on_reply_marks_the_source_for_reauthorization(fake, x_source, question, agent):
    x_source.secrets = {"access_token": "revoked"}
    x_source.save(update_fields=["secrets"])
    delivery = reply(agent)
    assert delivery_send(delivery_id=delivery.pk).state == "failed"
    x_source.refresh_from_db()
    assert x_source.needs_reauth is True
    assert "revoked" not in x_source.last_error


def test_rate_limited_reply_waits_for_the_reset(fake, x_source, question, agent):
    fake.fail("429", method="POST", reset_in=300)
    delivery = reply(agent)
    outcome = delivery_send(delivery_id=delivery.pk)
    assert outcome.state == "queued" and outcome.retry_in >= 295
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    assert len(fake.brand_posts()) == 1


def test_an_invalid_request_keeps_the_parameter_x_names_before_the_generic_detail(fake, x_source):
    conn = connector(x_source)
    with pytest.raises(PermanentError) as caught:
        conn.http.json("GET", "/2/users/2001/mentions", params={"max_results": 3})
    assert str(caught.value) == (
        "400 Invalid Request: The `max_results` query parameter value [3] is not between 5 and 100; "
        "One or more parameters to your request was invalid."
    )
    assert caught.value.response.status_code == 400


# --- Profile and lifecycle ------------------------------------------------------------------


def test_x_has_no_profile_note_the_desk_can_set(fake, x_source):
    with pytest.raises(NotSupported, match="x has no profile note"):
        XConnector(x_source).update_profile_note("We answer within 12 minutes")
    assert fake.requests == []


def test_close_closes_the_http_client_and_can_be_called_twice(fake, x_source):
    mentions(fake, 1)
    with XConnector(x_source) as conn:
        assert len(conn.fetch(None).messages) == 1
    conn.close()
    with pytest.raises(RuntimeError, match="client has been closed"):
        conn.fetch(None)
    assert len(fake.requests_to("GET", "/mentions")) == 1


def test_close_of_an_unused_connector_builds_nothing(x_source):
    x_source.secrets = {}  # a client could not even be configured
    conn = XConnector(x_source)
    conn.close()
    assert "http" not in conn.__dict__


# --- Through the poller ---------------------------------------------------------------------


def test_poller_stores_each_page_and_resumes_a_burst_after_a_failure(fake, x_source, redis_client):
    from inbox.services.polling import source_poll

    burst = mentions(fake, 12)
    # Page 2 fails, and so does the poller's immediate try to go on from there.
    fake.fail("503", path_contains="/mentions", after=1)
    fake.fail("503", path_contains="/mentions")

    first = source_poll(source_id=x_source.pk)
    x_source.refresh_from_db()
    assert first.status == "retry"
    assert Message.objects.filter(source=x_source).count() == 5
    assert x_source.cursor == {
        "pagination_token": f"pt{ids_newest_first(burst)[4]}",
        "newest_id": max(burst, key=int),
    }

    second = source_poll(source_id=x_source.pk)
    x_source.refresh_from_db()
    assert second.status == "ok"
    assert (
        sorted(Message.objects.filter(source=x_source).values_list("external_id", flat=True), key=int)
        == burst
    )
    assert x_source.cursor == {"since_id": max(burst, key=int)}


def test_poller_marks_the_source_for_reauthorization_on_a_refused_token(fake, x_source, redis_client):
    from inbox.services.polling import source_poll

    x_source.secrets = {"access_token": "revoked-token"}
    x_source.save(update_fields=["secrets"])
    assert source_poll(source_id=x_source.pk).status == "reauth"
    x_source.refresh_from_db()
    assert x_source.needs_reauth is True and "revoked-token" not in x_source.last_error


def test_an_app_only_token_is_an_authentication_failure_not_a_refused_post(fake, x_source, question, agent):
    fake.fail("unsupported-authentication", method="POST")
    delivery = reply(agent)

    assert delivery_send(delivery_id=delivery.pk).state == "failed"

    x_source.refresh_from_db()
    assert x_source.needs_reauth is True
    delivery.refresh_from_db()
    assert delivery.last_error.startswith("authentication failed: credentials refused: 403 Unsupported Authentication")

