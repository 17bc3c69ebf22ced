"""The inbox lists with a large backlog: page 1 of a list, a filtered list and a search, on
SQLite and PostgreSQL, each beside a baseline measured in the same run.

    .venv/bin/python bench/inbox_list.py [--quick] [--backend sqlite|postgres|both] [--json FILE]

The desk (seeded, the same in every run): 100,000 tickets of which about 40% are active (new,
open, pending; the rest solved or closed history), 50 queues, 300 agents in two queues each and
3 team leads, 70,000 customers with one contact each on six platforms, one to four messages per
ticket (about 250,000, inbound and outbound, texts of 8 to 30 words), SLA due times and states on
the active tickets, tags on a third of the tickets, and "seen" marks (the unread marker) for the
agent measured on half of their queues' tickets. ``--quick`` is a tenth of that (CI smoke test).

What is timed, each the median of repeated runs after a warm-up:

* **page**: the whole request as the browser makes it, through Django's test client (session,
  middleware, the selector, the tab counts, the template with 50 rows and their SLA clocks).
* **selector**: ``inbox.selectors.inbox.inbox_page`` alone: the count, the page of tickets with
  their related rows, tags, unread state and viewers.
* **baseline**: the same 50 tickets fetched by primary key with ``select_related`` of the same
  relations: the floor any list of these rows sits on. The ratios say what the list costs over it.

Scenarios: an agent's "my queues" page 1; the same list searched for a customer handle; a lead's
"all" list filtered to open Dutch tickets; a lead's search of every message's text for a word;
the live-update request for 20 tickets (``/desk/rows``).

The script starts what it needs: a PostgreSQL cluster in ``var/bench-inbox-pg``, a SQLite file
``var/bench-inbox.sqlite3`` and a private Redis; each backend is measured in a child process
configured through DATABASE_URL like the app.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from bench.common import empty_database, load_rows, log, setup_django, weighted  # noqa: E402

VAR_DIR = BASE_DIR / "var"
PG_DIR = VAR_DIR / "bench-inbox-pg"
SQLITE_PATH = VAR_DIR / "bench-inbox.sqlite3"
REDIS_DIR = VAR_DIR / "bench-inbox-redis"
SEED = 20261127
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PLATFORMS = ("x", "facebook", "instagram", "messenger", "mastodon", "bluesky")
LANGUAGE_MIX = {"nl": 40, "en": 35, "fr": 6, "de": 6, "es": 5, "it": 2, "pt": 2, "": 4}
STATUS_MIX = {"new": 12, "open": 20, "pending": 8, "solved": 35, "closed": 25}
PRIORITY_MIX = {0: 10, 1: 70, 2: 15, 3: 5}
SLA_MIX = {"ok": 70, "at_risk": 20, "breached": 10}
WORDS = (
    "bag luggage koffer flight vlucht delayed vertraagd cancelled geannuleerd refund terugbetaling "
    "gate seat stoel boarding pass booking reference help please waiting wachten three days dagen "
    "Schiphol Amsterdam Paris New York transfer connection hotel voucher compensation vergoeding "
    "crew friendly rude staff service app website error payment card miles upgrade lounge"
).split()
SEARCH_WORD = "wheelchair"  # in about 0.5% of the messages
# Seed rows are stamped with the benchmark's fixed "now".
_load = functools.partial(load_rows, now=NOW)


@dataclass(frozen=True)
class Sizes:
    tickets: int
    queues: int
    agents: int
    customers: int
    repeats: int


FULL = Sizes(tickets=100_000, queues=50, agents=300, customers=70_000, repeats=15)
QUICK = Sizes(tickets=10_000, queues=10, agents=30, customers=7_000, repeats=5)


# --- Child: seed one backend, time the lists ----------------------------------------------------


def _text(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 30))
    if rng.random() < 0.005:
        words.insert(rng.randrange(len(words)), SEARCH_WORD)
    return " ".join(words).capitalize() + rng.choice(("?", "!", ".", " 🙏"))


@dataclass
class Seeded:
    agent_id: int
    lead_id: int
    tickets: int
    active: int
    messages: int
    seconds: float


def seed(sizes: Sizes) -> Seeded:
    """The desk described in the module doc, loaded with the driver."""
    from django.contrib.auth import get_user_model

    from inbox.models import (
        AgentProfile,
        Contact,
        Customer,
        Message,
        Queue,
        Source,
        Tag,
        Ticket,
        TicketSeen,
    )

    started = time.perf_counter()
    rng = random.Random(SEED)
    queue_ids = list(range(1, sizes.queues + 1))
    _load(Queue, [
        {"id": q, "name": f"Queue {q}", "slug": f"queue-{q}", "is_default": q == 1} for q in queue_ids
    ])  # fmt: skip
    sources = []
    for n, name in enumerate(PLATFORMS, start=1):
        sources.append({"id": n, "name": f"brand-{name}", "platform": name, "account_id": "brand",
                        "default_queue_id": 1})  # fmt: skip
    _load(Source, sources)

    # People: agents 1..N in two queues each, then three leads in none.
    users, profiles, members = [], [], []
    lead_ids = [sizes.agents + n for n in (1, 2, 3)]
    for uid in range(1, sizes.agents + 4):
        lead = uid in lead_ids
        users.append({"id": uid, "username": f"{'lead' if lead else 'agent'}{uid}", "password": "!",
                      "first_name": f"Agent{uid}", "last_name": "Bench", "date_joined": NOW})  # fmt: skip
        profiles.append({"id": uid, "user_id": uid, "role": "lead" if lead else "agent", "languages": ["nl", "en"],
                         "capacity": 10, "presence": "online"})  # fmt: skip
    membership: dict[int, list[int]] = {q: [] for q in queue_ids}
    for uid in range(1, sizes.agents + 1):
        for q in rng.sample(queue_ids, 2):
            membership[q].append(uid)
            members.append({"id": len(members) + 1, "queue_id": q, "user_id": uid})
    _load(get_user_model(), users)
    _load(AgentProfile, profiles)
    _load(Queue.members.through, members)

    customers, contacts = [], []
    for n in range(1, sizes.customers + 1):
        customers.append({"id": n, "display_name": f"Traveller {n}", "vip": rng.random() < 0.01})
        contacts.append({"id": n, "platform": PLATFORMS[n % len(PLATFORMS)], "external_id": f"c{n}",
                         "handle": f"traveller{n}", "display_name": f"Traveller {n}", "customer_id": n})  # fmt: skip
    _load(Customer, customers)
    _load(Contact, contacts)

    tags = [{"id": n, "name": f"topic-{n}"} for n in range(1, 21)]
    _load(Tag, tags)

    tickets, messages, links = [], [], []
    agent = 1
    agent_queues = {q for q in queue_ids if agent in membership[q]}
    seen = []
    active = 0
    message_id = 0
    for tid in range(1, sizes.tickets + 1):
        customer = rng.randint(1, sizes.customers)
        queue = rng.choice(queue_ids)
        status = weighted(rng, STATUS_MIX)
        opened = NOW - timedelta(minutes=rng.randint(5, 60 * 24 * 120) if status in ("solved", "closed")
                                 else rng.randint(5, 60 * 24 * 3))  # fmt: skip
        is_active = status in ("new", "open", "pending")
        active += is_active
        priority = weighted(rng, PRIORITY_MIX)
        answered = status != "new"
        texts = [_text(rng) for _ in range(rng.randint(1, 4))]
        ticket = {
            "id": tid, "source_id": contacts[customer - 1]["id"] % len(PLATFORMS) + 1, "queue_id": queue,
            "customer_id": customer, "contact_id": customer, "status": status, "priority": priority,
            "language": weighted(rng, LANGUAGE_MIX), "subject": texts[0][:200], "opened_at": opened,
            "last_message_at": opened + timedelta(minutes=len(texts) * 7), "last_customer_message_at": opened,
            "first_response_at": opened + timedelta(minutes=30) if answered else None,
            "assignee_id": rng.choice(membership[queue]) if membership[queue] and rng.random() < 0.7 else None,
            "created_at": opened, "updated_at": opened,
        }  # fmt: skip
        if is_active:
            ticket["first_response_due_at"] = opened + timedelta(hours=1)
            ticket["resolution_due_at"] = opened + timedelta(days=2)
            if answered and rng.random() < 0.5:
                ticket["next_response_due_at"] = opened + timedelta(hours=rng.randint(2, 30))
            ticket["sla_state"] = weighted(rng, SLA_MIX)
            if status == "pending":
                ticket["pending_since"] = opened + timedelta(hours=1)
        elif status == "solved":
            ticket["solved_at"] = opened + timedelta(hours=5)
        tickets.append(ticket)
        for n, text in enumerate(texts):
            message_id += 1
            inbound = n % 2 == 0
            messages.append({
                "id": message_id, "source_id": ticket["source_id"], "ticket_id": tid,
                "direction": "in" if inbound else "out", "is_public": True, "external_id": f"m{message_id}",
                "author_contact_id": customer if inbound else None, "text": text, "language": ticket["language"],
                "created_at": opened + timedelta(minutes=n * 7), "delivery_state": "" if inbound else "sent",
            })  # fmt: skip
        if rng.random() < 0.33:
            for tag in rng.sample(range(1, 21), rng.randint(1, 2)):
                links.append({"id": len(links) + 1, "ticket_id": tid, "tag_id": tag})
        if queue in agent_queues and rng.random() < 0.5:
            seen.append({"id": len(seen) + 1, "user_id": agent, "ticket_id": tid, "last_message_id": message_id,
                         "seen_at": NOW})  # fmt: skip
    _load(Ticket, tickets)
    _load(Message, messages)
    _load(Ticket.tags.through, links)
    _load(TicketSeen, seen)
    return Seeded(agent_id=agent, lead_id=lead_ids[0], tickets=len(tickets), active=active,
                  messages=len(messages), seconds=time.perf_counter() - started)  # fmt: skip


def _settle() -> None:
    """Fresh planner statistics (and, on PostgreSQL, all-visible pages), as on a database in use."""
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        return
    import psycopg

    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"], port=s["PORT"], user="postgres", dbname=s["NAME"], autocommit=True
    ) as su:
        su.execute("VACUUM ANALYZE")
        su.execute("CHECKPOINT")


def _timed(run, repeats: int) -> tuple[float, float]:
    """Median wall-clock ms and median CPU ms of this process over ``repeats`` runs. On SQLite the
    database works inside this process, so its CPU time is the whole cost and barely moves when
    other work shares the machine; on PostgreSQL the server's share is not in it."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        cpu.append((time.process_time() - start_cpu) * 1e3)
        wall.append((time.perf_counter() - start) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


@dataclass
class Scenario:
    name: str
    user_id: int
    query: dict[str, str]
    rows_ids: int = 0  # > 0: the live-update request for that many ids instead of the page


def scenarios(seeded: Seeded) -> list[Scenario]:
    handle = "traveller12"  # a handle fragment: traveller12, traveller120..129, traveller1200..
    return [
        Scenario("agent: my queues, page 1", seeded.agent_id, {"view": "queues"}),
        Scenario("agent: my queues, search a handle", seeded.agent_id, {"view": "queues", "q": handle}),
        Scenario("lead: all, open + Dutch, page 1", seeded.lead_id, {"view": "all", "status": "open", "language": "nl"}),
        Scenario("lead: all, search message text", seeded.lead_id, {"view": "all", "q": SEARCH_WORD}),
        Scenario("agent: live rows for 20 tickets", seeded.agent_id, {"view": "queues"}, rows_ids=20),
    ]  # fmt: skip


def measure(scenario: Scenario, repeats: int) -> dict[str, Any]:
    from urllib.parse import urlencode

    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from inbox.models import Ticket
    from inbox.selectors.inbox import InboxFilters, inbox_ordered, inbox_page, inbox_tickets
    from inbox.views.inbox import InboxQueryForm

    user = get_user_model().objects.get(pk=scenario.user_id)
    client = Client(HTTP_HOST="localhost")
    client.force_login(user)
    form = InboxQueryForm(scenario.query, user=user, view=scenario.query["view"])
    if not form.is_valid():
        raise RuntimeError(f"bad scenario query {scenario.query}: {form.errors}")
    filters: InboxFilters = form.filters()
    view = scenario.query["view"]

    def selector() -> list[int]:
        return [row.ticket.pk for row in inbox_page(user=user, view=view, filters=filters, page=1).rows]

    page_ids = selector()
    matches = inbox_page(user=user, view=view, filters=filters, page=1).count
    if scenario.rows_ids:
        page_ids = page_ids[: scenario.rows_ids]
        url = "/desk/rows?" + urlencode({"ids": ",".join(map(str, page_ids)), **scenario.query})
    else:
        url = "/?" + urlencode(scenario.query)

    def request() -> None:
        response = client.get(url)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: HTTP {response.status_code}")

    related = ("source", "contact", "customer", "queue", "assignee")

    def baseline() -> None:
        found = list(Ticket.objects.select_related(*related).filter(pk__in=page_ids))
        if len(found) != len(page_ids):
            raise RuntimeError("baseline lost rows")

    # The result must be right, or its speed means nothing.
    expected = list(
        inbox_ordered(inbox_tickets(user=user, view=view))
        .filter(pk__in=page_ids)
        .values_list("pk", flat=True)
    )
    if expected != page_ids or len(page_ids) != min(matches, scenario.rows_ids or 50):
        raise RuntimeError(f"{scenario.name}: the page is not in list order")

    for _ in range(3):  # warm caches: templates, the query plan, the database's pages
        request()
        baseline()
        selector()
    executed = []

    def count(execute, sql, params, many, context):
        executed.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        request()
    page_ms, page_cpu_ms = _timed(request, repeats)
    selector_ms, selector_cpu_ms = _timed(selector, repeats)
    baseline_ms, baseline_cpu_ms = _timed(baseline, repeats)
    return {
        "name": scenario.name,
        "url": url if len(url) < 120 else url[:117] + "...",
        "rows": len(page_ids),
        "matches": matches,
        "queries": len(executed),
        "page_ms": page_ms,
        "page_cpu_ms": page_cpu_ms,
        "selector_ms": selector_ms,
        "selector_cpu_ms": selector_cpu_ms,
        "baseline_ms": baseline_ms,
        "baseline_cpu_ms": baseline_cpu_ms,
    }


def child(quick: bool) -> dict[str, Any]:
    setup_django()
    from django.db import connection

    sizes = QUICK if quick else FULL
    empty_database()
    seeded = seed(sizes)
    _settle()
    log(f"  {connection.vendor}: seeded {seeded.tickets:,} tickets ({seeded.active:,} active), "
        f"{seeded.messages:,} messages in {seeded.seconds:.1f}s")  # fmt: skip
    results = []
    for scenario in scenarios(seeded):
        result = measure(scenario, sizes.repeats)
        log(f"  {connection.vendor}: {result['name']}: page {result['page_ms']:.1f} ms, "
            f"baseline {result['baseline_ms']:.2f} ms")  # fmt: skip
        results.append(result)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT sqlite_version()")
            version = f"SQLite {cursor.fetchone()[0]}"
        else:
            cursor.execute("SHOW server_version")
            version = f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
    return {"vendor": connection.vendor, "version": version, "seeded": asdict(seeded), "scenarios": results}


# --- Parent: servers, children, report -------------------------------------------------------------


def _child(*, quick: bool, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(prefix="bench-inbox-", suffix=".json", dir=VAR_DIR, delete=False) as out:
        path = Path(out.name)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", "--out", str(path)]
    if quick:
        argv.append("--quick")
    try:
        subprocess.run(argv, env=env, cwd=BASE_DIR, check=True)
        return json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)


def _fresh_sqlite() -> str:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{SQLITE_PATH}"


def run(quick: bool, backends: tuple[str, ...]) -> dict[str, Any]:
    from webcare.devtools.postgres import destroy_cluster, ensure_cluster, stop_cluster
    from webcare.devtools.redis_server import free_port, start_redis

    VAR_DIR.mkdir(exist_ok=True)
    redis_port = free_port()
    redis = start_redis(redis_port, REDIS_DIR)
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="webcare.settings",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        CHANNELS_PREFIX=f"bench{redis_port}",
        LOG_LEVEL="WARNING",
        DEBUG="false",
        PYTHONPATH=str(BASE_DIR),
    )
    results = []
    try:
        if "sqlite" in backends:
            log(f"SQLite: {SQLITE_PATH}")
            results.append(_child(quick=quick, env={**env, "DATABASE_URL": _fresh_sqlite()}))
        if "postgres" in backends:
            destroy_cluster(PG_DIR)
            pg_url = ensure_cluster(PG_DIR)
            log(f"PostgreSQL: {pg_url}")
            try:
                results.append(_child(quick=quick, env={**env, "DATABASE_URL": pg_url}))
            finally:
                stop_cluster(PG_DIR)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
    sizes = QUICK if quick else FULL
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "quick": quick,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "sizes": asdict(sizes),
        "backends": results,
    }


def report(results: dict[str, Any]) -> str:
    sizes = results["sizes"]
    lines = [
        f"Inbox list benchmark {results['date']}, {results['cores']} cores, Python {results['python']}"
        + (" (--quick)" if results["quick"] else ""),
        f"{sizes['tickets']:,} tickets, {sizes['queues']} queues, {sizes['agents']} agents, "
        f"{sizes['customers']:,} customers; median of {sizes['repeats']} runs after a warm-up",
    ]
    for backend in results["backends"]:
        seeded = backend["seeded"]
        lines += [
            "",
            f"{backend['version']}: {seeded['tickets']:,} tickets ({seeded['active']:,} active), "
            f"{seeded['messages']:,} messages",
            f"{'scenario':<34} {'rows':>4} {'matches':>7} {'queries':>7} {'page ms':>8} {'(cpu)':>6} "
            f"{'selector ms':>11} {'baseline ms':>11} {'(cpu)':>6} {'page/base':>9} {'(cpu)':>6}",
        ]
        for s in backend["scenarios"]:
            lines.append(
                f"{s['name']:<34} {s['rows']:>4} {s['matches']:>7,} {s['queries']:>7} {s['page_ms']:>8.1f} "
                f"{s['page_cpu_ms']:>6.1f} {s['selector_ms']:>11.1f} {s['baseline_ms']:>11.2f} "
                f"{s['baseline_cpu_ms']:>6.2f} {s['page_ms'] / s['baseline_ms']:>9.1f} "
                f"{s['page_cpu_ms'] / max(s['baseline_cpu_ms'], 0.01):>6.1f}"
            )
    lines += [
        "",
        "page: the whole request (session, middleware, selector, tab counts, template); selector: "
        "inbox_page alone; baseline: the same tickets by primary key with select_related; (cpu): CPU "
        "time of this process (all of the work on SQLite, the client's share on PostgreSQL).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tenth of the sizes (CI smoke test)")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.out.write_text(json.dumps(child(args.quick), default=str))
        return 0
    backends = ("sqlite", "postgres") if args.backend == "both" else (args.backend,)
    results = run(args.quick, backends)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
