"""Backfill historical conversations from a CSV export through the one ingest path.

The file is read completely before anything is written: file-level problems (cannot be
read, not UTF-8, required columns missing) raise :class:`ImportFileError` and leave the
database untouched. Row-level problems become rejections that carry the physical line
where the record starts (1-based, the header is line 1); they are dead-lettered with
origin ``import`` and the line number in the reason.

Rules a file is held to:

* UTF-8, with or without a byte-order mark. Text is stored exactly as written: quoted
  newlines, emoji, RTL and zero-width characters, HTML such as ``&amp;`` or ``<b>``
  (never unescaped).
* ``created_at`` must carry a UTC offset (``Z`` or ``+01:00``). A naive timestamp is
  rejected, not guessed: exports often write local time without saying so, and
  reading it as UTC would shift every ticket, first-response and SLA time silently.
* ``is_brand`` is ``true``/``false`` (also ``yes``/``no``, ``1``/``0``), any case.
* A record with a different number of fields than the header is rejected (an
  unquoted comma or quote in the text); a record with only empty fields is skipped.
* Unknown columns are ignored (kept in the stored raw row).

Rows are ingested in causal order over the whole file (parents before their replies,
otherwise by ``created_at``), in batches, so a reply that comes before its parent in
the file, or carries an earlier clock, still ends on its parent's ticket. Each batch
is its own transaction and ingest is idempotent, so an interrupted import is finished
by running it again.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from inbox.connectors.base import AuthorIdentity, InboundMessage, RejectedItem
from inbox.models import DeadLetter, Message, Platform, Source, Ticket
from inbox.services.ingest import ingest_batch
from inbox.services.normalize import InvalidItem, clean_item
from inbox.services.tickets import tickets_solve_history

BATCH_SIZE = 1000
REQUIRED_COLUMNS = ("message_id", "author", "is_brand", "created_at", "in_reply_to_id", "text")
# ``is_private`` marks private conversations (DMs); without it every row is public.
OPTIONAL_COLUMNS = ("conversation_id", "lang", "author_name", "is_private")
_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_SHOWN = 60

#: Called with (rows handled, rows in the file) as the import goes on.
ProgressCallback = Callable[[int, int], None]


class ImportFileError(ValueError):
    """The file as a whole cannot be imported; the message says why."""


class ImportSourceError(ValueError):
    """The source to import into cannot be used (bad name, unknown or contradicting platform)."""


class RowError(ValueError):
    """One CSV record cannot be turned into a message; the message says why."""


@dataclass(frozen=True, slots=True)
class ImportRejection:
    line: int
    message_id: str
    reason: str


@dataclass(slots=True)
class ImportSummary:
    rows: int = 0
    imported: int = 0
    # Rows already in the desk (earlier import, poll or webhook) or repeated in the file.
    duplicates: int = 0
    tickets_created: int = 0
    # Imported conversations that ended before the reopen window: solved as history.
    tickets_solved: int = 0
    rejected: list[ImportRejection] = field(default_factory=list)

    @property
    def nothing_imported(self) -> bool:
        """No row of the file is in the desk after the import.

        Rows skipped as duplicates count as imported for this purpose: they are in the
        desk, so re-running a finished (or interrupted) import is a success, not a failure.
        """
        return self.imported + self.duplicates == 0


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    message: InboundMessage


@dataclass(frozen=True, slots=True)
class RejectedRow:
    rejection: ImportRejection
    raw: dict[str, Any]


@dataclass(slots=True)
class ImportFile:
    name: str
    # Data records read (blank lines and records of only empty fields are not counted).
    records: int = 0
    rows: list[ImportRow] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)


def source_for_import(name: str, platform: str | None = None) -> Source:
    """The source named ``name``; created disabled (never polled) when there is none."""
    name = name.strip()
    if not name:
        raise ImportSourceError("the source name is empty")
    if platform is not None and platform not in Platform.values:
        raise ImportSourceError(f"unknown platform {platform!r} (one of: {', '.join(Platform.values)})")
    source, created = Source.objects.get_or_create(
        name=name, defaults={"platform": platform or Platform.IMPORT, "enabled": False}
    )
    if not created and platform is not None and source.platform != platform:
        raise ImportSourceError(
            f"source {name!r} exists on platform {source.platform!r}, not {platform!r}; "
            "leave out --platform or choose another source name"
        )
    return source


def import_csv(*, path: Path, source: Source, progress: ProgressCallback | None = None) -> ImportSummary:
    """Read ``path`` and ingest its rows into ``source``. Raises ImportFileError before any write."""
    return import_file(file=read_import_file(path), source=source, progress=progress)


def read_import_file(path: Path) -> ImportFile:
    """Parse and validate the whole file; nothing is written."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ImportFileError(
            f"{path} is not UTF-8 (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8 CSV"
        ) from exc

    imported = ImportFile(name=path.name)
    records = _records(text)
    header = records[0][1] if records else None
    if not isinstance(header, list) or not any(cell.strip() for cell in header):
        detail = f": {header}" if isinstance(header, csv.Error) else ""
        raise ImportFileError(f"{path} has no header row on line 1{detail}")
    columns = header_columns(header)

    max_text_length = settings.WEBCARE["MAX_TEXT_LENGTH"]
    for line, cells in records[1:]:
        if isinstance(cells, csv.Error):
            imported.records += 1
            imported.rejected.append(
                _rejected(line, "", f"malformed CSV: {cells}", {"file": imported.name, "line": line})
            )
            continue
        if not any(cell.strip() for cell in cells):
            continue
        imported.records += 1
        raw: dict[str, Any] = {"file": imported.name, "line": line}
        if len(cells) != len(header):
            raw["cells"] = cells
            reason = (
                f"{len(cells)} fields where the header has {len(header)} "
                "(an unquoted comma, quote or line break in the text?)"
            )
            imported.rejected.append(
                _rejected(line, _cell(cells, columns, "message_id").strip(), reason, raw)
            )
            continue
        raw["row"] = {name: cell for name, cell in zip(header, cells, strict=True) if name.strip()}
        try:
            message = parse_row(cells, columns, raw=raw)
            # The same checks ingest applies, here so the dead letter names the line.
            clean_item(message, max_text_length=max_text_length)
        except (RowError, InvalidItem) as exc:
            imported.rejected.append(
                _rejected(line, _cell(cells, columns, "message_id").strip(), str(exc), raw)
            )
            continue
        imported.rows.append(ImportRow(line=line, message=message))
    return imported


def import_file(
    *,
    file: ImportFile,
    source: Source,
    progress: ProgressCallback | None = None,
    batch_size: int = BATCH_SIZE,
    keep_open: bool = False,
) -> ImportSummary:
    """Ingest a parsed file into ``source`` in batches; dead-letter its rejected rows.

    Conversations whose last message is older than the reopen window are history:
    their tickets are solved (unless ``keep_open``), so a backfill does not flood the
    queues; a customer writing again later starts a new ticket linked to the old one.
    """
    summary = ImportSummary(rows=file.records)
    total = file.records
    done = 0
    if progress is not None:
        progress(done, total)

    for chunk in _chunks(file.rejected, batch_size):
        ingest_batch(
            source=source,
            messages=[],
            rejected=[
                RejectedItem(
                    reason=f"line {r.rejection.line}: {r.rejection.reason}",
                    raw=r.raw,
                    external_id=r.rejection.message_id,
                )
                for r in chunk
            ],
            origin=DeadLetter.Origin.IMPORT,
        )
        summary.rejected.extend(r.rejection for r in chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)

    touched_messages: list[int] = []
    for chunk in _chunks(causal_order(file.rows), batch_size):
        # No push assignment per batch: history is solved below, and what stays active is
        # handed out by one sweep of its queues at the end.
        result = ingest_batch(
            source=source,
            messages=[row.message for row in chunk],
            origin=DeadLetter.Origin.IMPORT,
            assign=False,
        )
        summary.imported += result.created
        # An echo is a brand row already stored as an outbound reply: also already there.
        summary.duplicates += result.duplicates + result.echoes
        summary.tickets_created += result.tickets_created
        touched_messages.extend(result.message_ids)
        for rejection in result.rejected:
            # Only items handed over as ``rejected=`` lack an index, and none are here.
            assert rejection.index is not None
            summary.rejected.append(
                ImportRejection(
                    line=chunk[rejection.index].line,
                    message_id=rejection.external_id,
                    reason=rejection.reason,
                )
            )
        done += len(chunk)
        if progress is not None:
            progress(done, total)

    if not keep_open and touched_messages:
        ticket_ids: set[int] = set()
        for ids in _chunks(touched_messages, 900):
            ticket_ids.update(
                Message.objects.filter(pk__in=ids, ticket__isnull=False).values_list("ticket_id", flat=True)
            )
        summary.tickets_solved = tickets_solve_history(
            ticket_ids=ticket_ids,
            quiet_since=timezone.now() - settings.WEBCARE["REOPEN_WINDOW"],
            reason="imported history",
        )
    if touched_messages:
        from inbox.tasks.assignment import sweep_queues_on_commit

        active_queues: set[int] = set()
        for ids in _chunks(touched_messages, 900):
            active_queues.update(
                Ticket.objects.filter(
                    messages__pk__in=ids, status__in=Ticket.ACTIVE_STATUSES, queue__isnull=False
                ).values_list("queue_id", flat=True)
            )
        sweep_queues_on_commit(active_queues)
    summary.rejected.sort(key=lambda r: r.line)
    return summary


def header_columns(header: Sequence[str]) -> dict[str, int]:
    """Known column name → position. Raises ImportFileError for missing or repeated columns."""
    columns: dict[str, int] = {}
    for position, name in enumerate(header):
        key = name.strip().lower()
        if key not in REQUIRED_COLUMNS and key not in OPTIONAL_COLUMNS:
            continue
        if key in columns:
            raise ImportFileError(f"column {key!r} appears twice in the header")
        columns[key] = position
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ImportFileError(
            f"required column(s) missing: {', '.join(missing)} "
            f"(the header needs {', '.join(REQUIRED_COLUMNS)})"
        )
    return columns


def parse_row(cells: Sequence[str], columns: dict[str, int], *, raw: dict[str, Any]) -> InboundMessage:
    """One CSV record as an InboundMessage. Raises RowError with the reason."""
    message_id = _cell(cells, columns, "message_id").strip()
    if not message_id:
        raise RowError("message_id is empty")
    author = _cell(cells, columns, "author").strip()
    if not author:
        raise RowError("author is empty")
    language = _cell(cells, columns, "lang").strip()
    return InboundMessage(
        external_id=message_id,
        author=AuthorIdentity(
            external_id=author,
            handle=author,
            display_name=_cell(cells, columns, "author_name").strip(),
            language=language,
        ),
        text=_cell(cells, columns, "text"),
        created_at=parse_timestamp(_cell(cells, columns, "created_at")),
        is_public=not parse_flag(_cell(cells, columns, "is_private"), "is_private", default=False),
        in_reply_to_external_id=_cell(cells, columns, "in_reply_to_id").strip(),
        conversation_id=_cell(cells, columns, "conversation_id").strip(),
        author_is_brand=parse_flag(_cell(cells, columns, "is_brand"), "is_brand"),
        language=language,
        raw=raw,
    )


def parse_timestamp(value: str) -> datetime:
    """An ISO-8601 date and time with a UTC offset."""
    text = value.strip()
    if not text:
        raise RowError("created_at is empty")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise RowError(f"created_at is not an ISO-8601 date and time: {_show(text)}") from exc
    if moment.utcoffset() is None:
        raise RowError(
            f"created_at has no UTC offset: {_show(text)} (write it as e.g. 2024-03-01T09:15:00Z "
            "or 2024-03-01T10:15:00+01:00)"
        )
    return moment


def parse_flag(value: str, column: str, *, default: bool | None = None) -> bool:
    text = value.strip().lower()
    if not text and default is not None:
        return default
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RowError(f"{column} must be true or false, got {_show(value)}")


def causal_order(rows: Sequence[ImportRow]) -> list[ImportRow]:
    """Rows by ``created_at`` (then line), except that a row's parent in the file comes first.

    Parents are found by message_id; where an id repeats, its earliest row is the parent.
    A cycle of replies is broken where it is entered.
    """
    by_time = sorted(rows, key=lambda row: (row.message.created_at, row.line))
    first: dict[str, ImportRow] = {}
    for row in by_time:
        first.setdefault(row.message.external_id, row)
    placed: set[int] = set()
    ordered: list[ImportRow] = []
    for row in by_time:
        # Walk up to the first ancestor not yet placed, then place the chain top-down.
        chain: list[ImportRow] = []
        current: ImportRow | None = row
        while current is not None and current.line not in placed:
            placed.add(current.line)
            chain.append(current)
            parent_id = current.message.in_reply_to_external_id
            current = first.get(parent_id) if parent_id else None
        ordered.extend(reversed(chain))
    return ordered


def _records(text: str) -> list[tuple[int, list[str] | csv.Error]]:
    """(line where the record starts, its fields or the parse error) for every record."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[tuple[int, list[str] | csv.Error]] = []
    limit = csv.field_size_limit()
    # A text longer than the default field limit is still one record; the length
    # check rejects it with a reason instead of the reader giving up on the file.
    csv.field_size_limit(max(limit, 10 * settings.WEBCARE["MAX_TEXT_LENGTH"]))
    try:
        while True:
            start = reader.line_num + 1
            try:
                records.append((start, next(reader)))
            except StopIteration:
                return records
            except csv.Error as exc:
                reason = str(exc)
                if reason == "unexpected end of data":
                    reason = "a quoted field is never closed (it runs to the end of the file)"
                # The reader goes on at the next line after an error.
                records.append((start, csv.Error(reason)))
    finally:
        csv.field_size_limit(limit)


def _cell(cells: Sequence[str], columns: dict[str, int], name: str) -> str:
    position = columns.get(name)
    if position is None or position >= len(cells):
        return ""
    return cells[position]


def _rejected(line: int, message_id: str, reason: str, raw: dict[str, Any]) -> RejectedRow:
    return RejectedRow(
        rejection=ImportRejection(line=line, message_id=message_id[:200], reason=reason), raw=raw
    )


def _show(value: str) -> str:
    return repr(value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…")


def _chunks(values: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
