"""The Mastodon connector against a fake instance on loopback (tests/connectors/fake_mastodon.py)."""

from __future__ import annotations

import uuid

import pytest

from inbox.connectors.base import (
    AuthenticationFailed,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RetryableError,
)
from inbox.connectors.limits import replies_for
from inbox.connectors.mastodon import MastodonConnector
from inbox.connectors.mastodon.ids import id_key, is_newer, newest
from inbox.connectors.mastodon.text import comparable, html_to_text
from inbox.connectors.registry import get_connector
from inbox.models import DeliveryAttempt, Message, OutboundDelivery, Platform, Source, Ticket
from inbox.services.ingest import ingest_batch
from inbox.services.polling import source_poll
from inbox.services.replies import ReplyError, delivery_send, reply_create
from tests.connectors import fake_mastodon
from tests.connectors.fake_mastodon import (
    BRAND_ID,
    REPLY_NOT_FOUND,
    TOKEN,
    FakeMastodonServer,
    countable_length,
    render,
)
from tests.factories import AgentProfileFactory, SourceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def fake():
    with FakeMastodonServer() as server:
        yield server


@pytest.fixture
def mastodon(fake, default_queue):
    return SourceFactory(
        name="mastodon", platform=Platform.MASTODON, account_id=BRAND_ID, default_queue=default_queue,
        config={"instance_url": fake.url, "page_size": 20, "timeout_seconds": 2},
        secrets={"access_token": TOKEN},
    )


@pytest.fixture
def agent(db):
    return AgentProfileFactory(user__username="anna").user


def connector(source: Source, **config: object) -> MastodonConnector:
    source.config = {**source.config, **config}
    return MastodonConnector(source)


def drain(conn: MastodonConnector, cursor):
    """Fetch until the connector has nothing more, like the poller does."""
    results = []
    while True:
        result = conn.fetch(cursor)
        results.append(result)
        cursor = result.next_cursor
        if not result.has_more:
            return results


def ids_of(results) -> list[str]:
    return [m.external_id for r in results for m in r.messages]


# --- helpers -----------------------------------------------------------------------------


def test_status_ids_compare_by_length_then_lexically():
    assert is_newer("100000", "99999")  # as text "100000" < "99999"
    assert not is_newer("99999", "100000")
    assert is_newer("109", "108") and not is_newer("108", "108")
    assert is_newer("1", "")
    assert sorted(["100001", "99998", "100000", "99999"], key=id_key) == ["99998", "99999", "100000", "100001"]
    assert newest(["99998", "100002", "", "100001"]) == "100002"
    assert newest([]) == ""


def test_html_content_becomes_plain_text_with_line_breaks_and_full_link_urls():
    content = (
        '<p><span class="h-card"><a href="https://fake.example/@skyblueair" class="u-url mention">'
        '@<span>skyblueair</span></a></span> my bag &amp; coat are gone<br />flight SB12 '
        '<a href="https://fake.example/tags/lostbag" class="mention hashtag" rel="tag">#<span>lostbag</span></a></p>'
        '<p>see <a href="https://example.com/a/very/long/path/that/mastodon/cuts?x=1" rel="nofollow">'
        '<span class="invisible">https://</span><span class="ellipsis">example.com/a/very/long/path</span>'
        '<span class="invisible">/that/mastodon/cuts?x=1</span></a> &lt;3</p>'
        "<script>alert('x')</script>"
    )
    assert html_to_text(content) == (
        "@skyblueair my bag & coat are gone\nflight SB12 #lostbag\n\n"
        "see https://example.com/a/very/long/path/that/mastodon/cuts?x=1 <3"
    )
    assert html_to_text("") == "" and html_to_text("plain") == "plain"
    assert comparable("@a @b@x.org  Hello\n there") == "Hello there"


# --- config ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "secrets", "message"),
    [
        ({}, {"access_token": TOKEN}, "mastodon source config: instance_url is missing"),
        ({"instance_url": "mastodon.social"}, {"access_token": TOKEN},
         "mastodon source config: instance_url must be an http(s) URL"),
        ({"instance_url": "https://m.example"}, {}, "mastodon source secrets: access_token is missing or blank"),
        ({"instance_url": "https://m.example", "public_reply_visibility": "direct"}, {"access_token": TOKEN},
         "mastodon source config: public_reply_visibility must be \"public\" or \"unlisted\", got 'direct'"),
        ({"instance_url": "https://m.example", "page_size": 200}, {"access_token": TOKEN},
         "mastodon source config: page_size must be between 1 and 80, got 200"),
    ],
)
def test_config_errors_are_permanent_with_a_precise_message(mastodon, config, secrets, message):
    mastodon.config, mastodon.secrets = config, secrets
    with pytest.raises(PermanentError) as caught:
        MastodonConnector(mastodon).fetch(None)
    assert str(caught.value).startswith(message)
    assert TOKEN not in str(caught.value)


def test_registry_builds_the_mastodon_connector(mastodon):
    assert isinstance(get_connector(mastodon), MastodonConnector)


# --- fetch -------------------------------------------------------------------------------


def test_first_poll_reads_the_newest_page_and_sets_the_watermark(fake, mastodon):
    made = [fake.mention(text=f"question {n}") for n in range(25)]
    result = connector(mastodon).fetch(None)

    # Newest page only, newest first as Mastodon answers; history is not imported.
    assert ids_of([result]) == [n["status"]["id"] for n in made[5:]][::-1]
    assert result.next_cursor == {"min_id": made[-1]["id"]} and result.has_more is False
    request = fake.calls("GET", "/api/v1/notifications")[0]
    assert request.query == {"types[]": ["mention"], "include_filtered": ["true"], "limit": ["20"]}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"


def test_first_poll_of_an_account_without_mentions_starts_from_the_beginning(fake, mastodon):
    conn = connector(mastodon)
    assert conn.fetch(None).next_cursor == {"min_id": ""}
    first = fake.mention(text="hello")
    result = conn.fetch({"min_id": ""})
    assert ids_of([result]) == [first["status"]["id"]]


def test_a_burst_of_several_pages_is_read_without_a_gap(fake, mastodon):
    start = fake.mention(text="already seen")
    burst = [fake.mention(text=f"burst {n}") for n in range(95)]  # ids cross from 5 to 6 digits

    result = connector(mastodon).fetch({"min_id": start["id"]})

    got = ids_of([result])
    assert sorted(got, key=id_key) == [n["status"]["id"] for n in burst]
    assert len(set(got)) == 95
    assert result.next_cursor == {"min_id": burst[-1]["id"]} and result.has_more is False
    min_ids = [r.query.get("min_id", [""])[0] for r in fake.calls("GET", "/api/v1/notifications")]
    # 5 pages of 20, then the empty page that ends the burst; each page starts after the last.
    assert len(min_ids) == 6 and min_ids[0] == start["id"] and min_ids[-1] == burst[-1]["id"]
    assert len(str(burst[0]["id"])) == 5 and len(str(burst[-1]["id"])) == 6


def test_a_page_boundary_during_a_poll_resumes_exactly_there(fake, mastodon):
    start = fake.mention(text="seen")
    first_wave = [fake.mention(text=f"wave one {n}") for n in range(50)]
    conn = connector(mastodon, max_pages=2)

    first = conn.fetch({"min_id": start["id"]})
    assert first.has_more is True and len(first.messages) == 40
    assert first.next_cursor == {"min_id": first_wave[39]["id"]}

    second_wave = [fake.mention(text=f"wave two {n}") for n in range(7)]  # arrives between polls
    rest = drain(conn, first.next_cursor)
    got = ids_of([first, *rest])
    expected = [n["status"]["id"] for n in first_wave + second_wave]
    assert sorted(got, key=id_key) == expected and len(got) == len(set(got))
    assert rest[-1].next_cursor == {"min_id": second_wave[-1]["id"]}


def test_duplicate_delivery_across_pages_is_ingested_exactly_once(fake, mastodon):
    start = fake.mention(text="seen")
    made = [fake.mention(text=f"bag {n}") for n in range(30)]
    fake.duplicate_boundary = True  # every page repeats the item it starts after
    conn = connector(mastodon, max_pages=1)

    results = drain(conn, {"min_id": start["id"]})
    got = ids_of(results)
    assert made[19]["status"]["id"] in ids_of(results[1:])  # the boundary item came again
    for _ in range(2):
        for result in results:
            ingest_batch(source=mastodon, messages=result.messages, rejected=result.rejected)

    expected = {n["status"]["id"] for n in made} | {start["status"]["id"]}
    assert set(got) == expected
    assert Message.objects.filter(source=mastodon).count() == len(expected)
    assert Ticket.objects.count() == len(expected)  # one customer each


def test_mentions_are_normalised_with_author_reply_and_language(fake, mastodon):
    customer = fake.account("marit@other.social", display_name="Marit", followers=321)
    brand_post = fake.status(fake.brand, "We are on it")
    note = fake.mention(customer, "@skyblueair still nothing?", in_reply_to=brand_post["id"], language="nl")

    message = connector(mastodon).fetch(None).messages[0]
    assert message.external_id == note["status"]["id"]
    assert (message.author.external_id, message.author.handle, message.author.display_name,
            message.author.followers_count) == (customer["id"], "marit@other.social", "Marit", 321)
    assert message.text == "@skyblueair still nothing?"
    assert message.in_reply_to_external_id == brand_post["id"]
    assert (message.is_public, message.conversation_id, message.author_is_brand) == (True, "", False)
    assert message.language == "nl" and message.raw["status"]["id"] == note["status"]["id"]


def test_unicode_and_four_byte_emoji_survive_unchanged(fake, mastodon):
    text = "@skyblueair Mijn koffer 🧳 is weg 👩‍👩‍👧 — ünïcødé 𝔘𝔫𝔦 עברית 🇳🇱 &<>"
    fake.mention(text=text)
    message = connector(mastodon).fetch(None).messages[0]
    assert message.text == text
    ingest_batch(source=mastodon, messages=[message])
    assert Message.objects.get(source=mastodon).text == text


def test_content_warning_and_media_are_part_of_the_text(fake, mastodon):
    note = fake.mention(text="@skyblueair look at this", spoiler_text="damaged bag")
    note["status"]["media_attachments"] = [{"id": "5", "type": "image", "url": "https://files.example/bag.jpg"}]
    message = connector(mastodon).fetch(None).messages[0]
    assert message.text == "CW: damaged bag\n\n@skyblueair look at this\nhttps://files.example/bag.jpg"


def test_direct_messages_are_private_and_a_dm_thread_stays_one_ticket(fake, mastodon):
    customer = fake.account("jan")
    first = fake.mention(customer, "@skyblueair my booking ABC123", visibility="direct")
    brand_reply = fake.status(fake.brand, "@jan thanks, checking", visibility="direct",
                              in_reply_to=first["status"]["id"])
    follow_up = fake.mention(customer, "@skyblueair any news?", visibility="direct",
                             in_reply_to=brand_reply["id"])

    messages = connector(mastodon).fetch(None).messages
    root = first["status"]["id"]
    assert [(m.external_id, m.is_public, m.conversation_id) for m in messages] == [
        (follow_up["status"]["id"], False, root), (root, False, root)]
    # The follow-up's root came from its thread.
    assert fake.calls("GET", f"/api/v1/statuses/{follow_up['status']['id']}/context")
    ingest_batch(source=mastodon, messages=messages)
    ticket = Ticket.objects.get()
    assert ticket.is_private is True and ticket.messages.count() == 2


def test_the_brands_own_posts_are_flagged(fake, mastodon):
    fake.notify(fake.status(fake.brand, "@skyblueair note to self"))
    fake.mention(text="hi")
    messages = connector(mastodon).fetch(None).messages
    assert [m.author_is_brand for m in messages] == [False, True]


def test_without_a_stored_account_id_the_brand_is_asked_from_the_instance(fake, mastodon):
    mastodon.account_id = ""
    fake.notify(fake.status(fake.brand, "@skyblueair note to self"))
    assert connector(mastodon).fetch(None).messages[0].author_is_brand is True
    assert len(fake.calls("GET", "/api/v1/accounts/verify_credentials")) == 1


def test_malformed_items_are_rejected_with_the_reason_and_the_page_goes_on(fake, mastodon):
    good = fake.mention(text="fine")
    fake.add_raw_notification({"id": "abc", "type": "mention"})
    fake.add_raw_notification("not an object")
    broken_time = fake.mention(text="bad time")
    broken_time["status"]["created_at"] = "yesterday"
    broken_visibility = fake.mention(text="bad visibility")
    broken_visibility["status"]["visibility"] = "friends"
    fake.add_raw_notification({"id": "def", "type": "follow", "account": fake.brand})
    last = fake.mention(text="also fine")

    result = connector(mastodon).fetch(None)

    assert ids_of([result]) == [last["status"]["id"], good["status"]["id"]]
    assert [r.reason for r in result.rejected] == [
        f"status {broken_visibility['status']['id']}: visibility 'friends' is not one of public, unlisted, "
        "private, direct",
        f"status {broken_time['status']['id']}: created_at 'yesterday' is not an ISO 8601 time with a zone",
        "notification is not an object but str",
        "mention notification abc has no status object",
    ]
    assert result.next_cursor == {"min_id": last["id"]}
    ingest_batch(source=mastodon, messages=result.messages, rejected=result.rejected)
    assert mastodon.dead_letters.count() == 4
    assert Message.objects.filter(source=mastodon).count() == 2


def test_malformed_json_page_is_retryable(fake, mastodon):
    fake.fail("malformed", path="/api/v1/notifications")
    with pytest.raises(RetryableError, match="answer is not JSON"):
        connector(mastodon).fetch({"min_id": "5"})


def test_429_raises_rate_limited_with_the_iso_reset_time(fake, mastodon):
    fake.fail("429", path="/api/v1/notifications")
    with pytest.raises(RateLimited) as caught:
        connector(mastodon).fetch({"min_id": "5"})
    assert 28 <= caught.value.retry_after <= 30


def test_no_requests_left_stops_paging_and_the_next_fetch_waits_for_the_reset(fake, mastodon):
    start = fake.mention(text="seen")
    made = [fake.mention(text=f"n {n}") for n in range(30)]
    fake.rate_limit_remaining = 0
    conn = connector(mastodon)

    first = conn.fetch({"min_id": start["id"]})
    assert first.has_more is True and len(first.messages) == 20
    assert first.next_cursor == {"min_id": made[19]["id"]}
    with pytest.raises(RateLimited) as caught:
        conn.fetch(first.next_cursor)
    assert 28 <= caught.value.retry_after <= 30
    assert len(fake.calls("GET", "/api/v1/notifications")) == 1  # no request was spent on it


def test_5xx_is_retryable_and_not_a_rate_limit(fake, mastodon):
    fake.fail("503", path="/api/v1/notifications")
    with pytest.raises(RetryableError) as caught:
        connector(mastodon).fetch({"min_id": "5"})
    assert not isinstance(caught.value, RateLimited)
    assert "503 We're sorry" in str(caught.value)


def test_an_error_after_the_first_page_keeps_what_was_read(fake, mastodon):
    start = fake.mention(text="seen")
    made = [fake.mention(text=f"n {n}") for n in range(30)]
    fake.fail("500", path="/api/v1/notifications", skip=1)  # the second page fails
    conn = connector(mastodon)

    result = conn.fetch({"min_id": start["id"]})
    assert len(result.messages) == 20 and result.has_more is True
    assert result.next_cursor == {"min_id": made[19]["id"]}
    rest = drain(conn, result.next_cursor)
    assert sorted(ids_of([result, *rest]), key=id_key) == [n["status"]["id"] for n in made]


def test_a_slow_answer_times_out_as_retryable(fake, mastodon):
    fake.slow_seconds = 1.5
    fake.fail("slow", path="/api/v1/notifications")
    with pytest.raises(RetryableError, match="timed out"):
        connector(mastodon, timeout_seconds=0.3).fetch({"min_id": "5"})


def test_an_invalid_token_is_authentication_failed(fake, mastodon):
    mastodon.secrets = {"access_token": "revoked"}
    with pytest.raises(AuthenticationFailed, match="401 The access token is invalid"):
        connector(mastodon).fetch(None)


def test_poller_ingests_a_burst_and_marks_a_refused_token_for_reauthorization(fake, mastodon, redis_client):
    mastodon.cursor = {"min_id": fake.mention(text="seen")["id"]}
    mastodon.save(update_fields=["cursor"])
    made = [fake.mention(text=f"burst {n}") for n in range(45)]

    outcome = source_poll(source_id=mastodon.pk)
    assert outcome.status == "ok" and outcome.ingest.created == 45
    mastodon.refresh_from_db()
    assert mastodon.cursor == {"min_id": made[-1]["id"]}

    fake.token = "rotated"
    outcome = source_poll(source_id=mastodon.pk)
    mastodon.refresh_from_db()
    assert outcome.status == "reauth" and mastodon.needs_reauth is True
    assert TOKEN not in mastodon.last_error


# --- replies -----------------------------------------------------------------------------


def ticket_for(fake, source, *, visibility="public", text="@skyblueair where is my bag?", acct="marit"):
    customer = fake.account(acct)
    note = fake.mention(customer, text, visibility=visibility)
    result = connector(source).fetch(None)
    ingest_batch(source=source, messages=result.messages)
    return note["status"], Ticket.objects.get(messages__external_id=note["status"]["id"])


@pytest.mark.parametrize(
    ("customer_visibility", "configured", "expected"),
    [
        ("public", "public", "public"),
        ("public", "unlisted", "unlisted"),
        ("unlisted", "public", "unlisted"),
        ("private", "public", "private"),
        ("direct", "public", "direct"),
    ],
)
def test_reply_lands_in_the_thread_with_the_customers_visibility(
    fake, mastodon, agent, redis_client, customer_visibility, configured, expected
):
    mastodon.config = {**mastodon.config, "public_reply_visibility": configured}
    mastodon.save(update_fields=["config"])
    status, ticket = ticket_for(fake, mastodon, visibility=customer_visibility)
    delivery = reply_create(ticket=ticket, author=agent, text="Sorry! Could you DM us your file number? 🧳")

    assert delivery_send(delivery_id=delivery.pk).state == "sent"

    [post] = fake.brand_posts()
    assert post["in_reply_to_id"] == status["id"] and post["visibility"] == expected
    [request] = fake.calls("POST", "/api/v1/statuses")
    assert request.body["status"] == "@marit Sorry! Could you DM us your file number? 🧳"
    assert request.headers["Idempotency-Key"] == str(delivery.idempotency_key)
    delivery.refresh_from_db()
    assert delivery.platform_id == post["id"]
    assert Message.objects.get(pk=delivery.message_id).external_id == post["id"]


def test_a_reply_that_already_starts_with_the_mention_is_not_mentioned_twice(fake, mastodon, agent, redis_client):
    _, ticket = ticket_for(fake, mastodon, acct="jan@other.social")
    delivery = reply_create(ticket=ticket, author=agent, text="@jan@other.social on it!")
    delivery_send(delivery_id=delivery.pk)
    assert fake.calls("POST", "/api/v1/statuses")[0].body["status"] == "@jan@other.social on it!"


def test_a_reply_starting_with_a_longer_handle_still_mentions_the_customer(fake, mastodon, agent, redis_client):
    _, ticket = ticket_for(fake, mastodon, acct="jan")
    delivery = reply_create(ticket=ticket, author=agent, text="@janssen is our colleague")
    delivery_send(delivery_id=delivery.pk)
    assert fake.calls("POST", "/api/v1/statuses")[0].body["status"] == "@jan @janssen is our colleague"


def test_the_same_idempotency_key_posts_once(fake, mastodon, agent, redis_client):
    _, ticket = ticket_for(fake, mastodon)
    delivery = reply_create(ticket=ticket, author=agent, text="We are on it")
    conn = connector(mastodon)
    first = conn.send_reply(delivery)
    second = conn.send_reply(delivery)
    assert first.platform_id == second.platform_id and len(fake.brand_posts()) == 1


def test_send_twice_after_a_timeout_posts_once(fake, mastodon, agent, redis_client):
    mastodon.config = {**mastodon.config, "timeout_seconds": 0.3}
    mastodon.save(update_fields=["config"])
    _, ticket = ticket_for(fake, mastodon)
    fake.slow_seconds = 1.5
    fake.fail("post-then-slow", path="/api/v1/statuses", method="POST")
    delivery = reply_create(ticket=ticket, author=agent, text="We are on it, see https://example.com/status/SB12")

    first = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert first.state == "queued" and delivery.outcome_unknown is True
    assert "OutcomeUnknown" in delivery.last_error

    second = delivery_send(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    [post] = fake.brand_posts()
    assert second.state == "sent" and delivery.platform_id == post["id"]
    assert list(delivery.attempt_log.values_list("outcome", flat=True)) == [
        DeliveryAttempt.Outcome.UNKNOWN, DeliveryAttempt.Outcome.FOUND]
    assert len(fake.calls("POST", "/api/v1/statuses")) == 1  # found in the thread, not posted again


def test_find_sent_matches_only_the_brands_reply_with_the_same_text(fake, mastodon, agent, redis_client):
    status, ticket = ticket_for(fake, mastodon)
    delivery = reply_create(ticket=ticket, author=agent, text="We are on it")
    conn = connector(mastodon)
    assert conn.find_sent(delivery) is None
    other = fake.account("bystander")
    fake.status(other, "@marit We are on it", in_reply_to=status["id"])  # not the brand
    fake.status(fake.brand, "@marit Something else", in_reply_to=status["id"])  # other text
    assert conn.find_sent(delivery) is None
    ours = fake.status(fake.brand, "@marit We are on it", in_reply_to=status["id"])
    assert conn.find_sent(delivery).platform_id == ours["id"]


def test_find_sent_after_the_parent_was_deleted_leaves_it_to_send_reply(fake, mastodon, agent, redis_client):
    status, ticket = ticket_for(fake, mastodon)
    delivery = reply_create(ticket=ticket, author=agent, text="We are on it")
    del fake.statuses[status["id"]]
    assert connector(mastodon).find_sent(delivery) is None


def test_a_deleted_parent_fails_the_delivery_with_the_platforms_reason(fake, mastodon, agent, redis_client):
    status, ticket = ticket_for(fake, mastodon)
    delivery = reply_create(ticket=ticket, author=agent, text="We are on it")
    del fake.statuses[status["id"]]

    with pytest.raises(PermanentError, match=REPLY_NOT_FOUND):
        connector(mastodon).send_reply(delivery)
    outcome = delivery_send(delivery_id=delivery.pk)

    delivery.refresh_from_db()
    assert outcome.state == "failed" and delivery.state == OutboundDelivery.State.FAILED
    assert delivery.last_error == f"404 {REPLY_NOT_FOUND}"
    assert Message.objects.get(pk=delivery.message_id).delivery_state == Message.Delivery.FAILED
    assert fake.brand_posts() == []


def test_the_desk_counts_the_mention_the_connector_adds(fake, mastodon, agent, redis_client):
    _, ticket = ticket_for(fake, mastodon, acct="a" * 30)
    # "@aaa…a " (32) goes in front: 468 typed characters fill 500, 469 would not.
    with pytest.raises(ReplyError, match="501"):
        reply_create(ticket=ticket, author=agent, text="x" * 469)
    delivery = reply_create(ticket=ticket, author=agent, text="x" * 468)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    assert countable_length(fake.calls("POST", "/api/v1/statuses")[0].body["status"]) == 500


def test_a_validation_error_is_visible_on_the_delivery(fake, mastodon, agent, redis_client, monkeypatch):
    # An instance with a lower limit than the 500 the desk assumes refuses what the desk let through.
    monkeypatch.setattr(fake_mastodon, "MAX_CHARS", 400)
    _, ticket = ticket_for(fake, mastodon, acct="a" * 30)
    delivery = reply_create(ticket=ticket, author=agent, text="x" * 450)
    assert delivery_send(delivery_id=delivery.pk).state == "failed"
    delivery.refresh_from_db()
    assert delivery.last_error == "422 Validation failed: Text character limit of 400 exceeded"


def test_a_500_character_reply_with_a_long_link_is_taken_and_the_desk_counts_it_alike(
    fake, mastodon, agent, redis_client
):
    _, ticket = ticket_for(fake, mastodon)
    link = "https://skyblue.example/help/baggage/claims?" + "ref=SB12&" * 15
    head = "@marit Your claim: "
    text = f"{head}{'x' * (500 - len(head) - 1 - 23)} {link}"
    assert len(text) > 600
    # Mastodon (the fake) and the desk's composer both count the link as 23.
    assert countable_length(text) == 500 == replies_for("mastodon").public.length(text)

    delivery = reply_create(ticket=ticket, author=agent, text=text)
    assert delivery_send(delivery_id=delivery.pk).state == "sent"
    [post] = fake.brand_posts()
    assert fake.calls("POST", "/api/v1/statuses")[0].body["status"] == text

    longer = f"x{text}"
    assert countable_length(longer) == 501 == replies_for("mastodon").public.length(longer)
    with pytest.raises(ReplyError):
        reply_create(ticket=ticket, author=agent, text=longer)
    refused = (422, {"error": "Validation failed: Text character limit of 500 exceeded"})
    assert fake.post_status({"status": longer}, "") == refused
    assert fake.brand_posts() == [post]


def test_the_fake_counts_a_remote_mention_as_its_user_part_and_graphemes_as_one(fake):
    remote = "@jan@other.social " + "x" * (500 - len("@jan "))
    assert countable_length(remote) == 500
    assert fake.post_status({"status": remote}, "")[0] == 200
    assert fake.post_status({"status": remote + "x"}, "")[0] == 422
    # A family emoji is one character to Mastodon; a content warning counts too.
    assert fake.post_status({"status": "👨‍👩‍👧" * 500}, "")[0] == 200
    assert fake.post_status({"status": "x" * 499, "spoiler_text": "cw"}, "")[0] == 422


def test_reply_send_errors_are_typed(fake, mastodon, agent, redis_client):
    _, ticket = ticket_for(fake, mastodon)
    delivery = reply_create(ticket=ticket, author=agent, text="We are on it")
    conn = connector(mastodon)
    fake.fail("429", path="/api/v1/statuses")
    with pytest.raises(RateLimited) as caught:
        conn.send_reply(delivery)
    assert 28 <= caught.value.retry_after <= 30
    # The 429 said no requests are left: this connector does not try again before the reset.
    with pytest.raises(RateLimited, match="no requests left"):
        conn.send_reply(delivery)
    assert len(fake.calls("POST", "/api/v1/statuses")) == 1
    fake.fail("500", path="/api/v1/statuses")
    with pytest.raises(RetryableError):
        connector(mastodon).send_reply(delivery)
    fake.fail("malformed", path="/api/v1/statuses")
    with pytest.raises(OutcomeUnknown):
        connector(mastodon).send_reply(delivery)
    fake.token = "rotated"
    with pytest.raises(AuthenticationFailed):
        connector(mastodon).send_reply(delivery)
    assert fake.brand_posts() == []
    assert uuid.UUID(fake.calls("POST", "/api/v1/statuses")[0].headers["Idempotency-Key"])


# --- profile note ------------------------------------------------------------------------


def test_the_profile_note_lands_and_nothing_else_on_the_profile_changes(fake, mastodon):
    before = fake.credentials()
    note = "We answer within 12 minutes, 8:00–22:00 🛫 Help: https://skyblue.example/help"
    with connector(mastodon) as conn:
        conn.update_profile_note(note)

    after = fake.credentials()
    assert after["source"]["note"] == note and after["note"] == render(note, fake)
    assert {**after, "note": None, "source": None} == {**before, "note": None, "source": None}
    assert {**after["source"], "note": None} == {**before["source"], "note": None}
    [request] = fake.calls("PATCH", "/api/v1/accounts/update_credentials")
    assert request.body == {"note": note}  # nothing else is sent, so nothing else is touched


def test_a_profile_note_over_500_is_refused_with_mastodons_reason(fake, mastodon):
    fits = f"{'x' * (500 - 24)} https://skyblue.example/help/{'a' * 100}"  # the link counts 23
    conn = connector(mastodon)
    conn.update_profile_note(fits)
    assert fake.brand_source["note"] == fits

    with pytest.raises(PermanentError) as caught:
        conn.update_profile_note(f"x{fits}")
    assert str(caught.value) == "422 Validation failed: Note character limit of 500 exceeded"
    assert not isinstance(caught.value, (AuthenticationFailed, RetryableError))
    assert fake.brand_source["note"] == fits


def test_a_profile_note_with_a_refused_token_is_authentication_failed(fake, mastodon):
    mastodon.secrets = {"access_token": "revoked"}
    with pytest.raises(AuthenticationFailed, match="401 The access token is invalid"):
        connector(mastodon).update_profile_note("We answer within 12 minutes")
    assert fake.brand_source["note"] == "Flying since 1999"


# --- lifecycle ---------------------------------------------------------------------------


def test_close_closes_the_http_client_and_can_be_called_twice(fake, mastodon):
    fake.mention(text="hi")
    with connector(mastodon) as conn:
        assert len(conn.fetch(None).messages) == 1
    conn.close()
    with pytest.raises(RuntimeError, match="client has been closed"):
        conn.fetch(None)
    assert len(fake.calls("GET", "/api/v1/notifications")) == 1


def test_close_of_an_unused_connector_builds_nothing(mastodon):
    mastodon.config = {}  # no instance_url: a client could not even be configured
    conn = MastodonConnector(mastodon)
    conn.close()
    assert "http" not in conn.__dict__


# --- hashtag tracking --------------------------------------------------------------------


def test_tracked_hashtags_are_read_beside_the_mentions_without_duplicates(fake, mastodon):
    bystander = fake.account("bystander")
    old_tag_post = fake.status(bystander, "queue at the gate #SkyBlue")
    old_mention = fake.mention(text="hi")
    conn = connector(mastodon, hashtags=["skyblue"])

    first = conn.fetch(None)
    assert ids_of([first]) == [old_mention["status"]["id"], old_tag_post["id"]]
    assert first.next_cursor == {"min_id": old_mention["id"], "tags": {"skyblue": old_tag_post["id"]}}

    tagged = [fake.status(bystander, f"delay {n} #skyblue") for n in range(25)]
    both = fake.mention(text="lost my bag #skyblue")  # a mention with the tag: once
    fake.status(fake.brand, "Our apologies for the delays #skyblue")
    fake.status(bystander, "psst #skyblue", visibility="unlisted")  # not on the tag timeline
    second = drain(conn, first.next_cursor)

    got = ids_of(second)
    assert len(got) == len(set(got)) == 27
    assert set(got) == {s["id"] for s in tagged} | {both["status"]["id"], fake.brand_posts()[0]["id"]}
    assert [m.author_is_brand for r in second for m in r.messages].count(True) == 1
    tag_calls = fake.calls("GET", "/api/v1/timelines/tag/skyblue")
    assert tag_calls[1].query["min_id"] == [old_tag_post["id"]] and tag_calls[1].query["limit"] == ["20"]
    assert second[-1].next_cursor["tags"] == {"skyblue": fake.brand_posts()[0]["id"]}


def test_an_error_on_the_hashtag_timeline_keeps_the_mentions_read(fake, mastodon):
    cursor = {"min_id": fake.mention(text="seen")["id"], "tags": {"skyblue": ""}}
    new = fake.mention(text="new")
    fake.fail("503", path="/api/v1/timelines/tag/")
    result = connector(mastodon, hashtags=["skyblue"]).fetch(cursor)
    assert ids_of([result]) == [new["status"]["id"]] and result.has_more is True
    assert result.next_cursor == {"min_id": new["id"], "tags": {"skyblue": ""}}


def test_hashtags_config_is_checked(mastodon):
    with pytest.raises(PermanentError, match=r"hashtags must be a list of hashtags without \"#\""):
        connector(mastodon, hashtags=["#skyblue"]).fetch(None)


def test_a_malformed_cursor_is_a_permanent_error(mastodon):
    with pytest.raises(PermanentError, match="mastodon cursor is malformed"):
        connector(mastodon).fetch({"since": 5})
