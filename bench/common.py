"""What the benchmark scripts share: logging, Django in a child process, an empty
database, and loading seed rows with the database driver (COPY on PostgreSQL,
executemany on SQLite)."""

from __future__ import annotations

import json
import os
import random
import sys
from datetime import UTC, datetime
from typing import Any


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def setup_django() -> None:
    """Configure Django from the environment (DATABASE_URL) and migrate."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webcare.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def empty_database() -> None:
    """Empty every table and restart the ids."""
    from django.core.management.color import no_style
    from django.db import connection

    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    connection.ops.execute_sql_flush(
        connection.ops.sql_flush(no_style(), tables, reset_sequences=True, allow_cascade=True)
    )


def weighted(rng: random.Random, mix: dict) -> Any:
    """A key of ``mix`` drawn with the values as weights."""
    return rng.choices(list(mix), weights=list(mix.values()))[0]


def load_rows(model, rows: list[dict[str, Any]], *, now: datetime | None = None) -> None:
    """Insert ``rows`` (attname → value, ids included) with the driver: COPY on PostgreSQL,
    executemany on SQLite. Unnamed columns get the field's default (``now`` for auto times)."""
    from django.db import connection, transaction

    now = now or datetime.now(UTC)
    fields = model._meta.concrete_fields
    table = model._meta.db_table
    sqlite = connection.vendor == "sqlite"

    def value(field, row: dict[str, Any]) -> Any:
        if field.attname in row:
            found = row[field.attname]
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            found = now
        else:
            found = field.get_default()
        if found is None:
            return None
        kind = field.get_internal_type()
        if kind == "JSONField":
            return json.dumps(found)
        if sqlite and kind == "DateTimeField":
            return connection.ops.adapt_datetimefield_value(found)
        return found

    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    with transaction.atomic(), connection.cursor() as cursor:
        if sqlite:
            marks = ", ".join("?" for _ in fields)
            sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
            for start in range(0, len(rows), 5000):
                cursor.executemany(sql, [[value(f, row) for f in fields] for row in rows[start : start + 5000]])
        else:
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([value(f, row) for f in fields])
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
