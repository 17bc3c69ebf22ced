import csv
import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from inbox.models import DeadLetter, Message, Platform, Source, Ticket, TicketEvent
from inbox.services.importing import import_csv
from tests.factories import SourceFactory

pytestmark = pytest.mark.django_db

NASTY = Path(__file__).resolve().parent.parent / "fixtures" / "import_nasty.csv"
HEADER = "message_id,author,is_brand,created_at,in_reply_to_id,text"

NASTY_REJECTIONS = [
    "line 9: created_at is not an ISO-8601 date and time: 'yesterday'",
    "line 10: message_id is empty",
    "line 11: is_brand must be true or false, got 'maybe'",
    "line 12: created_at has no UTC offset: '2024-03-01 12:10:00' "
    "(write it as e.g. 2024-03-01T09:15:00Z or 2024-03-01T10:15:00+01:00)",
    "line 17: 13 fields where the header has 11 (an unquoted comma, quote or line break in the text?)",
]


class TTYStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(path: Path | str, *args: str, source: str = "history") -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_messages", str(path), "--source", source, *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def summary_lines(
    imported: int, duplicates: int, tickets: int, rejections: list[str], *, solved: int | None = None
) -> list[str]:
    """The summary; fixture conversations are years old, so every ticket is solved as history."""
    return [
        f"imported: {imported}",
        f"duplicates skipped: {duplicates}",
        f"tickets created: {tickets}",
        f"tickets solved as history: {tickets if solved is None else solved}",
        f"rejected: {len(rejections)}",
        *rejections,
    ]


def write_csv(path: Path, lines: list[str], *, bom: bool = False, newline: str = "\n") -> Path:
    path.write_text(("\ufeff" if bom else "") + newline.join(lines) + newline, encoding="utf-8", newline="")
    return path


def message(external_id: str) -> Message:
    return Message.objects.get(external_id=external_id)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_nasty_file_imports_every_good_row_and_reports_the_rest_by_line(default_queue):
    out, err = run(NASTY)

    assert out.splitlines() == summary_lines(10, 1, 6, NASTY_REJECTIONS)
    assert err == ""  # no TTY, no bar
    source = Source.objects.get(name="history")
    assert (source.platform, source.enabled) == (Platform.IMPORT, False)
    assert sorted(Message.objects.values_list("external_id", flat=True)) == [
        "b1", "c1", "c2", "d1", "d2", "d3", "e1", "h1", "o1", "r1",
    ]  # fmt: skip
    assert Ticket.objects.count() == 6


def test_nasty_texts_are_stored_exactly_as_written(default_queue):
    run(NASTY)

    texts = dict(Message.objects.values_list("external_id", "text"))
    assert texts["c1"] == 'My bag didn\'t arrive.\nFlight KL1234, row 12 — "priority" tag lost'
    assert texts["b1"] == "Sorry Anna! DM us your file ref &amp; we'll check <b>now</b> &lt;3"
    assert texts["e1"] == (
        "\U0001f468\u200d\U0001f469\u200d\U0001f467 family of 4 \u2708\ufe0f stuck, "
        "\U0001f3f3\ufe0f\u200d\U0001f308 zero\u200bwidth\u200cjoin\ufeffhere"
    )
    assert texts["r1"] == "رحلتي متأخرة \u200fKL1234\u200f \U0001f621"
    assert texts["d3"] == "  KL 0605  "
    assert texts["h1"] == "<script>alert(&quot;x&quot;)</script> &amp;&amp; &#128512; &nbsp;"
    layla = message("r1")
    assert (layla.language, layla.author_contact.display_name, layla.author_contact.handle) == (
        "ar", "ليلى", "layla",
    )  # fmt: skip
    assert message("h1").created_at == datetime(2024, 3, 1, 19, 0, 0, 500000, tzinfo=UTC)
    # The first row with an id wins; the repeat on line 13 is a duplicate.
    assert message("c1").raw["line"] == 3
    assert message("c1").raw["row"]["export_note"] == "from the 2024 export"


def test_reply_before_parent_and_brand_reply_thread_onto_one_ticket(default_queue):
    run(NASTY)

    ticket = message("c1").ticket
    assert message("c2").ticket == ticket == message("b1").ticket
    assert message("c2").in_reply_to == message("c1")
    brand = message("b1")
    assert (brand.direction, brand.delivery_state, brand.author_contact) == (
        Message.Direction.OUTBOUND, Message.Delivery.SENT, None,
    )  # fmt: skip
    assert ticket.opened_at == at("2024-03-01T08:00:00+00:00")
    assert ticket.first_response_at == at("2024-03-01T08:20:00+00:00")
    assert ticket.last_customer_message_at == at("2024-03-01T08:10:00+00:00")
    assert ticket.is_private is False
    # A reply whose parent was never exported opens a ticket of its own.
    assert message("o1").ticket.messages.count() == 1


def test_dm_conversation_is_one_private_ticket_with_its_first_response(default_queue):
    run(NASTY)

    ticket = message("d1").ticket
    assert message("d2").ticket == ticket == message("d3").ticket
    assert ticket.is_private is True
    assert ticket.first_response_at == at("2024-03-02T08:30:00+00:00")
    assert set(ticket.messages.values_list("is_public", flat=True)) == {False}


def test_rejected_rows_are_dead_lettered_with_their_line(default_queue):
    run(NASTY)

    source = Source.objects.get(name="history")
    dead = list(DeadLetter.objects.order_by("id").values_list("origin", "source", "external_id", "reason"))
    assert dead == [
        ("import", source.pk, "bad1", NASTY_REJECTIONS[0]),
        ("import", source.pk, "", NASTY_REJECTIONS[1]),
        ("import", source.pk, "m1", NASTY_REJECTIONS[2]),
        ("import", source.pk, "n1", NASTY_REJECTIONS[3]),
        ("import", source.pk, "w1", NASTY_REJECTIONS[4]),
    ]
    assert '"line": 11' in DeadLetter.objects.get(external_id="m1").payload


def test_second_import_of_the_same_file_reports_everything_as_duplicates(default_queue):
    run(NASTY)
    before = (Message.objects.count(), Ticket.objects.count())

    out, _ = run(NASTY)  # succeeds: every good row is already in the desk

    assert out.splitlines() == summary_lines(0, 11, 0, NASTY_REJECTIONS)
    assert (Message.objects.count(), Ticket.objects.count()) == before == (10, 6)


def test_import_into_an_existing_source_keeps_it(default_queue):
    existing = SourceFactory(name="klm-x", platform=Platform.X, enabled=True)

    run(NASTY, "--platform", "x", source="klm-x")

    assert Source.objects.count() == 1
    assert Message.objects.filter(source=existing).count() == 10
    existing.refresh_from_db()
    assert existing.enabled is True


def test_platform_that_contradicts_the_existing_source_is_refused(default_queue):
    SourceFactory(name="klm-x", platform=Platform.X)

    with pytest.raises(CommandError, match="exists on platform 'x', not 'mastodon'"):
        run(NASTY, "--platform", "mastodon", source="klm-x")
    assert Message.objects.count() == 0


def test_new_source_takes_the_given_platform(default_queue):
    run(NASTY, "--platform", "bluesky", source="bsky-history")

    source = Source.objects.get(name="bsky-history")
    assert (source.platform, source.enabled) == (Platform.BLUESKY, False)


def test_missing_file_fails_without_creating_a_source(tmp_path):
    with pytest.raises(CommandError, match="cannot read .*nope.csv: No such file or directory") as exc:
        run(tmp_path / "nope.csv")
    assert exc.value.returncode == 1
    assert Source.objects.count() == 0


def test_missing_required_columns_fail_before_anything_is_written(tmp_path):
    path = write_csv(tmp_path / "cols.csv", ["message_id,author,text", "a1,anna,hello"])

    with pytest.raises(
        CommandError,
        match=r"required column\(s\) missing: is_brand, created_at, in_reply_to_id",
    ):
        run(path)
    assert (Source.objects.count(), Message.objects.count(), DeadLetter.objects.count()) == (0, 0, 0)


def test_file_that_is_not_utf8_fails_with_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(
        f"{HEADER}\na1,anna,false,2024-03-01T09:00:00Z,,ok\na2,jos\xe9,false,x,,no\n".encode("latin-1")
    )

    with pytest.raises(CommandError, match="is not UTF-8 \\(byte 0xe9 on line 3\\)"):
        run(path)


def test_header_only_file_fails_as_nothing_to_import(tmp_path, default_queue):
    path = write_csv(tmp_path / "empty.csv", [HEADER])

    with pytest.raises(CommandError, match="has no data rows"):
        run(path)


def test_file_with_only_rejected_rows_fails_after_reporting_them(tmp_path, default_queue):
    path = write_csv(
        tmp_path / "bad.csv",
        [HEADER, "a1,anna,false,2024-13-01T09:00:00Z,,bad month", "a2,anna,perhaps,2024-03-01T09:00:00Z,,x"],
    )
    out = io.StringIO()

    with pytest.raises(CommandError, match="all 2 row\\(s\\) of .*bad.csv were rejected"):
        call_command("import_messages", str(path), "--source", "s", stdout=out, stderr=io.StringIO())
    assert out.getvalue().splitlines() == summary_lines(
        0, 0, 0,
        [
            "line 2: created_at is not an ISO-8601 date and time: '2024-13-01T09:00:00Z'",
            "line 3: is_brand must be true or false, got 'perhaps'",
        ],
    )  # fmt: skip
    assert DeadLetter.objects.filter(origin=DeadLetter.Origin.IMPORT).count() == 2


def test_crlf_file_without_bom_and_broken_quoting_keep_line_numbers(tmp_path, default_queue):
    path = write_csv(
        tmp_path / "crlf.csv",
        [
            "Message_ID , Author,IS_BRAND,created_at,in_reply_to_id,text",
            'a1,anna,false,2024-03-01T09:00:00Z,,"two\r\nlines"',
            'a2,anna,false,2024-03-01T09:01:00Z,,"closed"then text',
            "a3,anna,false,2024-03-01T09:02:00Z,a1,fine",
            'a4,anna,false,2024-03-01T09:03:00Z,,"never closed',
            "a5,anna,false,2024-03-01T09:04:00Z,,swallowed by the open quote",
        ],
        newline="\r\n",
    )

    out, _ = run(path)

    assert out.splitlines() == summary_lines(
        2, 0, 1,
        [
            "line 4: malformed CSV: ',' expected after '\"'",
            "line 6: malformed CSV: a quoted field is never closed (it runs to the end of the file)",
        ],
    )  # fmt: skip
    assert message("a1").text == "two\r\nlines"
    assert message("a3").ticket == message("a1").ticket


def test_text_longer_than_the_limit_is_rejected_and_the_rest_lands(tmp_path, default_queue, settings):
    settings.WEBCARE = {**settings.WEBCARE, "MAX_TEXT_LENGTH": 10}
    path = write_csv(
        tmp_path / "long.csv",
        [
            HEADER,
            "a1,anna,false,2024-03-01T09:00:00Z,,short",
            f"a2,anna,false,2024-03-01T09:01:00Z,,{'x' * 200}",
        ],
    )

    out, _ = run(path)

    assert out.splitlines() == summary_lines(1, 0, 1, ["line 3: text is 200 characters long (at most 10)"])


def test_rejection_list_is_capped_on_the_terminal(tmp_path, default_queue):
    bad = [f"b{n},anna,sometimes,2024-03-01T09:00:00Z,,x" for n in range(60)]
    path = write_csv(tmp_path / "many.csv", [HEADER, "a1,anna,false,2024-03-01T09:00:00Z,,ok", *bad])

    out, _ = run(path)

    lines = out.splitlines()
    assert lines[:5] == summary_lines(1, 0, 1, [])[:4] + ["rejected: 60"]
    assert lines[5] == "line 3: is_brand must be true or false, got 'sometimes'"
    assert lines[54] == "line 52: is_brand must be true or false, got 'sometimes'"
    assert lines[55:] == ["... and 10 more (see dead letters in admin)"]
    assert DeadLetter.objects.count() == 60


def test_progress_bar_is_drawn_on_a_terminal(default_queue):
    err = TTYStringIO()

    call_command("import_messages", str(NASTY), "--source", "history", stdout=io.StringIO(), stderr=err)

    assert "importing: 100%" in err.getvalue()
    assert "16/16" in err.getvalue()


def test_no_progress_flag_silences_the_bar(default_queue):
    err = TTYStringIO()

    call_command(
        "import_messages",
        str(NASTY),
        "--source",
        "history",
        "--no-progress",
        stdout=io.StringIO(),
        stderr=err,
    )

    assert err.getvalue() == ""


def test_import_csv_service_reports_progress_per_batch(source):
    calls: list[tuple[int, int]] = []

    summary = import_csv(path=NASTY, source=source, progress=lambda done, total: calls.append((done, total)))

    assert (summary.rows, summary.imported, summary.duplicates, summary.tickets_created) == (16, 10, 1, 6)
    assert summary.nothing_imported is False
    assert [r.line for r in summary.rejected] == [9, 10, 11, 12, 17]
    assert calls == [(0, 16), (5, 16), (16, 16)]


def generated_threads(rng: random.Random, threads: int, per_thread: int) -> tuple[list[dict], dict[str, str]]:
    """Rows of ``threads`` conversations; returns the rows and each message's root id."""
    base = datetime(2024, 1, 1, tzinfo=UTC)
    rows: list[dict] = []
    root_of: dict[str, str] = {}
    for t in range(threads):
        root = f"t{t}-0"
        # Conversations overlap, so many straddle the 1,000-row batch boundaries.
        start = base + timedelta(seconds=rng.randrange(0, 3 * 3600))
        ids = [root]
        rows.append(
            {"message_id": root, "author": f"cust{t % 700}", "is_brand": "false",
             "created_at": start.isoformat(), "in_reply_to_id": "", "text": f"help {t}"}
        )  # fmt: skip
        root_of[root] = root
        for n in range(1, per_thread):
            brand = n % 2 == 1
            parent = rng.choice(ids)
            # Some clocks run behind: a reply may carry a time before its parent's.
            offset = timedelta(minutes=n * 7 + rng.randrange(-30, 30))
            external_id = f"t{t}-{n}"
            rows.append(
                {"message_id": external_id, "author": "KLM" if brand else f"cust{t % 700}",
                 "is_brand": "true" if brand else "false", "created_at": (start + offset).isoformat(),
                 "in_reply_to_id": parent, "text": f"reply {n} in {t}"}
            )  # fmt: skip
            ids.append(external_id)
            root_of[external_id] = root
    rng.shuffle(rows)
    return rows, root_of


def test_five_thousand_shuffled_rows_keep_every_reply_on_its_roots_ticket(tmp_path, default_queue):
    rows, root_of = generated_threads(random.Random(20240301), threads=1000, per_thread=5)
    path = tmp_path / "generated.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    out, _ = run(path)

    assert out.splitlines() == summary_lines(5000, 0, 1000, [])
    ticket_of = dict(Message.objects.values_list("external_id", "ticket_id"))
    assert len(ticket_of) == 5000
    misplaced = [ext for ext, root in root_of.items() if ticket_of[ext] != ticket_of[root]]
    assert misplaced == []
    assert Ticket.objects.count() == len(set(ticket_of.values())) == 1000
    parent_of = {
        ext: parent for ext, parent in Message.objects.values_list("external_id", "in_reply_to__external_id")
    }
    assert parent_of == {row["message_id"]: row["in_reply_to_id"] or None for row in rows}


def test_recent_conversations_stay_open_and_history_is_solved(tmp_path, default_queue):
    recent = timezone.now() - timedelta(days=2)
    old = timezone.now() - timedelta(days=30)
    path = write_csv(tmp_path / "mixed.csv", [
        "message_id,author,is_brand,created_at,in_reply_to_id,text",
        f"old1,ann,false,{old.isoformat()},,Old question",
        f"old2,brand,true,{(old + timedelta(minutes=5)).isoformat()},old1,Old answer",
        f"new1,bob,false,{recent.isoformat()},,Recent question",
    ])
    out, _ = run(path)

    assert out.splitlines() == summary_lines(3, 0, 2, [], solved=1)
    old_ticket, new_ticket = message("old1").ticket, message("new1").ticket
    assert (old_ticket.status, old_ticket.solved_at) == (Ticket.Status.SOLVED, old + timedelta(minutes=5))
    assert new_ticket.status == Ticket.Status.NEW
    assert TicketEvent.objects.filter(ticket=old_ticket, type="ticket.status_changed",
                                      payload__new="solved").count() == 1


def test_keep_open_leaves_history_active(tmp_path, default_queue):
    old = timezone.now() - timedelta(days=30)
    path = write_csv(tmp_path / "old.csv", [
        "message_id,author,is_brand,created_at,in_reply_to_id,text",
        f"old1,ann,false,{old.isoformat()},,Old question",
    ])
    out, _ = run(path, "--keep-open")
    assert out.splitlines() == summary_lines(1, 0, 1, [], solved=0)
    assert message("old1").ticket.status == Ticket.Status.NEW


def test_import_sweeps_the_queues_of_conversations_left_active(tmp_path, default_queue, monkeypatch,
                                                               django_capture_on_commit_callbacks):
    from inbox.tasks import assignment

    swept, pushed = [], []
    monkeypatch.setattr(assignment.sweep_queue, "delay", swept.append)
    monkeypatch.setattr(assignment.assign_tickets, "delay", pushed.append)
    recent = timezone.now() - timedelta(days=1)
    path = write_csv(tmp_path / "recent.csv", [
        "message_id,author,is_brand,created_at,in_reply_to_id,text",
        f"r1,ann,false,{recent.isoformat()},,Still waiting for my refund",
    ])
    with django_capture_on_commit_callbacks(execute=True):
        run(path)
    assert swept == [default_queue.pk]
    assert pushed == []  # no per-batch push assignment during an import
