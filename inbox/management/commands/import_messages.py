"""``manage.py import_messages FILE.csv --source NAME [--platform P]``: backfill history.

Exit status: 0 when at least one row of the file is in the desk afterwards, counting
rows skipped as duplicates (re-running a finished or interrupted import succeeds);
non-zero when the file cannot be read, lacks required columns, has no data rows, or
every row was rejected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from tqdm import tqdm

from inbox.models import Platform
from inbox.services.importing import (
    REQUIRED_COLUMNS,
    ImportFileError,
    ImportSourceError,
    ImportSummary,
    import_file,
    read_import_file,
    source_for_import,
)

#: Rejections listed on the terminal; the rest are in the dead-letter table.
SHOWN_REJECTIONS = 50


class _BarStream:
    """tqdm redraws with carriage returns; OutputWrapper would end every write with a newline."""

    def __init__(self, out: OutputWrapper) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(text, style_func=lambda s: s, ending="")

    def flush(self) -> None:
        self._out.flush()

    def isatty(self) -> bool:
        return self._out.isatty()


class Command(BaseCommand):
    help = (
        "Import historical conversations from a CSV file through the ingest service. Columns: "
        + ", ".join(REQUIRED_COLUMNS)
        + "; optional conversation_id, lang, author_name, is_private. created_at needs a UTC offset."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, metavar="FILE.csv")
        parser.add_argument(
            "--source",
            required=True,
            metavar="NAME",
            help="Source to import into; created (disabled, never polled) if no source has this name.",
        )
        parser.add_argument(
            "--platform",
            choices=Platform.values,
            help="Platform of the source; must match an existing source. Default for a new one: import.",
        )
        parser.add_argument("--no-progress", action="store_true", help="Do not draw a progress bar.")
        parser.add_argument(
            "--keep-open",
            action="store_true",
            help="Leave tickets of conversations that ended before the reopen window active "
            "(by default they are solved as history).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            # The whole file is checked before the source is created or anything is written.
            parsed = read_import_file(path)
            source = source_for_import(options["source"], options["platform"])
        except (ImportFileError, ImportSourceError) as exc:
            raise CommandError(str(exc)) from exc

        with tqdm(
            total=parsed.records,
            unit="row",
            desc="importing",
            file=_BarStream(self.stderr),
            disable=True if options["no_progress"] else None,
            dynamic_ncols=True,
        ) as bar:

            def progress(done: int, total: int) -> None:
                bar.update(done - bar.n)

            summary = import_file(
                file=parsed, source=source, progress=progress, keep_open=options["keep_open"]
            )

        self._report(summary)
        if summary.nothing_imported:
            if summary.rows == 0:
                raise CommandError(f"nothing could be imported: {path} has no data rows")
            raise CommandError(
                f"nothing could be imported: all {summary.rows} row(s) of {path} were rejected"
            )

    def _report(self, summary: ImportSummary) -> None:
        self.stdout.write(f"imported: {summary.imported}")
        self.stdout.write(f"duplicates skipped: {summary.duplicates}")
        self.stdout.write(f"tickets created: {summary.tickets_created}")
        self.stdout.write(f"tickets solved as history: {summary.tickets_solved}")
        self.stdout.write(f"rejected: {len(summary.rejected)}")
        for rejection in summary.rejected[:SHOWN_REJECTIONS]:
            self.stdout.write(f"line {rejection.line}: {rejection.reason}")
        hidden = len(summary.rejected) - SHOWN_REJECTIONS
        if hidden > 0:
            self.stdout.write(f"... and {hidden} more (see dead letters in admin)")
