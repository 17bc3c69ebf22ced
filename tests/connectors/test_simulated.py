"""The simulated demo connector: a deterministic stream, a fake platform in Redis, failure injection."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from inbox.connectors.base import (
    FetchResult,
    InboundMessage,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
)
from inbox.connectors.registry import get_connector
from inbox.connectors.simulated import SimulatedConnector, generator
from inbox.connectors.simulated.generator import StreamSpec, answer_to_brand_reply, scheduled_at
from inbox.connectors.simulated.platform import SimulatedPlatform
from inbox.models import Message, OutboundDelivery, Source, Ticket
from inbox.services.ingest import ingest_batch
from tests.factories import inbound

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SPEC = StreamSpec(seed=7, rate_per_minute=60)


class Clock:
    """An injectable "now" that tests move by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def cursor_at(n: int = 0, *, reply_index: int = 0, answered: list[int] | None = None) -> dict:
    return {"n": n, "started_at": T0.isoformat(), "reply_index": reply_index, "answered": answered or []}


def connector(source: Source, clock: Clock, **config: object) -> SimulatedConnector:
    source.config = {**source.config, **config}
    return SimulatedConnector(source, clock=clock)


def drain(conn: SimulatedConnector, cursor: dict | None) -> tuple[list[InboundMessage], list[FetchResult]]:
    """Poll until the connector has nothing more due, like the poller does."""
    messages: list[InboundMessage] = []
    results: list[FetchResult] = []
    while True:
        result = conn.fetch(cursor)
        results.append(result)
        messages.extend(result.messages)
        cursor = result.next_cursor
        if not result.has_more:
            return messages, results


def outbound(
    source: Source,
    *,
    text: str = "Sorry to hear that! Could you DM us your booking code?",
    parent: Message | None = None,
    attempts: int = 1,
    key: uuid.UUID | None = None,
) -> OutboundDelivery:
    """An outbox row as the reply service leaves it, unsaved: the connector only reads it."""
    message = Message(
        source=source,
        direction=Message.Direction.OUTBOUND,
        is_public=parent.is_public if parent is not None else True,
        text=text,
        in_reply_to=parent,
        in_reply_to_external_id=parent.external_id if parent is not None else "",
        ticket=parent.ticket if parent is not None else None,
        created_at=T0,
    )
    delivery = OutboundDelivery(message=message, source=source, attempts=attempts)
    if key is not None:
        delivery.idempotency_key = key
    return delivery


# --- The stream -------------------------------------------------------------------


def test_registry_builds_the_simulated_connector(source):
    assert type(get_connector(source)) is SimulatedConnector


def test_first_poll_starts_the_clock_and_emits_nothing_yet(source, redis_client):
    result = connector(source, Clock(T0)).fetch(None)

    assert result.messages == []
    assert result.next_cursor == cursor_at(0)
    assert result.has_more is False
    assert json.loads(json.dumps(result.next_cursor)) == result.next_cursor
    source.refresh_from_db()
    assert source.cursor is None  # the poller stores it, never the connector


def test_only_messages_that_are_due_are_emitted(source, redis_client):
    clock = Clock(T0 + timedelta(seconds=10))
    conn = connector(source, clock)

    first = conn.fetch(cursor_at(0))
    assert [m.external_id for m in first.messages] == [f"sim-7-{n}" for n in range(10)]
    assert all(m.created_at <= clock.now for m in first.messages)
    assert first.next_cursor == cursor_at(10)
    assert first.has_more is False

    assert conn.fetch(first.next_cursor).messages == []
    due = scheduled_at(SPEC, T0, 10)
    assert due > clock.now
    clock.now = due - timedelta(microseconds=1)
    assert conn.fetch(first.next_cursor).messages == []
    clock.now = due
    assert [m.external_id for m in conn.fetch(first.next_cursor).messages] == ["sim-7-10"]


def test_has_more_while_more_than_max_batch_is_due(source, redis_client):
    conn = connector(source, Clock(T0 + timedelta(seconds=10)), max_batch=4)

    messages, results = drain(conn, cursor_at(0))

    assert [(len(r.messages), r.has_more) for r in results] == [(4, True), (4, True), (2, False)]
    assert [r.next_cursor["n"] for r in results] == [4, 8, 10]
    assert [m.external_id for m in messages] == [f"sim-7-{n}" for n in range(10)]


def test_same_cursor_fetched_twice_gives_the_same_batch(source, redis_client):
    conn = connector(source, Clock(T0 + timedelta(seconds=30)), max_batch=12)
    one, two = conn.fetch(cursor_at(5)), conn.fetch(cursor_at(5))
    assert one.messages == two.messages
    assert one.next_cursor == two.next_cursor == cursor_at(17)


def test_stream_is_the_same_however_it_is_cut_into_polls(source, redis_client):
    clock = Clock(T0 + timedelta(seconds=150))
    streams = []
    for batch in (1, 7, 50, 500):
        messages, _ = drain(connector(source, clock, max_batch=batch), cursor_at(0))
        streams.append(messages)

    assert len(streams[0]) == 150
    assert streams[1] == streams[0]
    assert streams[2] == streams[0]
    assert streams[3] == streams[0]


def test_message_n_does_not_depend_on_what_was_generated_before():
    forwards = generator.stream(SPEC, T0, 0, 80)
    generator._draw.cache_clear()
    backwards = [generator.stream_message(SPEC, T0, n) for n in reversed(range(80))]
    assert list(reversed(backwards)) == forwards


def test_stream_is_pinned_for_a_seed():
    # Guards determinism across processes and Python runs (no hash() or global random).
    first = generator.stream_message(SPEC, T0, 0)
    assert first.external_id == "sim-7-0"
    assert first.text == (
        "Guten Tag! Vor 9 Stunden in Singapore gelandet, mein Koffer nicht. Meine Meldung: "
        "https://example.com/claims/ANUVF4-59. Wo ist mein Gepäck? 😩😩😰 #lostluggage"
    )
    assert (first.language, first.is_public, first.conversation_id) == ("de", False, "dm-sim-user-086")
    assert first.author.handle == "mhoffmann80"
    assert first.created_at == T0 + timedelta(microseconds=175127)
    assert first.raw["entities"] == {
        "urls": ["https://example.com/claims/ANUVF4-59"],
        "hashtags": ["#lostluggage"],
        "mentions": [],
    }


def test_different_seeds_give_different_streams():
    seven = generator.stream(SPEC, T0, 0, 200)
    eight = generator.stream(StreamSpec(seed=8, rate_per_minute=60), T0, 0, 200)
    assert sum(a.text == b.text for a, b in zip(seven, eight, strict=True)) == 0
    assert [m.external_id for m in eight[:3]] == ["sim-8-0", "sim-8-1", "sim-8-2"]


def test_first_200_messages_mix_languages_channels_and_hard_text():
    messages = generator.stream(SPEC, T0, 0, 200)

    assert Counter(m.language for m in messages) == {
        "en": 73,
        "nl": 50,
        "fr": 24,
        "de": 20,
        "es": 16,
        "it": 9,
        "pt": 8,
    }
    assert all(m.language == m.author.language for m in messages)
    public = [m for m in messages if m.is_public]
    private = [m for m in messages if not m.is_public]
    assert (len(public), len(private)) == (125, 75)
    assert all(m.conversation_id == f"dm-{m.author.external_id}" for m in private)
    assert all(m.conversation_id == "" and "@SkyBlueAir" in m.text for m in public)
    assert all("@SkyBlueAir" not in m.text for m in private)
    assert sum("\u200d" in m.text for m in messages) == 31  # ZWJ emoji sequences
    assert sum(any(ord(ch) > 0xFFFF for ch in m.text) for m in messages) == 117
    assert sum("https://example.com/" in m.text for m in messages) == 29
    assert all(m.raw["id"] == m.external_id and m.raw["lang"] == m.language for m in messages)


def test_follow_ups_answer_an_earlier_message_of_the_same_customer():
    messages = generator.stream(SPEC, T0, 0, 300)
    position = {m.external_id: i for i, m in enumerate(messages)}

    follow_ups = [m for m in messages if m.in_reply_to_external_id]
    assert len(follow_ups) == 46
    for message in follow_ups:
        parent = messages[position[message.in_reply_to_external_id]]
        assert position[parent.external_id] < position[message.external_id]
        assert parent.created_at < message.created_at
        assert parent.author == message.author
        assert (parent.is_public, parent.conversation_id) == (message.is_public, message.conversation_id)


def test_generated_traffic_ingests_cleanly_and_threads_follow_ups(source, redis_client):
    conn = connector(source, Clock(T0 + timedelta(seconds=120)), max_batch=50)
    cursor = cursor_at(0)
    batches = []
    while True:
        result = conn.fetch(cursor)
        batches.append(result.messages)
        ingested = ingest_batch(source=source, messages=result.messages, rejected=result.rejected)
        assert ingested.rejected == []
        assert ingested.created == len(result.messages)
        cursor = result.next_cursor
        if not result.has_more:
            break

    messages = [m for batch in batches for m in batch]
    assert [len(b) for b in batches] == [50, 50, 20]
    threads = {m.conversation_id for m in messages if not m.is_public} | {
        m.external_id for m in messages if m.is_public and not m.in_reply_to_external_id
    }
    assert Ticket.objects.count() == len(threads) == 104
    assert Ticket.objects.filter(is_private=True).count() == 36
    for message in messages:
        if message.in_reply_to_external_id:
            stored = Message.objects.get(source=source, external_id=message.external_id)
            assert stored.in_reply_to.external_id == message.in_reply_to_external_id
            assert stored.ticket_id == stored.in_reply_to.ticket_id

    again = ingest_batch(source=source, messages=batches[0])
    assert (again.created, again.duplicates) == (0, 50)


# --- The fake platform: posting replies --------------------------------------------


def new_keys(redis_client, before: set[bytes]) -> set[bytes]:
    return set(redis_client.keys("*")) - before


def test_same_idempotency_key_posts_once(source, redis_client):
    before = set(redis_client.keys("*"))
    conn = connector(source, Clock(T0))
    delivery = outbound(source, text="We are on it 👩‍✈️")

    first = conn.send_reply(delivery)
    delivery.attempts = 2
    second = conn.send_reply(delivery)
    other = conn.send_reply(outbound(source, text="Another reply"))

    assert first == second
    assert first.platform_id == f"simpost-{source.pk}-1"
    assert other.platform_id == f"simpost-{source.pk}-2"
    assert first.raw == {
        "index": 0,
        "id": f"simpost-{source.pk}-1",
        "idempotency_key": str(delivery.idempotency_key),
        "text": "We are on it 👩‍✈️",
        "in_reply_to_id": "",
        "conversation_id": "",
        "is_public": True,
        "customer_id": "",
        "posted_at": T0.isoformat(),
    }
    prefix = f"webcare:sim:{source.pk}:"
    assert new_keys(redis_client, before) == {f"{prefix}posts".encode(), f"{prefix}replies".encode()}
    assert redis_client.hlen(f"{prefix}posts") == 2
    assert redis_client.llen(f"{prefix}replies") == 2


def test_concurrent_posts_with_one_key_make_one_post(source, redis_client):
    platform = SimulatedPlatform(source.pk)
    barrier = threading.Barrier(8)

    def post(_: int) -> tuple[str, bool]:
        barrier.wait()
        reply, created = platform.post_reply(
            idempotency_key="same-key",
            text="On it!",
            in_reply_to_external_id="sim-7-1",
            conversation_id="",
            is_public=True,
            customer_id="sim-user-001",
            posted_at=T0,
        )
        return reply.platform_id, created

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(post, range(8)))

    assert {platform_id for platform_id, _ in outcomes} == {f"simpost-{source.pk}-1"}
    assert sum(created for _, created in outcomes) == 1
    assert platform.reply_count() == 1


def test_find_sent_looks_the_post_up_by_idempotency_key(source, redis_client):
    conn = connector(source, Clock(T0))
    sent = outbound(source)
    posted = conn.send_reply(sent)

    assert conn.find_sent(sent) == posted
    assert conn.find_sent(outbound(source)) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "text is empty"),
        ("  \n ", "text is empty"),
        ("x" * 501, "text is 501 characters long; the limit is 500"),
    ],
)
def test_platform_validation_is_permanent(source, redis_client, text, reason):
    conn = connector(source, Clock(T0))
    with pytest.raises(PermanentError) as raised:
        conn.send_reply(outbound(source, text=text))
    assert str(raised.value) == reason
    assert SimulatedPlatform(source.pk).reply_count() == 0


def test_reply_of_exactly_500_characters_is_accepted(source, redis_client):
    result = connector(source, Clock(T0)).send_reply(outbound(source, text="é" * 500))
    assert result.platform_id == f"simpost-{source.pk}-1"


def test_retryable_failure_hits_the_first_attempt_only(source, redis_client):
    conn = connector(source, Clock(T0), reply_failure_rate=1.0, reply_failure_kind="retryable")
    delivery = outbound(source, attempts=1)

    with pytest.raises(RetryableError) as raised:
        conn.send_reply(delivery)
    assert type(raised.value) is RetryableError
    assert (str(raised.value), raised.value.retry_after) == ("simulated 503: service unavailable", 2.0)
    assert conn.find_sent(delivery) is None

    delivery.attempts = 2
    assert conn.send_reply(delivery).platform_id == f"simpost-{source.pk}-1"


def test_permanent_failure_fails_every_attempt_and_posts_nothing(source, redis_client):
    conn = connector(source, Clock(T0), reply_failure_rate=1.0, reply_failure_kind="permanent")
    delivery = outbound(source)
    for attempt in (1, 2, 3):
        delivery.attempts = attempt
        with pytest.raises(PermanentError, match="^simulated 422: status is a duplicate of a recent post$"):
            conn.send_reply(delivery)
    assert conn.find_sent(delivery) is None
    assert SimulatedPlatform(source.pk).reply_count() == 0


def test_timeout_posts_but_reports_an_unknown_outcome(source, redis_client):
    conn = connector(source, Clock(T0), reply_failure_rate=1.0, reply_failure_kind="timeout")
    delivery = outbound(source)

    with pytest.raises(OutcomeUnknown, match="^simulated timeout"):
        conn.send_reply(delivery)
    found = conn.find_sent(delivery)
    assert found is not None and found.platform_id == f"simpost-{source.pk}-1"

    delivery.attempts = 2
    assert conn.send_reply(delivery) == found
    assert SimulatedPlatform(source.pk).reply_count() == 1


def test_failure_injection_is_a_deterministic_share_of_deliveries(source, redis_client):
    keys = [uuid.UUID(int=i) for i in range(40)]

    def failing() -> list[int]:
        conn = connector(source, Clock(T0), reply_failure_rate=0.25, reply_failure_kind="permanent")
        failed = []
        for i, key in enumerate(keys):
            try:
                conn.send_reply(outbound(source, key=key))
            except PermanentError:
                failed.append(i)
        return failed

    first = failing()
    assert first == [1, 6, 9, 17, 18, 19, 20, 21, 23, 24, 26, 29, 30, 35]
    assert failing() == first
    assert SimulatedPlatform(source.pk).reply_count() == 40 - len(first)


def test_invalid_config_is_a_permanent_error(source, redis_client):
    with pytest.raises(
        PermanentError, match="reply_failure_kind must be one of retryable, permanent, timeout"
    ):
        connector(source, Clock(T0), reply_failure_kind="sometimes").send_reply(outbound(source))
    with pytest.raises(PermanentError, match="rate_per_minute must be above 0"):
        connector(source, Clock(T0), reply_failure_kind="retryable", rate_per_minute=0).fetch(None)


# --- Customers answering the brand -------------------------------------------------


def ingest_stream(source: Source, count: int) -> list[InboundMessage]:
    messages = generator.stream(SPEC, T0, 0, count)
    assert ingest_batch(source=source, messages=messages).rejected == []
    return messages


def answers(result: FetchResult) -> list[InboundMessage]:
    return [m for m in result.messages if m.external_id.startswith("sim-7-a")]


def test_customers_answer_brand_replies_exactly_once(source, redis_client):
    stream = ingest_stream(source, 30)
    public = Message.objects.get(external_id=next(m.external_id for m in stream if m.is_public))
    private = Message.objects.get(external_id=next(m.external_id for m in stream if not m.is_public))
    clock = Clock(T0 + timedelta(minutes=1))
    conn = connector(source, clock, reply_follow_up_rate=1.0, max_batch=2000)
    posted_public = conn.send_reply(outbound(source, parent=public))
    posted_private = conn.send_reply(outbound(source, parent=private))

    clock.now = T0 + timedelta(minutes=1, seconds=29)
    assert answers(conn.fetch(cursor_at(30))) == []

    clock.now = T0 + timedelta(minutes=11, seconds=1)
    result = conn.fetch(cursor_at(30))
    got = answers(result)
    assert [(m.external_id, m.in_reply_to_external_id) for m in sorted(got, key=lambda m: m.external_id)] == [
        ("sim-7-a0", posted_public.platform_id),
        ("sim-7-a1", posted_private.platform_id),
    ]
    by_id = {m.external_id: m for m in got}
    assert by_id["sim-7-a0"].author.external_id == public.author_contact.external_id
    assert (by_id["sim-7-a0"].is_public, by_id["sim-7-a0"].conversation_id) == (True, "")
    assert by_id["sim-7-a1"].author.external_id == private.author_contact.external_id
    assert (by_id["sim-7-a1"].is_public, by_id["sim-7-a1"].conversation_id) == (
        False,
        private.conversation_id,
    )
    assert result.next_cursor["reply_index"] == 2 and result.next_cursor["answered"] == []

    # The same cursor gives the same answers; the next cursor gives none again.
    assert answers(conn.fetch(cursor_at(30))) == got
    assert answers(conn.fetch(result.next_cursor)) == []

    # The outbox stored the brand posts with their platform ids; answers join the tickets.
    tickets_before = Ticket.objects.count()
    brand_posts = [
        inbound(posted_public.platform_id, author="brand", brand=True, reply_to=public.external_id, at=T0),
        inbound(
            posted_private.platform_id,
            author="brand",
            brand=True,
            reply_to=private.external_id,
            conversation=private.conversation_id,
            public=False,
            at=T0,
        ),
    ]
    ingest_batch(source=source, messages=brand_posts)
    assert ingest_batch(source=source, messages=got).rejected == []
    assert Ticket.objects.count() == tickets_before
    assert Message.objects.get(external_id="sim-7-a0").ticket_id == public.ticket_id
    assert Message.objects.get(external_id="sim-7-a1").ticket_id == private.ticket_id


def test_answers_due_out_of_order_are_each_emitted_once(source, redis_client):
    stream = ingest_stream(source, 40)
    clock = Clock(T0 + timedelta(minutes=1))
    conn = connector(source, clock, reply_follow_up_rate=1.0, max_batch=2000)
    parents = Message.objects.filter(external_id__in=[m.external_id for m in stream[:6]]).order_by("id")
    for parent in parents:
        conn.send_reply(outbound(source, parent=parent))
    replies = SimulatedPlatform(source.pk).replies(0, 10)
    due = {r.index: answer_to_brand_reply(conn.config.stream, r).created_at for r in replies}
    order = sorted(due, key=due.get)
    assert order != sorted(order)  # the test needs answers that come due out of posting order

    cursor = cursor_at(40)
    emitted: list[str] = []
    for index in order:
        clock.now = due[index]
        result = conn.fetch(cursor)
        emitted.extend(m.external_id for m in answers(result))
        cursor = result.next_cursor
    assert emitted == [f"sim-7-a{i}" for i in order]
    assert (cursor["reply_index"], cursor["answered"]) == (6, [])

    clock.now += timedelta(hours=1)
    assert answers(conn.fetch(cursor)) == []


def test_a_deterministic_share_of_brand_replies_gets_an_answer(source, redis_client):
    stream = ingest_stream(source, 40)
    clock = Clock(T0 + timedelta(minutes=1))
    conn = connector(source, clock, reply_follow_up_rate=0.5, max_batch=2000)
    for parent in Message.objects.filter(external_id__in=[m.external_id for m in stream]).order_by("id"):
        conn.send_reply(outbound(source, parent=parent))

    clock.now = T0 + timedelta(minutes=20)
    first = conn.fetch(cursor_at(40))
    assert len(answers(first)) == 25  # seed 7, rate 0.5: fixed by the seed, the same on every backend
    assert answers(conn.fetch(cursor_at(40))) == answers(first)
    assert first.next_cursor["reply_index"] == 40
    assert answers(conn.fetch(first.next_cursor)) == []
