"""Read one e-mail from standard input and store it as the answer to an escalation.

For a mail server that delivers to a program (Postfix ``pipe``/aliases, procmail, Exim).
Exit codes follow sysexits.h, which those servers understand: 0 stored or deliberately
ignored (duplicate, auto-reply), 65 refused (the sender gets a bounce with the reason),
75 temporary failure (the server keeps the mail and tries again).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from inbox.services.escalations import (
    MAX_EMAIL_BYTES,
    EscalationError,
    InboundEmailIgnored,
    escalation_answer_from_email,
)

EX_DATAERR = 65
EX_TEMPFAIL = 75


class Command(BaseCommand):
    help = "Store an e-mail reply (RFC 5322, read from stdin) as the answer to its escalation."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--file", default="-", help="Read the message from this file instead of standard input."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        raw = self._read(options["file"])
        try:
            escalation = escalation_answer_from_email(raw=raw)
        except InboundEmailIgnored as exc:
            self.stdout.write(f"ignored: {exc}")
            return
        except EscalationError as exc:
            raise CommandError(f"not stored: {exc}", returncode=EX_DATAERR) from exc
        except DatabaseError as exc:
            raise CommandError(f"temporary failure, try again later: {exc}", returncode=EX_TEMPFAIL) from exc
        self.stdout.write(
            f"escalation {escalation.pk} on ticket #{escalation.ticket_id}: answered by {escalation.answered_by}"
        )

    def _read(self, name: str) -> bytes:
        if name == "-":
            raw = sys.stdin.buffer.read(MAX_EMAIL_BYTES + 1)
        else:
            with Path(name).open("rb") as handle:
                raw = handle.read(MAX_EMAIL_BYTES + 1)
        if not raw.strip():
            raise CommandError("not stored: no message on standard input", returncode=EX_DATAERR)
        if len(raw) > MAX_EMAIL_BYTES:
            raise CommandError(
                f"not stored: the message is larger than {MAX_EMAIL_BYTES} bytes", returncode=EX_DATAERR
            )
        return raw
