"""Ingest throughput: the real pipeline against a no-logic floor, on PostgreSQL and SQLite.

    .venv/bin/python bench/ingest.py [--quick] [--json FILE]

What it measures (wall clock, workload generation excluded):

* **pipeline**: ``ingest_batch`` on 50-message batches as a poll delivers them
  (about 60% new posts, 30% replies to earlier messages, 10% private messages in
  conversations, a pool of repeat authors), threading, routing, TicketEvents and
  the realtime push to a live Redis after each commit all included.
* **floor**: per message the rows the pipeline writes (one contact, one ticket,
  one message, one event, same columns and values) inserted with the driver's
  ``executemany`` (psycopg / sqlite3) into the same tables, one transaction per
  50-message batch like the pipeline; no ORM, no reads, no logic.
* **stored**: pipeline throughput on PostgreSQL with 10k and with 500k messages
  (and their tickets, contacts, events) already stored, prefilled with COPY; the two
  databases sit side by side and rounds alternate between them.

It starts everything it needs: a fresh PostgreSQL cluster in ``var/bench-pg``
(``webcare.devtools.postgres``), a fresh SQLite file in ``var/``, a private Redis.
Each backend runs in a child process of this script (``--child``), configured
through DATABASE_URL like the app. ``--quick`` shrinks every size (CI smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.common import empty_database, log, setup_django  # noqa: E402

VAR_DIR = BASE_DIR / "var"
PG_DIR = VAR_DIR / "bench-pg"
SQLITE_PATH = VAR_DIR / "bench-ingest.sqlite3"
REDIS_DIR = VAR_DIR / "bench-redis"

BATCH = 50
SEED = 20261102
# Platform time of the workload; prefilled history lies in the 60 days before it.
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
HISTORY_DAYS = 60
REGULARS = 300  # authors who write again and again

TARGET_PG_MSGS = 2000.0
TARGET_RATIO = 0.25
TARGET_SLOWDOWN = 0.20


@dataclass(frozen=True)
class Sizes:
    messages: int  # timed messages per pipeline or floor run
    warmup: int  # messages ingested before timing (connection, caches)
    rounds: int  # pipeline/floor rounds per backend; the median is reported
    stored: tuple[int, int]  # messages already stored, small and large
    stored_messages: int  # timed messages on top of each stored size


FULL = Sizes(messages=20_000, warmup=500, rounds=3, stored=(10_000, 500_000), stored_messages=10_000)
QUICK = Sizes(messages=1_000, warmup=100, rounds=1, stored=(1_000, 10_000), stored_messages=1_000)


# --- Workload ---------------------------------------------------------------------------------

_WORDS = (
    "my flight KL1234 is delayed again and nobody at the gate knows why "
    "where is my bag it never arrived in Amsterdam please help "
    "ik wacht al drie uur op mijn koffer waar blijft die "
    "thanks for the quick answer the app keeps crashing at checkout "
    "refund order number 88213 still not received after two weeks "
    "great service today the crew was lovely 😍 ✈️ 🙏 "
    "can you DM me the booking reference seat change wifi not working"
).split()


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(8, 45)))


def _raw(ext: str, handle: str, text: str, at: datetime, *, public: bool, reply_to: str) -> dict:
    # Shaped like a platform status: what connectors keep in Message.raw.
    return {
        "id": ext,
        "uri": f"https://social.example/@{handle}/{ext}",
        "created_at": at.isoformat(),
        "visibility": "public" if public else "direct",
        "in_reply_to_id": reply_to or None,
        "language": "en",
        "content": f"<p>{text}</p>",
        "account": {"id": handle, "acct": handle, "display_name": handle.title(), "bot": False},
        "media_attachments": [],
        "mentions": [{"acct": "brand"}],
        "tags": [],
        "replies_count": 0,
        "favourites_count": 0,
    }


@dataclass(frozen=True)
class History:
    """What a prefilled database holds, for the workload to refer to."""

    messages: int = 0
    conversations: tuple[str, ...] = ()


NO_HISTORY = History()


def _author(rng: random.Random, fresh: str):
    from inbox.connectors.base import AuthorIdentity

    if rng.random() < 0.4:
        author_id = f"r{rng.randrange(REGULARS)}"
    else:
        author_id = fresh
    # A person's profile is stable from one message to the next.
    profile = zlib.crc32(author_id.encode())
    return AuthorIdentity(
        external_id=author_id,
        handle=f"user_{author_id}",
        display_name=f"User {author_id}",
        followers_count=profile % 5_000,
        verified=profile % 50 == 0,
        language="en",
    )


def workload(count: int, *, prefix: str, history: History = NO_HISTORY, seed: int = SEED) -> list[list]:
    """``count`` messages in poll-sized batches; deterministic for a given seed and prefix."""
    from inbox.connectors.base import InboundMessage

    rng = random.Random(f"{seed}-{prefix}")
    made: list[str] = []
    conversations: dict[str, Any] = {}
    items: list[InboundMessage] = []
    for n in range(count):
        ext = f"{prefix}{n}"
        at = T0 + timedelta(seconds=n * 1.5, microseconds=rng.randrange(1_000_000))
        kind = rng.random()
        reply_to = conversation = ""
        public = True
        author = _author(rng, f"{prefix}a{n}")
        if kind < 0.30 and (made or history.messages):
            if history.messages and (not made or rng.random() < 0.25):
                reply_to = f"p{rng.randrange(history.messages)}"
            else:
                reply_to = made[-1 - rng.randrange(min(len(made), 1_000))]
        elif kind >= 0.90:
            public = False
            if conversations and rng.random() < 0.7:
                conversation = rng.choice(list(conversations)[-500:])
                author = conversations[conversation]
            elif history.conversations and rng.random() < 0.3:
                conversation = rng.choice(history.conversations)
            else:
                conversation = f"{prefix}c{n}"
            conversations[conversation] = author
        text = _text(rng)
        items.append(
            InboundMessage(
                external_id=ext,
                author=author,
                text=text,
                created_at=at,
                is_public=public,
                in_reply_to_external_id=reply_to,
                conversation_id=conversation,
                language="en",
                raw=_raw(ext, author.handle, text, at, public=public, reply_to=reply_to),
            )
        )
        made.append(ext)
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


# --- Child: one backend, Django configured from DATABASE_URL -----------------------------------


def _reset_database() -> None:
    """Empty every table and restart the ids, so each round starts from the same state."""
    from django.db import connection

    empty_database()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM")


def _desk():
    """The source and default queue of a fresh desk, and browsers listening on the push."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from inbox.models import Platform, Queue, Source
    from inbox.realtime import groups

    queue = Queue.objects.create(name="General", slug="general", is_default=True)
    source = Source.objects.create(
        name="bench", platform=Platform.MASTODON, account_id="brand", default_queue=queue
    )
    layer = get_channel_layer()

    async def listen() -> None:
        for group in (groups.LEADS, groups.queue(queue.pk)):
            for n in range(2):
                await layer.group_add(group, f"bench.browser{n}")

    async_to_sync(listen)()
    return source, queue


def _run_pipeline(source, batches: list[list]) -> tuple[float, float, Any]:
    """Ingest ``batches``; wall seconds, CPU seconds of this process (push thread included), result."""
    from inbox.services.ingest import IngestResult, ingest_batch

    total = IngestResult()
    cpu = time.process_time()
    start = time.perf_counter()
    for batch in batches:
        total.merge(ingest_batch(source=source, messages=batch))
    elapsed = time.perf_counter() - start
    expected = sum(len(b) for b in batches)
    if total.created != expected or total.rejected:
        raise RuntimeError(f"pipeline stored {total.created} of {expected}: {total.rejected[:3]}")
    return elapsed, time.process_time() - cpu, total


def pipeline_rate(source, count: int, warmup: int, *, history: History = NO_HISTORY, tag: str = "") -> dict:
    _run_pipeline(source, workload(warmup, prefix=f"w{tag}", history=history))
    batches = workload(count, prefix=f"m{tag}", history=history)
    elapsed, cpu, result = _run_pipeline(source, batches)
    return {
        "messages": count,
        "seconds": elapsed,
        "msgs_per_s": count / elapsed,
        "client_cpu_us_per_msg": cpu / count * 1e6,
        "tickets_created": result.tickets_created,
        "tickets_reopened": result.tickets_reopened,
    }


# --- Floor ------------------------------------------------------------------------------------

# Tables the pipeline writes per message (the floor writes one row in each).
_FLOOR_TABLES = ("contact", "ticket", "message", "ticketevent")


class _Table:
    """Every column of one model's table, and what a row holds where the pipeline writes a default.

    Built from the model, so the floor and the prefill write exactly the columns the
    pipeline writes, whatever fields the model has gained.
    """

    def __init__(self, model_name: str) -> None:
        from django.apps import apps
        from django.db import connection

        self.model = apps.get_model("inbox", model_name)
        fields = self.model._meta.concrete_fields
        self.name = self.model._meta.db_table
        self.columns = [f.column for f in fields]
        self.defaults = {
            f.column: f.get_db_prep_save(f.get_default(), connection) for f in fields if not f.primary_key
        }

    def row(self, **values: Any) -> tuple:
        unknown = values.keys() - set(self.columns)
        if unknown:
            raise RuntimeError(f"{self.name} has no column {sorted(unknown)}: update the benchmark")
        return tuple(values[c] if c in values else self.defaults[c] for c in self.columns)


def _floor_rows(
    batches: list[list], tables: dict[str, _Table], *, source_id: int, queue_id: int, customer_id: int
):
    """Row tuples per batch, ids given up front (no RETURNING, no reads), values as the driver takes them."""
    from django.db import connection

    sqlite = connection.vendor == "sqlite"

    def when(value: datetime) -> Any:
        # What Django hands sqlite3: naive UTC text. psycopg adapts datetimes itself.
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ") if sqlite else value

    now = when(datetime.now(UTC))
    contact, ticket, message, event = (tables[name] for name in _FLOOR_TABLES)
    out = []
    n = 0
    for batch in batches:
        contacts, tickets, messages, events = [], [], [], []
        for item in batch:
            n += 1
            a = item.author
            created = when(item.created_at)
            contacts.append(
                contact.row(
                    id=n, platform="mastodon", external_id=f"author-of-{item.external_id}", handle=a.handle,
                    display_name=a.display_name, followers_count=a.followers_count, verified=a.verified,
                    language=a.language, customer_id=customer_id, first_seen_at=now, last_seen_at=created,
                )
            )  # fmt: skip
            tickets.append(
                ticket.row(
                    id=n, source_id=source_id, queue_id=queue_id, customer_id=customer_id, contact_id=n,
                    status="new", priority=1, is_private=not item.is_public, language=item.language,
                    subject=item.text[:200], opened_at=created, last_message_at=created,
                    last_customer_message_at=created, created_at=now, updated_at=now,
                )
            )  # fmt: skip
            messages.append(
                message.row(
                    id=n, source_id=source_id, ticket_id=n, direction="in", is_public=item.is_public,
                    external_id=item.external_id, in_reply_to_external_id=item.in_reply_to_external_id,
                    conversation_id=item.conversation_id, author_contact_id=n, text=item.text,
                    language=item.language, created_at=created, received_at=now, raw=json.dumps(item.raw),
                )
            )  # fmt: skip
            payload = {"message_id": n, "direction": "in", "is_public": item.is_public,
                       "assignee_id": None, "status": "new"}  # fmt: skip
            events.append(
                event.row(id=n, ticket_id=n, queue_id=queue_id, type="message.created",
                          payload=json.dumps(payload), created_at=now)
            )  # fmt: skip
        out.append((contacts, tickets, messages, events))
    return out


def floor_rate(source, queue, count: int, warmup: int) -> dict:
    from django.db import connection

    from inbox.models import Customer

    customer_id = Customer.objects.create(display_name="floor").pk
    sqlite = connection.vendor == "sqlite"
    tables = {name: _Table(name) for name in _FLOOR_TABLES}
    # The very messages the pipeline run gets: warm-up batches first, then the timed ones.
    warm_batches = workload(warmup, prefix="w")
    rows = _floor_rows(
        warm_batches + workload(count, prefix="m"), tables,
        source_id=source.pk, queue_id=queue.pk, customer_id=customer_id,
    )  # fmt: skip
    mark = "?" if sqlite else "%s"
    statements = [
        f"INSERT INTO {t.name} ({', '.join(t.columns)}) VALUES ({', '.join([mark] * len(t.columns))})"
        for t in tables.values()
    ]
    raw, begin, commit = _driver_connection()
    try:
        cursor = raw.cursor()

        def insert(batches) -> None:
            for batch in batches:
                cursor.execute(begin)
                for statement, values in zip(statements, batch, strict=True):
                    cursor.executemany(statement, values)
                cursor.execute(commit)

        insert(rows[: len(warm_batches)])
        start = time.perf_counter()
        insert(rows[len(warm_batches) :])
        elapsed = time.perf_counter() - start
    finally:
        raw.close()
    return {"messages": count, "seconds": elapsed, "msgs_per_s": count / elapsed}


def _driver_connection():
    """A plain driver connection to Django's database (Django's own is closed), and its BEGIN/COMMIT."""
    from django.db import connection

    settings = connection.settings_dict
    connection.close()
    if connection.vendor == "sqlite":
        import sqlite3

        raw = sqlite3.connect(settings["NAME"], isolation_level=None)
        # The pragmas the app sets (webcare/settings.py).
        raw.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;")
        return raw, "BEGIN IMMEDIATE", "COMMIT"
    import psycopg

    raw = psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"], dbname=settings["NAME"],
        autocommit=True,
    )  # fmt: skip
    return raw, "BEGIN", "COMMIT"


def reference_rate(source, count: int) -> dict:
    """For scale: message rows alone (no ticket, contact or event) in one executemany and one commit."""
    from django.db import connection

    table = _Table("message")
    now = datetime.now(UTC)
    if connection.vendor == "sqlite":
        now = now.replace(tzinfo=None).isoformat(" ")
    rows = [
        table.row(
            id=n, source_id=source.pk, direction="in", is_public=item.is_public, external_id=f"ref{n}",
            text=item.text, language=item.language, created_at=now, received_at=now, raw=json.dumps(item.raw),
        )
        for n, item in enumerate((i for batch in workload(count, prefix="r") for i in batch), start=1)
    ]  # fmt: skip
    mark = "?" if connection.vendor == "sqlite" else "%s"
    statement = f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({', '.join([mark] * len(table.columns))})"
    raw, begin, commit = _driver_connection()
    try:
        cursor = raw.cursor()
        start = time.perf_counter()
        cursor.execute(begin)
        cursor.executemany(statement, rows)
        cursor.execute(commit)
        elapsed = time.perf_counter() - start
    finally:
        raw.close()
    return {"rows": count, "seconds": elapsed, "rows_per_s": count / elapsed}


# --- Prefill (stored history) -----------------------------------------------------------------


def prefill(messages: int, *, source_id: int, queue_id: int) -> History:
    """``messages`` stored messages in two-message tickets, with contacts, customers and events.

    Written with COPY; spread over the 60 days before the workload; 90% of tickets solved,
    10% of them private conversations. Sequences are moved past the explicit ids.
    """
    from django.db import connection

    table = {name: _Table(name) for name in ("customer", *_FLOOR_TABLES)}
    rows: dict[str, list[tuple]] = {name: [] for name in table}
    rng = random.Random(f"{SEED}-prefill-{messages}")
    tickets = messages // 2
    span = timedelta(days=HISTORY_DAYS).total_seconds()
    authors: dict[str, int] = {}
    now = datetime.now(UTC)
    for k in range(tickets):
        author = f"r{rng.randrange(REGULARS)}" if rng.random() < 0.4 else f"pa{k}"
        opened = T0 - timedelta(seconds=span * (1 - k / tickets)) - timedelta(hours=2)
        replied = opened + timedelta(minutes=rng.randrange(1, 90))
        contact_id = authors.get(author)
        if contact_id is None:
            contact_id = authors[author] = len(authors) + 1
            rows["customer"].append(
                table["customer"].row(id=contact_id, display_name=f"User {author}", created_at=now)
            )
            rows["contact"].append(
                table["contact"].row(
                    id=contact_id, platform="mastodon", external_id=author, handle=f"user_{author}",
                    display_name=f"User {author}", followers_count=zlib.crc32(author.encode()) % 5_000,
                    language="en", customer_id=contact_id, first_seen_at=now, last_seen_at=replied,
                )
            )  # fmt: skip
        private = k % 10 == 0
        conversation = f"pc{k}" if private else ""
        solved = k < tickets * 0.9
        text = _text(rng)
        ticket_id = k + 1
        rows["ticket"].append(
            table["ticket"].row(
                id=ticket_id, source_id=source_id, queue_id=queue_id, customer_id=contact_id,
                contact_id=contact_id, status="solved" if solved else "open", priority=1, is_private=private,
                language="en", subject=text[:200], opened_at=opened, last_message_at=replied,
                last_customer_message_at=replied, solved_at=replied + timedelta(hours=1) if solved else None,
                created_at=now, updated_at=now,
            )
        )  # fmt: skip
        for j, at in enumerate((opened, replied)):
            mid = 2 * k + j + 1
            ext = f"p{2 * k + j}"
            parent = f"p{2 * k}" if j and not private else ""
            body = text if j == 0 else _text(rng)
            raw = _raw(ext, f"user_{author}", body, at, public=not private, reply_to=parent)
            rows["message"].append(
                table["message"].row(
                    id=mid, source_id=source_id, ticket_id=ticket_id, direction="in", is_public=not private,
                    external_id=ext, in_reply_to_id=mid - 1 if parent else None, in_reply_to_external_id=parent,
                    conversation_id=conversation, author_contact_id=contact_id, text=body, language="en",
                    created_at=at, received_at=now, raw=json.dumps(raw),
                )
            )  # fmt: skip
            events = []
            if j == 0:
                events.append(("ticket.created", {"queue_id": queue_id, "routing_reason": "source default queue",
                                                  "previous_ticket_id": None, "is_private": private,
                                                  "language": "en", "assignee_id": None, "status": "new"}))  # fmt: skip
            events.append(("message.created", {"message_id": mid, "direction": "in", "is_public": not private,
                                               "assignee_id": None, "status": "new"}))  # fmt: skip
            for type_, payload in events:
                rows["ticketevent"].append(
                    table["ticketevent"].row(
                        id=len(rows["ticketevent"]) + 1, ticket_id=ticket_id, queue_id=queue_id, type=type_,
                        payload=json.dumps(payload), created_at=now,
                    )
                )  # fmt: skip
    with connection.cursor() as cursor:
        raw_cursor = cursor.cursor  # the psycopg cursor: COPY is a driver feature
        for name, t in table.items():
            with raw_cursor.copy(f"COPY {t.name} ({', '.join(t.columns)}) FROM STDIN") as copy:
                for row in rows[name]:
                    copy.write_row(row)
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{t.name}', 'id'), (SELECT max(id) FROM {t.name}))"
            )
    return History(messages=2 * tickets, conversations=tuple(f"pc{k}" for k in range(0, tickets, 10)))


def _admin(dbname: str | None = None):
    """A superuser connection to the benchmark cluster (trust on loopback), in autocommit."""
    import psycopg
    from django.db import connection

    s = connection.settings_dict
    return psycopg.connect(
        host=s["HOST"], port=s["PORT"], user="postgres", dbname=dbname or s["NAME"], autocommit=True
    )


def _settle_postgres(tables: tuple[str, ...] = ()) -> None:
    """What a long-running database has: fresh statistics, all-visible pages, no pending checkpoint."""
    with _admin() as su:
        for table in tables or ("",):
            su.execute(f"VACUUM ANALYZE {table}")
        su.execute("CHECKPOINT")


def _use_database(name: str) -> None:
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = name


_STORED_TABLES = ("ticketevent", "message", "ticket", "contact", "customer")


def _high_water_marks() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        marks = {}
        for table in _STORED_TABLES:
            cursor.execute(f"SELECT coalesce(max(id), 0) FROM inbox_{table}")
            marks[table] = cursor.fetchone()[0]
    return marks


def _forget_since(marks: dict[str, int]) -> None:
    """Delete what a measurement added, so every round starts from the same stored volume."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        for table in _STORED_TABLES:
            cursor.execute(f"DELETE FROM inbox_{table} WHERE id > %s", [marks[table]])
    _settle_postgres(tuple(f"inbox_{t}" for t in _STORED_TABLES))


# --- Child entry points -----------------------------------------------------------------------


def child_compare(sizes: Sizes) -> dict:
    from django.db import connection

    setup_django()
    vendor = connection.vendor
    pipeline, floor = [], []
    for round_ in range(1, sizes.rounds + 1):
        _reset_database()
        source, _ = _desk()
        pipeline.append(pipeline_rate(source, sizes.messages, sizes.warmup))
        log(f"  {vendor} round {round_}: pipeline {pipeline[-1]['msgs_per_s']:,.0f} msg/s")
        _reset_database()
        source, queue = _desk()
        floor.append(floor_rate(source, queue, sizes.messages, sizes.warmup))
        log(f"  {vendor} round {round_}: floor    {floor[-1]['msgs_per_s']:,.0f} msg/s")
    _reset_database()
    source, _ = _desk()
    reference = reference_rate(source, sizes.messages)
    log(f"  {vendor}: one message row alone, one executemany: {reference['rows_per_s']:,.0f} rows/s")
    with connection.cursor() as cursor:
        if vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
            version = f"SQLite {cursor.fetchone()[0]}"
        else:
            cursor.execute("SHOW server_version")
            version = f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
    return {
        "vendor": vendor,
        "version": version,
        "pipeline": pipeline,
        "floor": floor,
        "pipeline_msgs_per_s": statistics.median(r["msgs_per_s"] for r in pipeline),
        "floor_msgs_per_s": statistics.median(r["msgs_per_s"] for r in floor),
        "reference": reference,
    }


def child_stored(sizes: Sizes) -> dict:
    """Pipeline throughput on a database holding few and one holding many messages.

    Both live in the cluster side by side and rounds alternate between them, so a change
    in machine load hits both alike; what a round adds is deleted again after it.
    """
    setup_django()
    from django.db import connection

    from inbox.models import Message

    # The migrated, emptied database is the template of both (cheaper than migrating each).
    home = connection.settings_dict["NAME"]
    _reset_database()
    connection.close()
    prepared = {}
    for stored in sizes.stored:
        name = f"{home}_stored_{stored}"
        with _admin("postgres") as su:
            su.execute(f'DROP DATABASE IF EXISTS "{name}"')
            su.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{home}" OWNER "{connection.settings_dict["USER"]}"'
            )
        _use_database(name)
        source, queue = _desk()
        start = time.perf_counter()
        history = prefill(stored, source_id=source.pk, queue_id=queue.pk)
        _settle_postgres()
        if Message.objects.count() != history.messages:
            raise RuntimeError("prefill stored the wrong number of messages")
        log(f"  stored {stored:,}: prefilled in {time.perf_counter() - start:.1f}s")
        prepared[stored] = (name, source, history, _high_water_marks())
    runs: dict[int, list[dict]] = {stored: [] for stored in prepared}
    for round_ in range(1, sizes.rounds + 1):
        for stored, (name, source, history, marks) in prepared.items():
            _use_database(name)
            run = pipeline_rate(source, sizes.stored_messages, sizes.warmup, history=history, tag=str(round_))
            runs[stored].append(run)
            log(f"  stored {stored:,} round {round_}: pipeline {run['msgs_per_s']:,.0f} msg/s")
            _forget_since(marks)
    return {
        "runs": [
            {
                "stored": prepared[stored][2].messages,
                "rounds": rounds,
                "msgs_per_s": statistics.median(r["msgs_per_s"] for r in rounds),
            }
            for stored, rounds in runs.items()
        ]
    }


# --- Parent: start the servers, run the children, print the table ------------------------------


def _child(mode: str, *, quick: bool, env: dict[str, str]) -> dict:
    with tempfile.NamedTemporaryFile(prefix="bench-", suffix=".json", dir=VAR_DIR, delete=False) as out:
        path = Path(out.name)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--out", str(path)]
    if quick:
        argv.append("--quick")
    try:
        subprocess.run(argv, env=env, cwd=BASE_DIR, check=True)
        return json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)


def _fresh_sqlite() -> str:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{SQLITE_PATH}"


def run_all(quick: bool) -> dict:
    from webcare.devtools.postgres import destroy_cluster, ensure_cluster, stop_cluster
    from webcare.devtools.redis_server import free_port, start_redis

    VAR_DIR.mkdir(exist_ok=True)
    redis_port = free_port()
    redis = start_redis(redis_port, REDIS_DIR)
    destroy_cluster(PG_DIR)
    pg_url = ensure_cluster(PG_DIR)
    base_env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="webcare.settings",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        CHANNELS_PREFIX=f"bench{redis_port}",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(BASE_DIR),
    )
    try:
        log(f"PostgreSQL: {pg_url}")
        postgres = _child("compare", quick=quick, env={**base_env, "DATABASE_URL": pg_url})
        log(f"SQLite: {SQLITE_PATH}")
        sqlite = _child("compare", quick=quick, env={**base_env, "DATABASE_URL": _fresh_sqlite()})
        log("PostgreSQL with messages already stored")
        stored = _child("stored", quick=quick, env={**base_env, "DATABASE_URL": pg_url})
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        stop_cluster(PG_DIR)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "quick": quick,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sizes": (QUICK if quick else FULL).__dict__,
        "backends": [postgres, sqlite],
        "stored": stored["runs"],
    }


def report(results: dict) -> str:
    sizes = results["sizes"]
    lines = [
        f"Ingest benchmark {results['date']}, {results['cores']} cores, Python {results['python']}"
        + (" (--quick)" if results["quick"] else ""),
        f"workload: {sizes['messages']:,} messages in batches of {BATCH} (60% new posts, 30% replies, "
        f"10% private conversations), median of {sizes['rounds']} round(s)",
        "",
        f"{'backend':<18} {'pipeline msg/s':>15} {'floor msg/s':>12} {'ratio':>7} {'client CPU/msg':>15}"
        "   rounds (pipeline / floor)",
    ]
    for b in results["backends"]:
        ratio = b["pipeline_msgs_per_s"] / b["floor_msgs_per_s"]
        rounds = ", ".join(
            f"{p['msgs_per_s']:,.0f}/{f['msgs_per_s']:,.0f}"
            for p, f in zip(b["pipeline"], b["floor"], strict=True)
        )
        cpu = statistics.median(p["client_cpu_us_per_msg"] for p in b["pipeline"])
        lines.append(
            f"{b['version']:<18} {b['pipeline_msgs_per_s']:>15,.0f} {b['floor_msgs_per_s']:>12,.0f} {ratio:>7.1%}"
            f" {cpu:>12,.0f} us   {rounds}"
        )
    lines.append(
        "for scale, message rows alone in one executemany and one commit (no ticket, contact, event): "
        + ", ".join(f"{b['version']} {b['reference']['rows_per_s']:,.0f} rows/s" for b in results["backends"])
    )
    small, large = results["stored"]
    slowdown = 1 - large["msgs_per_s"] / small["msgs_per_s"]
    lines += [
        "",
        f"PostgreSQL, {sizes['stored_messages']:,} new messages on top of stored ones "
        f"(median of {sizes['rounds']} alternating round(s)):",
        f"{'stored messages':<20} {'pipeline msg/s':>15} {'client CPU/msg':>15}   rounds",
        *(
            f"{run['stored']:<20,} {run['msgs_per_s']:>15,.0f} "
            f"{statistics.median(r['client_cpu_us_per_msg'] for r in run['rounds']):>12,.0f} us   "
            + ", ".join(f"{r['msgs_per_s']:,.0f}" for r in run["rounds"])
            for run in (small, large)
        ),
        f"slowdown at {large['stored']:,} vs {small['stored']:,}: {slowdown:.1%}",
        "",
    ]
    pg = next(b for b in results["backends"] if b["vendor"] == "postgresql")
    pg_ratio = pg["pipeline_msgs_per_s"] / pg["floor_msgs_per_s"]
    checks = [
        (f"PostgreSQL pipeline >= {TARGET_PG_MSGS:,.0f} msg/s", pg["pipeline_msgs_per_s"] >= TARGET_PG_MSGS),
        (f"pipeline >= {TARGET_RATIO:.0%} of the floor (PostgreSQL)", pg_ratio >= TARGET_RATIO),
    ]
    for b in results["backends"]:
        if b["vendor"] != "postgresql":
            ratio = b["pipeline_msgs_per_s"] / b["floor_msgs_per_s"]
            checks.append(
                (f"pipeline >= {TARGET_RATIO:.0%} of the floor ({b['version']})", ratio >= TARGET_RATIO)
            )
    checks.append((f"at most {TARGET_SLOWDOWN:.0%} slower with more stored", slowdown <= TARGET_SLOWDOWN))
    lines.append("targets:")
    lines += [f"  [{'met' if ok else 'MISSED'}] {name}" for name, ok in checks]
    if results["quick"]:
        lines.append("  (--quick sizes: a smoke test, not the numbers to quote)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute (CI smoke)")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--child", choices=("compare", "stored"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.child:
        result = child_compare(sizes) if args.child == "compare" else child_stored(sizes)
        args.out.write_text(json.dumps(result))
        return 0
    started = time.perf_counter()
    load_before = os.getloadavg()
    results = run_all(args.quick)
    results["wall_seconds"] = time.perf_counter() - started
    # Other work on the machine shows up in every number: keep what it was.
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(report(results))
    load = results["load_average"]
    print(
        f"\n(total {results['wall_seconds']:.0f}s; load average before {load['before'][0]:.1f}, "
        f"after {load['after'][0]:.1f} (1 min) / {load['after'][2]:.1f} (15 min) on {os.cpu_count()} cores)"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
