"""``manage.py seed_demo``: demo queues, team, reply templates and a simulated stream.

Demo-only data for trying the desk; never run it against a production database. All demo users
share one password: ``--password``, else the DEMO_PASSWORD environment variable, else
"webcare-demo". It is stored only as the users' password hashes.
"""

from __future__ import annotations

import os
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand

from inbox.services.demo import DemoSeedResult, demo_seed

DEFAULT_DEMO_PASSWORD = "webcare-demo"


class Command(BaseCommand):
    help = (
        "Create demo-only data (queues, a team lead and four agents, reply templates in five "
        "languages, a simulated stream). Safe to run again: it only adds what is missing."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--password",
            help="Password for demo users it creates (default: $DEMO_PASSWORD, else "
            f'"{DEFAULT_DEMO_PASSWORD}").',
        )
        parser.add_argument(
            "--reset-passwords",
            action="store_true",
            help="Also set the password on demo users that already exist.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"] or os.environ.get("DEMO_PASSWORD") or DEFAULT_DEMO_PASSWORD
        result = demo_seed(password=password, reset_passwords=options["reset_passwords"])
        self._report(result, password_is_default=password == DEFAULT_DEMO_PASSWORD)

    def _report(self, result: DemoSeedResult, *, password_is_default: bool) -> None:
        self.stdout.write(self.style.WARNING("Demo-only data: do not use on a production database."))
        self._write_section("Created", result.created, with_keys=True)
        self._write_section("Already present", result.present, with_keys=False)
        for note in result.notes:
            self.stdout.write(self.style.WARNING(note))

        self.stdout.write("Demo logins:")
        for login in result.logins:
            self.stdout.write(f"  {login.username:<8} {login.role:<6} queues: {', '.join(login.queues)}")
        if result.passwords_set:
            # Echo only the well-known default; a chosen password stays off the terminal log.
            shown = (
                f'"{DEFAULT_DEMO_PASSWORD}"' if password_is_default else "from --password or DEMO_PASSWORD"
            )
            self.stdout.write(f"Password set for {', '.join(result.passwords_set)}: {shown}.")
        else:
            self.stdout.write("Passwords unchanged (use --reset-passwords to set them again).")

        summary = f"{result.created_count} created" if result.created_count else "nothing to create"
        self.stdout.write(self.style.SUCCESS(f"Demo data ready: {summary}."))

    def _write_section(self, title: str, items: dict[str, list[str]], *, with_keys: bool) -> None:
        if not items:
            self.stdout.write(f"{title}: none")
            return
        self.stdout.write(f"{title}:")
        for kind, keys in items.items():
            listed = f": {', '.join(keys)}" if with_keys else ""
            self.stdout.write(f"  {len(keys):>3} {kind}{listed}")
