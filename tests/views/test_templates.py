"""Reply templates in the browser's server side: picker and suggestion fragments, lead pages."""

from __future__ import annotations

import dataclasses
import re

import pytest
from django.db import connection
from django.template.loader import render_to_string
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inbox.connectors.base import AuthorIdentity
from inbox.models import AgentProfile, Message, ReplyTemplate, ReplyTemplateVariant, Ticket
from inbox.services.ingest import ingest_batch
from inbox.services.replies import reply_create
from inbox.services.templates import template_create
from tests.factories import AgentProfileFactory, QueueFactory, inbound

pytestmark = pytest.mark.django_db

HOSTILE_NAME = '<script>alert(1)</script>{agent_first_name} "Zoë" 👩‍👩‍👧'


@pytest.fixture(autouse=True)
def _desk_languages(settings):
    settings.WEBCARE = {**settings.WEBCARE, "LANGUAGES": ["nl", "en", "fr", "de"]}


@pytest.fixture
def lead(db):
    return AgentProfileFactory(user__username="sanne", user__first_name="Sanne", role=AgentProfile.Role.LEAD).user


@pytest.fixture
def other_queue(db):
    return QueueFactory(name="Refunds", slug="refunds")


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def ingest_ticket(source, *, text: str, author: str = "cust1", name: str = "", language: str = "") -> Ticket:
    message = inbound(author=author, text=text, language=language)
    if name:
        message = dataclasses.replace(
            message, author=AuthorIdentity(external_id=author, handle=author, display_name=name, followers_count=10)
        )
    result = ingest_batch(source=source, messages=[message])
    return Message.objects.get(pk=result.message_ids[0]).ticket


def make_template(lead, shortcut: str, variants: dict[str, str], *, name: str = "", queue=None, usage: int = 0,
                  active: bool = True) -> ReplyTemplate:
    template = template_create(actor=lead, name=name or shortcut.title(), shortcut=shortcut, queue=queue,
                               variants=variants, active=active)
    if usage:
        ReplyTemplate.objects.filter(pk=template.pk).update(usage_count=usage)
    return template


def option_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'role="option" id="tp-\d+-opt-(\d+)"', html)]


def suggestion_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'class="template-suggestion" data-template-choice data-template-id="(\d+)"', html)]


# --- Picker fragment -----------------------------------------------------------------------


@pytest.fixture
def templates(lead, default_queue, other_queue):
    return {
        "delay": make_template(lead, "delay", {"en": "Sorry for the delay, {customer_name}. ^{agent_first_name}",
                                               "nl": "Sorry voor de vertraging, {customer_name}. ^{agent_first_name}"},
                               name="Apology for a delay", usage=5),
        "claim": make_template(lead, "baggage-claim", {"en": "File a claim for your bag, case {ticket_number}."},
                               name="Baggage claim", queue=default_queue, usage=9),
        "refund": make_template(lead, "refund", {"en": "Your refund.", "nl": "Je terugbetaling."},
                                queue=other_queue),
        "german": make_template(lead, "german", {"de": "Entschuldigung."}),
        "old": make_template(lead, "old", {"en": "Old text.", "nl": "Oude tekst."}, active=False),
    }


def test_picker_lists_the_templates_of_the_tickets_queue_and_language(source, anna, templates):
    ticket = ingest_ticket(source, text="Mijn vlucht is al drie uur vertraagd, wat is er aan de hand?",
                           language="nl", name=HOSTILE_NAME)
    assert ticket.language == "nl"
    response = login(anna).get(f"/desk/tickets/{ticket.pk}/templates")
    assert response.status_code == 200
    html = response.content.decode()
    # Most used first; other queue's, inactive and German-only templates are not offered.
    assert option_ids(html) == [templates["claim"].pk, templates["delay"].pk]
    # The Dutch text of "delay", filled in; the hostile name is escaped, its braces kept literally.
    escaped_name = "&lt;script&gt;alert(1)&lt;/script&gt;{agent_first_name} &quot;Zoë&quot; 👩‍👩‍👧"
    assert f'data-text="Sorry voor de vertraging, {escaped_name}. ^Anna"' in html
    assert "<script>alert" not in html
    # "claim" has no Dutch text: the English one, marked EN, with the ticket number filled in.
    claim = html[html.index(f'id="tp-{ticket.pk}-opt-{templates["claim"].pk}"'):]
    claim = claim[: claim.index("</li>")]
    assert f'data-text="File a claim for your bag, case {ticket.pk}."' in claim
    assert '<span class="badge template-lang"' in claim and ">EN</span>" in claim
    delay = html[html.index(f'id="tp-{ticket.pk}-opt-{templates["delay"].pk}"'):]
    assert "template-lang" not in delay[: delay.index("</li>")]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("delay", ["delay"]),
        ("/DEL", ["delay"]),  # shortcut, typed as in the reply box
        ("claim", ["claim"]),  # name
        ("bag case", ["claim"]),  # words of the text, anywhere
        ("vertraging", []),  # the Dutch text is not shown on an English ticket
        ("nothing like this", []),
    ],
)
def test_picker_search(source, anna, templates, query, expected):
    ticket = ingest_ticket(source, text="My flight is delayed by three hours, what is going on?", language="en")
    assert ticket.language == "en"
    html = login(anna).get(f"/desk/tickets/{ticket.pk}/templates", {"q": query}).content.decode()
    assert option_ids(html) == [templates[key].pk for key in expected]
    if not expected:
        assert "data-picker-empty>" in html and "No template matches" in html


def test_picker_needs_a_ticket_the_user_may_see(source, anna, outsider, templates):
    ticket = ingest_ticket(source, text="Where is my bag?")
    assert login(outsider).get(f"/desk/tickets/{ticket.pk}/templates").status_code == 404
    assert login(outsider).get(f"/desk/tickets/{ticket.pk}/templates/suggested").status_code == 404
    assert login(anna).get("/desk/tickets/999999/templates").status_code == 404
    anonymous = Client().get(f"/desk/tickets/{ticket.pk}/templates")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")


def test_picker_refuses_an_overlong_search(source, anna, templates):
    ticket = ingest_ticket(source, text="Where is my bag?")
    response = login(anna).get(f"/desk/tickets/{ticket.pk}/templates", {"q": "x" * 201})
    assert response.status_code == 400
    assert response.content.decode() == "Search at most 200 characters."


def test_picker_partial_wires_the_composer(source, anna):
    ticket = ingest_ticket(source, text="Where is my bag?")
    html = render_to_string("inbox/desk/_template_picker.html", {"ticket": ticket})
    assert f'data-results-url="/desk/tickets/{ticket.pk}/templates"' in html
    assert f'data-suggestions-url="/desk/tickets/{ticket.pk}/templates/suggested"' in html
    assert '<script src="/static/js/desk/templates.js" defer></script>' in html
    assert 'role="combobox"' in html and 'role="listbox"' in html
    assert "onclick" not in html and "javascript:" not in html


# --- Suggestions ---------------------------------------------------------------------------


def answer_with(ticket: Ticket, template: ReplyTemplate, agent) -> Message:
    """An agent's reply on ``ticket`` started from ``template`` (as the composer sends it)."""
    delivery = reply_create(ticket=ticket, author=agent, text="Reply text written from the template.")
    Message.objects.filter(pk=delivery.message_id).update(reply_template=template)
    return Message.objects.get(pk=delivery.message_id)


def test_suggestions_rank_by_what_the_templates_answered_before(source, anna, lead):
    # "form" answers lost bags (history), "koffer" only has the words in its text.
    form = make_template(lead, "form", {"nl": "Vul het formulier in op onze website, {customer_name}.",
                                        "en": "Please fill in the form on our website."}, usage=1)
    koffer = make_template(lead, "koffer", {"nl": "Je koffer zoeken we op, {customer_name}."}, usage=2)
    thanks = make_template(lead, "thanks", {"nl": "Dank je wel!", "en": "Thank you!"}, usage=40)
    make_template(lead, "spare", {"nl": "Reservebericht."}, usage=1)
    for number, text in enumerate(["Mijn koffer is niet aangekomen in Amsterdam na mijn vlucht",
                                   "Mijn koffer is niet aangekomen, hij staat nog in Rome"]):
        old = ingest_ticket(source, text=text, author=f"earlier{number}", language="nl")
        assert old.language == "nl"
        answer_with(old, form, anna)

    ticket = ingest_ticket(source, text="Hallo, mijn koffer is niet aangekomen na de vlucht uit Madrid",
                           author="newcustomer", name="Eva", language="nl")
    assert ticket.language == "nl"
    html = login(anna).get(f"/desk/tickets/{ticket.pk}/templates/suggested").content.decode()
    assert suggestion_ids(html) == [form.pk, koffer.pk, thanks.pk]
    assert 'data-text="Vul het formulier in op onze website, Eva."' in html
    assert 'data-suggestion-key="1"' in html and 'aria-keyshortcuts="Alt+3"' in html
    assert "<kbd>Alt+1</kbd>" in html
    reasons = re.findall(r'<span class="template-reason">([^<]+)</span>', html)
    assert reasons == ["answered similar messages", "similar text", "often used"]


def test_suggestions_without_any_message_text_are_the_most_used(source, anna, lead):
    make_template(lead, "a", {"en": "A."}, usage=1)
    most = make_template(lead, "b", {"en": "B."}, usage=30)
    second = make_template(lead, "c", {"en": "C."}, usage=20)
    third = make_template(lead, "d", {"en": "D."}, usage=10)
    ticket = ingest_ticket(source, text="🙂🙂🙂")
    html = login(anna).get(f"/desk/tickets/{ticket.pk}/templates/suggested").content.decode()
    assert suggestion_ids(html) == [most.pk, second.pk, third.pk]


def test_suggestions_without_templates_say_so(source, anna):
    ticket = ingest_ticket(source, text="Where is my bag?")
    html = login(anna).get(f"/desk/tickets/{ticket.pk}/templates/suggested").content.decode()
    assert suggestion_ids(html) == []
    assert "No suggested templates for this ticket" in html


def test_suggestions_cost_the_same_queries_however_many_templates_and_replies(source, anna, lead):
    def count_queries(ticket_id: int) -> int:
        client = login(anna)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(f"/desk/tickets/{ticket_id}/templates/suggested").status_code == 200
        return len(queries)

    first = make_template(lead, "first", {"en": "First."})
    earlier = ingest_ticket(source, text="Where is my bag, it did not arrive?", author="c0")
    answer_with(earlier, first, anna)
    ticket = ingest_ticket(source, text="My bag did not arrive", author="c1")
    few = count_queries(ticket.pk)
    for number in range(2, 8):
        template = make_template(lead, f"t{number}", {"en": f"Text {number}.", "nl": f"Tekst {number}."})
        earlier = ingest_ticket(source, text=f"Question {number} about my bag", author=f"c{number}")
        answer_with(earlier, template, anna)
        answer_with(earlier, first, anna)
    assert count_queries(ticket.pk) == few


# --- Management pages ----------------------------------------------------------------------


def test_agents_may_not_manage_templates(anna, lead):
    template = make_template(lead, "delay", {"en": "Sorry."})
    client = login(anna)
    assert client.get("/desk/templates/").status_code == 403
    assert client.get("/desk/templates/new").status_code == 403
    assert client.post("/desk/templates/new", {"name": "x", "shortcut": "x", "variant_en": "x"}).status_code == 403
    assert client.get(f"/desk/templates/{template.pk}/").status_code == 403
    assert client.post(f"/desk/templates/{template.pk}/active", {"active": "0"}).status_code == 403
    assert ReplyTemplate.objects.get(pk=template.pk).active is True
    assert ReplyTemplate.objects.count() == 1
    assert Client().get("/desk/templates/")["Location"].startswith("/login/")


def test_template_list_shows_usage_languages_and_state(lead, default_queue):
    make_template(lead, "delay", {"en": "Sorry for the delay.", "nl": "Sorry."}, name="Apology for a delay",
                  usage=12)
    make_template(lead, "claim", {"de": "Bitte melden Sie es."}, name="Baggage claim", queue=default_queue,
                  active=False)
    response = login(lead).get("/desk/templates/")
    assert response.status_code == 200
    html = response.content.decode()
    rows = re.findall(r'<tr data-template-row="\d+"(.*?)</tr>', html, re.S)
    assert len(rows) == 2
    delay, claim = rows  # by name
    assert ' class="inactive"' in claim and "General" in claim and "Activate" in claim and "Deactivate" not in claim
    assert '<span class="badge" data-language="de">DE</span>' in claim
    assert 'data-usage-count>12</td>' in delay
    assert '<span class="badge" data-language="en">EN</span> <span class="badge" data-language="nl">NL</span>' in delay
    assert "All queues" in delay and "Deactivate" in delay
    assert 'aria-current="page">Templates</a>' in html
    # CSP: no inline scripts or handlers.
    assert re.findall(r"<script(?![^>]*\ssrc=)", html) == []
    assert "onclick=" not in html


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"q": "delay"}, ["Apology for a delay"]),
        ({"q": "BITTE"}, ["Baggage claim"]),  # text of any language, any case
        ({"q": "/claim"}, ["Baggage claim"]),
        ({"state": "inactive"}, ["Baggage claim"]),
        ({"state": "active", "q": "claim"}, []),
    ],
)
def test_template_list_search(lead, params, expected):
    make_template(lead, "delay", {"en": "Sorry for the delay."}, name="Apology for a delay")
    make_template(lead, "claim", {"de": "Bitte melden Sie es."}, name="Baggage claim", active=False)
    html = login(lead).get("/desk/templates/", params).content.decode()
    names = re.findall(r'<td data-label="Name"><a href="/desk/templates/\d+/">([^<]+)</a></td>', html)
    assert names == expected


def test_lead_creates_a_template(lead, default_queue):
    client = login(lead)
    form = client.get("/desk/templates/new").content.decode()
    for code in ("nl", "en", "fr", "de"):
        assert f'name="variant_{code}"' in form
    assert "{customer_name}" in form and "{platform}" in form
    response = client.post("/desk/templates/new", {
        "name": "Apology for a delay", "shortcut": "/Delay", "queue": default_queue.pk, "active": "on",
        "variant_nl": "Sorry, {customer_name}!", "variant_en": "Sorry, {customer_name}!\r\nBye", "variant_fr": "",
        "variant_de": "",
    })
    assert response.status_code == 302
    assert response["Location"] == "/desk/templates/?created=delay"
    template = ReplyTemplate.objects.get()
    assert (template.name, template.shortcut, template.queue, template.active, template.created_by) == (
        "Apology for a delay", "delay", default_queue, True, lead,
    )
    assert dict(template.variants.values_list("language", "body")) == {
        "nl": "Sorry, {customer_name}!", "en": "Sorry, {customer_name}!\nBye",
    }
    assert "Template /delay created." in client.get(response["Location"]).content.decode()
    assert "created." not in client.get("/desk/templates/?created=you-won-a-prize").content.decode()


def test_an_invalid_template_is_shown_again_with_the_reasons(lead):
    make_template(lead, "delay", {"en": "Sorry."})
    response = login(lead).post("/desk/templates/new", {
        "name": "Second", "shortcut": "delay", "variant_en": "Hi {custmer_name}", "variant_nl": "Hoi {{x}}",
    })
    assert response.status_code == 400
    html = response.content.decode()
    assert "/delay is already the shortcut of another template." in html
    assert "Unknown variable {custmer_name}." in html
    assert "Braces { } are only for variables, such as {customer_name}." in html
    assert "Hi {custmer_name}</textarea>" in html  # the lead's text is kept
    assert ReplyTemplate.objects.count() == 1

    response = login(lead).post("/desk/templates/new", {"name": "Empty", "shortcut": "empty"})
    assert response.status_code == 400
    assert "Write the text in at least one language." in response.content.decode()
    assert ReplyTemplate.objects.count() == 1


def test_lead_edits_a_template(lead, other_queue):
    template = make_template(lead, "delay", {"en": "Sorry.", "nl": "Sorry."}, usage=3)
    client = login(lead)
    form = client.get(f"/desk/templates/{template.pk}/").content.decode()
    assert "Used 3 times." in form
    assert re.search(r'name="variant_nl"[^>]*>\nSorry.</textarea>', form)
    version = re.search(r'name="version" value="([^"]+)"', form).group(1)
    response = client.post(f"/desk/templates/{template.pk}/", {
        "name": "Delay", "shortcut": "delay", "queue": other_queue.pk, "version": version,
        "variant_en": "Sorry, {customer_name}.", "variant_nl": "", "variant_fr": "", "variant_de": "Entschuldigung.",
    })
    assert response.status_code == 302
    template.refresh_from_db()
    assert (template.name, template.queue, template.active) == ("Delay", other_queue, False)  # box unticked
    assert dict(template.variants.values_list("language", "body")) == {
        "en": "Sorry, {customer_name}.", "de": "Entschuldigung.",
    }


def test_an_edit_of_a_template_changed_meanwhile_is_refused_with_409(lead):
    template = make_template(lead, "delay", {"en": "Sorry."})
    client = login(lead)
    version = re.search(r'name="version" value="([^"]+)"', client.get(f"/desk/templates/{template.pk}/").content.decode()).group(1)
    ReplyTemplate.objects.filter(pk=template.pk).update(name="Changed by Piet", updated_at=timezone.now())
    data = {"name": "Mine", "shortcut": "delay", "version": version, "active": "on", "variant_en": "My text."}
    response = client.post(f"/desk/templates/{template.pk}/", data)
    assert response.status_code == 409
    html = response.content.decode()
    assert "Someone else changed this template while you were editing it." in html
    assert "My text.</textarea>" in html
    assert ReplyTemplate.objects.get(pk=template.pk).name == "Changed by Piet"
    # Saving the form shown again overwrites on purpose.
    new_version = re.search(r'name="version" value="([^"]+)"', html).group(1)
    assert client.post(f"/desk/templates/{template.pk}/", {**data, "version": new_version}).status_code == 302
    assert ReplyTemplate.objects.get(pk=template.pk).name == "Mine"


def test_deactivated_templates_leave_the_picker(lead, anna, source):
    template = make_template(lead, "delay", {"en": "Sorry."})
    ticket = ingest_ticket(source, text="My flight is late again")
    assert option_ids(login(anna).get(f"/desk/tickets/{ticket.pk}/templates").content.decode()) == [template.pk]
    client = login(lead)
    response = client.post(f"/desk/templates/{template.pk}/active", {"active": "0", "next": "/desk/templates/?q=delay"})
    assert (response.status_code, response["Location"]) == (302, "/desk/templates/?q=delay")
    assert ReplyTemplate.objects.get(pk=template.pk).active is False
    assert option_ids(login(anna).get(f"/desk/tickets/{ticket.pk}/templates").content.decode()) == []
    assert client.post(f"/desk/templates/{template.pk}/active", {"active": "maybe"}).status_code == 400
    response = client.post(f"/desk/templates/{template.pk}/active", {"active": "1", "next": "https://evil.example/"})
    assert response["Location"] == "/desk/templates/"
    assert ReplyTemplate.objects.get(pk=template.pk).active is True


def test_template_forms_need_the_csrf_token(lead):
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)
    response = client.post("/desk/templates/new", {"name": "x", "shortcut": "x", "variant_en": "x"})
    assert response.status_code == 403
    assert ReplyTemplate.objects.count() == 0
    assert ReplyTemplateVariant.objects.count() == 0
