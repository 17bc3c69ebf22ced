"""Backlog sweep throughput on PostgreSQL, beside a plain-UPDATE baseline measured in the same run.

    .venv/bin/python bench/backlog_sweep.py [--quick] [--json FILE]

Two scenarios, each on a fresh database holding one push queue with 50,000 waiting tickets
(priorities and ten languages mixed, a tenth without language) and 300 online agents who
speak one to three languages:

* **drain**: capacities of 150 to 250, so the agents can absorb (nearly) the whole backlog;
  the sweep assigns tens of thousands of tickets.
* **fill**: capacities of 6 to 12, as on a real floor: the sweep fills every agent and stops,
  passing over the tickets nobody with room may take.

What is timed: ``assignment_sweep`` itself, as production runs it: short transactions of
1,000 tickets with row locks (SKIP LOCKED) on agents and tickets, the language rule and
stickiness, one ``ticket.assigned`` TicketEvent per ticket, and the realtime push to a live
Redis where every agent, the queue and the leads have a desk open.

The baseline: the very (ticket, agent) pairs the sweep produced, written again as plain
``UPDATE ... SET assignee_id, assigned_at WHERE id`` statements through the driver
(psycopg ``executemany``), 1,000 per transaction, with no reads, no locks, no events and no
push. The ratio says what the sweep's safety and audit cost over bare writes.

The script starts what it needs: a PostgreSQL cluster in ``var/bench-sweep-pg`` and a
private Redis; the measurement runs in a child process configured through DATABASE_URL
like the app. ``--quick`` shrinks the sizes (CI smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
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
PG_DIR = VAR_DIR / "bench-sweep-pg"
REDIS_DIR = VAR_DIR / "bench-sweep-redis"
SEED = 20261102
# Ticket languages and how often they occur (the desk's ten, and none).
LANGUAGE_MIX = {
    "nl": 30, "en": 30, "fr": 6, "de": 6, "es": 5, "it": 3, "pt": 3, "ja": 2, "zh": 2, "ko": 3, "": 10,
}  # fmt: skip
PRIORITY_MIX = {0: 10, 1: 70, 2: 15, 3: 5}


@dataclass(frozen=True)
class Scenario:
    name: str
    tickets: int
    agents: int
    capacity: tuple[int, int]


def scenarios(quick: bool) -> list[Scenario]:
    tickets, agents = (5_000, 30) if quick else (50_000, 300)
    return [
        Scenario("drain", tickets, agents, (150, 250)),
        Scenario("fill", tickets, agents, (6, 12)),
    ]


# --- Child: one scenario on PostgreSQL -----------------------------------------------------------


def prefill(scenario: Scenario) -> int:
    """The queue, its online agents and its waiting tickets. Returns the queue id."""
    from django.contrib.auth import get_user_model

    from inbox.models import AgentProfile, Contact, Customer, Platform, Queue, Source, Ticket

    rng = random.Random(f"{SEED}-{scenario.name}")
    queue = Queue.objects.create(name="Crisis", slug="crisis", is_default=True)
    source = Source.objects.create(
        name="bench", platform=Platform.MASTODON, account_id="brand", default_queue=queue
    )
    spoken = [code for code in LANGUAGE_MIX if code]
    users, profiles, members = [], [], []
    for n in range(1, scenario.agents + 1):
        # Everyone speaks a main language (nl or en mostly), a third one or two more.
        languages = {weighted(rng, {"nl": 45, "en": 45, "fr": 3, "de": 3, "es": 2, "ja": 1, "zh": 1})}
        while len(languages) < 3 and rng.random() < 0.35:
            languages.add(rng.choice(spoken))
        users.append({"id": n, "username": f"agent{n}", "password": "!", "first_name": f"Agent{n}"})
        profiles.append({
            "id": n, "user_id": n, "languages": sorted(languages), "presence": "online",
            "capacity": rng.randint(*scenario.capacity),
        })  # fmt: skip
        members.append({"id": n, "queue_id": queue.pk, "user_id": n})
    load_rows(get_user_model(), users)
    load_rows(AgentProfile, profiles)
    load_rows(Queue.members.through, members)
    start = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    customers, contacts, tickets = [], [], []
    for n in range(1, scenario.tickets + 1):
        at = start + timedelta(seconds=n * 0.1 + rng.random())
        customers.append({"id": n, "display_name": f"Customer {n}"})
        contacts.append(
            {"id": n, "platform": "mastodon", "external_id": f"c{n}", "handle": f"c{n}", "customer_id": n}
        )
        tickets.append({
            "id": n, "source_id": source.pk, "queue_id": queue.pk, "customer_id": n, "contact_id": n,
            "status": "new", "priority": weighted(rng, PRIORITY_MIX), "language": weighted(rng, LANGUAGE_MIX),
            "subject": "flight delayed, where is my bag?", "opened_at": at, "last_message_at": at,
            "last_customer_message_at": at,
        })  # fmt: skip
    load_rows(Customer, customers)
    load_rows(Contact, contacts)
    load_rows(Ticket, tickets)
    return queue.pk


def _settle() -> None:
    """Fresh statistics, all-visible pages and no pending checkpoint, as on a database in use."""
    import psycopg
    from django.db import connection

    s = connection.settings_dict
    with psycopg.connect(
        host=s["HOST"], port=s["PORT"], user="postgres", dbname=s["NAME"], autocommit=True
    ) as su:
        su.execute("VACUUM ANALYZE")
        su.execute("CHECKPOINT")


def _open_desks(queue_id: int, agent_ids: list[int]):
    """Every agent, the queue and the leads have a desk open: the push goes somewhere."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from inbox.realtime import groups

    layer = get_channel_layer()

    async def join() -> None:
        await layer.group_add(groups.LEADS, "bench.lead")
        await layer.group_add(groups.queue(queue_id), "bench.queue")
        for agent_id in agent_ids:
            await layer.group_add(groups.agent(agent_id), f"bench.agent{agent_id}")

    async_to_sync(join)()


def _check(queue_id: int) -> dict[str, int]:
    """The sweep's result must be right, or its speed means nothing."""
    from django.db.models import Count

    from inbox.models import Ticket, TicketEvent
    from inbox.selectors.agents import queue_agent_states

    states = queue_agent_states(queue_id=queue_id)
    over = [s.user_id for s in states if s.load > s.capacity]
    if over:
        raise RuntimeError(f"agents over capacity: {over[:5]}")
    doubled = (
        TicketEvent.objects.filter(type="ticket.assigned")
        .values("ticket_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    if doubled.exists():
        raise RuntimeError("a ticket was assigned twice")
    assigned = Ticket.objects.filter(queue_id=queue_id, assignee__isnull=False).count()
    if TicketEvent.objects.filter(type="ticket.assigned").count() != assigned:
        raise RuntimeError("events and assignments disagree")
    return {
        "assigned": assigned,
        "waiting": Ticket.objects.filter(queue_id=queue_id, assignee__isnull=True).count(),
        "capacity": sum(s.capacity for s in states),
    }


def _baseline(pairs: list[tuple[int, int]], at: datetime, *, batch: int) -> float:
    """Seconds to write ``pairs`` (agent, ticket) as plain UPDATEs, ``batch`` per transaction."""
    import psycopg
    from django.db import connection

    from inbox.models import Ticket

    table = Ticket._meta.db_table
    s = connection.settings_dict
    with psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"]) as raw:
        cursor = raw.cursor()
        start = time.perf_counter()
        for index in range(0, len(pairs), batch):
            cursor.executemany(
                f"UPDATE {table} SET assignee_id = %s, assigned_at = %s WHERE id = %s",
                [(agent, at, ticket) for agent, ticket in pairs[index : index + batch]],
            )
            raw.commit()
        return time.perf_counter() - start


def _time_pushes() -> dict[str, float]:
    """Measure the realtime push inside the sweep (it is part of the timed work, not removed)."""
    from inbox.realtime import publish

    spent = {"seconds": 0.0, "calls": 0}
    send_now = publish.send_now

    def timed(by_group: dict[str, list[dict]]) -> None:
        start = time.perf_counter()
        try:
            send_now(by_group)
        finally:
            spent["seconds"] += time.perf_counter() - start
            spent["calls"] += 1

    publish.send_now = timed
    return spent


def child(scenario: Scenario) -> dict[str, Any]:
    setup_django()
    from django.db import connection

    from inbox.models import AgentProfile, Ticket, TicketEvent
    from inbox.services.assignment import SWEEP_BATCH_SIZE, assignment_sweep

    empty_database()
    started = time.perf_counter()
    queue_id = prefill(scenario)
    _settle()
    log(f"  {scenario.name}: prefilled {scenario.tickets:,} tickets and {scenario.agents} agents in "
        f"{time.perf_counter() - started:.1f}s")  # fmt: skip
    _open_desks(queue_id, list(AgentProfile.objects.values_list("user_id", flat=True)))

    push = _time_pushes()
    start = time.perf_counter()
    result = assignment_sweep(queue_id=queue_id)
    sweep_seconds = time.perf_counter() - start
    checked = _check(queue_id)
    if checked["assigned"] != result.assigned:
        raise RuntimeError(f"sweep says {result.assigned}, database holds {checked['assigned']}")
    log(f"  {scenario.name}: sweep assigned {result.assigned:,} in {sweep_seconds:.2f}s")

    # The same writes as bare statements, on the same rows, after putting them back.
    pairs = list(
        Ticket.objects.filter(assignee__isnull=False)
        .order_by("assigned_at", "pk")
        .values_list("assignee_id", "pk")
    )
    Ticket.objects.update(assignee=None, assigned_at=None)
    TicketEvent.objects.all().delete()
    _settle()
    baseline_seconds = _baseline(pairs, datetime.now(UTC), batch=SWEEP_BATCH_SIZE)
    log(f"  {scenario.name}: baseline {len(pairs):,} UPDATEs in {baseline_seconds:.2f}s")
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0].split()[0]
    return {
        **asdict(scenario),
        **checked,
        "postgres": version,
        "batch_size": SWEEP_BATCH_SIZE,
        "sweep_seconds": sweep_seconds,
        "sweep_per_s": result.assigned / sweep_seconds,
        "push_seconds": push["seconds"],
        "pushes": push["calls"],
        "baseline_seconds": baseline_seconds,
        "baseline_per_s": len(pairs) / baseline_seconds,
    }


# --- Parent: servers, children, report -------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    from webcare.devtools.postgres import ensure_cluster, stop_cluster
    from webcare.devtools.redis_server import free_port, start_redis

    VAR_DIR.mkdir(exist_ok=True)
    redis_port = free_port()
    redis = start_redis(redis_port, REDIS_DIR)
    pg_url = ensure_cluster(PG_DIR)
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="webcare.settings",
        DATABASE_URL=pg_url,
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        CHANNELS_PREFIX=f"bench{redis_port}",
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(BASE_DIR),
    )
    runs = []
    try:
        log(f"PostgreSQL: {pg_url}")
        for scenario in scenarios(quick):
            runs.append(_child(scenario.name, quick=quick, env=env))
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        stop_cluster(PG_DIR)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "quick": quick,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
    }


def _child(name: str, *, quick: bool, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(prefix="bench-sweep-", suffix=".json", dir=VAR_DIR, delete=False) as out:
        path = Path(out.name)
    argv = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--out", str(path)]
    if quick:
        argv.append("--quick")
    try:
        subprocess.run(argv, env=env, cwd=BASE_DIR, check=True)
        return json.loads(path.read_text())
    finally:
        path.unlink(missing_ok=True)


def report(results: dict[str, Any]) -> str:
    lines = [
        f"Backlog sweep benchmark {results['date']}, {results['cores']} cores, Python {results['python']}, "
        f"PostgreSQL {results['runs'][0]['postgres']}" + (" (--quick)" if results["quick"] else ""),
        "",
        f"{'scenario':<8} {'waiting':>8} {'agents':>6} {'capacity':>9} {'assigned':>9} {'sweep s':>8} "
        f"{'sweep t/s':>10} {'UPDATE t/s':>11} {'ratio':>7} {'push s':>7}",
    ]
    for r in results["runs"]:
        lines.append(
            f"{r['name']:<8} {r['tickets']:>8,} {r['agents']:>6} {r['capacity']:>9,} {r['assigned']:>9,} "
            f"{r['sweep_seconds']:>8.2f} {r['sweep_per_s']:>10,.0f} {r['baseline_per_s']:>11,.0f} "
            f"{r['sweep_per_s'] / r['baseline_per_s']:>7.1%} {r['push_seconds']:>7.2f}"
        )
    lines += [
        "",
        "sweep t/s: tickets assigned per second by assignment_sweep (locks, rules, events, push);",
        "UPDATE t/s: the same assignments as plain UPDATE statements via psycopg, in transactions of the",
        f"sweep's batch size ({results['runs'][0]['batch_size']:,} tickets);",
        "ratio: sweep / baseline; push s: of the sweep's time, the realtime push after each commit.",
    ]
    if results["quick"]:
        lines.append("(--quick sizes: a smoke test, not the numbers to quote)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute (CI smoke)")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        scenario = next(s for s in scenarios(args.quick) if s.name == args.child)
        args.out.write_text(json.dumps(child(scenario)))
        return 0
    started = time.perf_counter()
    results = run(args.quick)
    results["wall_seconds"] = time.perf_counter() - started
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
