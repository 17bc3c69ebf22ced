"""Reply template changes by leads: checks, variants, conflicts and audit events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from inbox.models import AgentProfile, ReplyTemplate, ReplyTemplateVariant, TicketEvent
from inbox.services.templates import (
    TemplateConflict,
    template_create,
    template_set_active,
    template_update,
)
from tests.factories import AgentProfileFactory, QueueFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _desk_languages(settings):
    settings.WEBCARE = {**settings.WEBCARE, "LANGUAGES": ["nl", "en", "fr", "de", "es"]}


@pytest.fixture
def lead():
    return AgentProfileFactory(user__username="sanne", role=AgentProfile.Role.LEAD).user


@pytest.fixture
def agent():
    return AgentProfileFactory(user__username="jan").user


def variants_of(template: ReplyTemplate) -> dict[str, str]:
    return dict(ReplyTemplateVariant.objects.filter(template=template).order_by("language").values_list("language", "body"))


def events() -> list[tuple[str, dict]]:
    return [(e.type, e.payload) for e in TicketEvent.objects.order_by("id")]


def make(lead, **overrides) -> ReplyTemplate:
    values = {
        "name": "Apology for a delay", "shortcut": "delay",
        "variants": {"en": "Sorry, {customer_name}.", "nl": "Sorry, {customer_name}."},
    }
    return template_create(actor=lead, **{**values, **overrides})


def test_create_stores_the_template_and_its_variants(lead):
    queue = QueueFactory(name="Baggage", slug="baggage")
    template = template_create(
        actor=lead, name="  Apology   for a delay ", shortcut=" /Delay ", queue=queue,
        variants={"en": "Sorry for the wait, {customer_name}.\r\n^{agent_first_name}", "nl": "", "de": "  "},
    )
    template.refresh_from_db()
    assert (template.name, template.shortcut, template.queue, template.active, template.created_by) == (
        "Apology for a delay", "delay", queue, True, lead,
    )
    assert variants_of(template) == {"en": "Sorry for the wait, {customer_name}.\n^{agent_first_name}"}
    assert events() == [(
        "reply_template.created",
        {"template_id": template.pk, "shortcut": "delay", "name": "Apology for a delay", "languages": ["en"],
         "active": True},
    )]
    assert TicketEvent.objects.get().actor_id == lead.pk


def test_only_leads_manage_templates(agent, lead):
    with pytest.raises(PermissionDenied):
        make(agent)
    template = make(lead)
    with pytest.raises(PermissionDenied):
        template_set_active(actor=agent, template=template, active=False)
    with pytest.raises(PermissionDenied):
        template_update(actor=agent, template=template, name="x", shortcut="x", queue=None, active=True, variants={})
    template.refresh_from_db()
    assert (template.name, template.active) == ("Apology for a delay", True)


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"name": " "}, {"name": ["Give the template a name."]}),
        ({"shortcut": ""}, {"shortcut": ["Give the template a shortcut, such as delay."]}),
        ({"shortcut": "late flight"}, {"shortcut": [
            "Use only letters a-z, digits, - and _ (no spaces), starting with a letter or digit."]}),
        ({"shortcut": "x" * 41}, {"shortcut": ["At most 40 characters."]}),
        ({"variants": {"en": "", "nl": "  "}}, {"variants": ["Write the text in at least one language."]}),
        ({"variants": {"en": "Hi {custmer_name} {order}"}}, {"variant_en": [
            "Unknown variable {custmer_name}, {order}. Known variables: {customer_name}, {customer_handle}, "
            "{agent_first_name}, {ticket_number}, {platform}."]}),
        ({"variants": {"nl": "Hoi {{customer_name}}"}}, {"variant_nl": [
            "Braces { } are only for variables, such as {customer_name}."]}),
        ({"variants": {"xx": "Hi"}}, {"variants": [
            "xx is not a desk language (nl, en, fr, de, es).",
            "Write the text in at least one language."]}),
    ],
)
def test_invalid_templates_are_refused_and_nothing_is_written(lead, overrides, errors):
    with pytest.raises(ValidationError) as caught:
        make(lead, **overrides)
    assert caught.value.message_dict == errors
    assert ReplyTemplate.objects.count() == 0
    assert ReplyTemplateVariant.objects.count() == 0
    assert TicketEvent.objects.count() == 0


def test_shortcuts_are_unique_whatever_the_case(lead):
    make(lead)
    with pytest.raises(ValidationError) as caught:
        make(lead, name="Other", shortcut="/DELAY")
    assert caught.value.message_dict == {"shortcut": ["/delay is already the shortcut of another template."]}
    assert ReplyTemplate.objects.count() == 1


def test_update_changes_fields_and_variants(lead):
    template = make(lead, variants={"en": "Sorry.", "nl": "Sorry.", "de": "Entschuldigung."})
    queue = QueueFactory(name="Care", slug="care")
    TicketEvent.objects.all().delete()
    updated = template_update(
        actor=lead, template=template, name="Delay", shortcut="late", queue=queue, active=False,
        # nl removed, en changed, fr added, de not mentioned: kept.
        variants={"nl": "", "en": "Sorry, {customer_name}.", "fr": "Désolé."},
        expected_updated_at=template.updated_at,
    )
    updated.refresh_from_db()
    assert (updated.name, updated.shortcut, updated.queue, updated.active) == ("Delay", "late", queue, False)
    assert variants_of(updated) == {"de": "Entschuldigung.", "en": "Sorry, {customer_name}.", "fr": "Désolé."}
    assert updated.updated_at > template.updated_at
    assert events() == [(
        "reply_template.updated",
        {"template_id": template.pk, "shortcut": "late", "name": "Delay",
         "changed": ["name", "shortcut", "queue", "active"], "languages": ["en", "fr", "nl"]},
    )]


def test_an_update_that_changes_nothing_writes_nothing(lead):
    template = make(lead)
    before = ReplyTemplate.objects.get(pk=template.pk).updated_at
    TicketEvent.objects.all().delete()
    template_update(
        actor=lead, template=template, name="Apology for a delay", shortcut="delay", queue=None, active=True,
        variants={"en": "Sorry, {customer_name}."},
    )
    assert ReplyTemplate.objects.get(pk=template.pk).updated_at == before
    assert TicketEvent.objects.count() == 0


def test_removing_the_last_variant_is_refused(lead):
    template = make(lead, variants={"en": "Sorry."})
    with pytest.raises(ValidationError) as caught:
        template_update(actor=lead, template=template, name="x", shortcut="delay", queue=None, active=True,
                        variants={"en": ""})
    assert caught.value.message_dict == {"variants": ["Write the text in at least one language."]}
    assert variants_of(template) == {"en": "Sorry."}
    assert ReplyTemplate.objects.get(pk=template.pk).name == "Apology for a delay"


def test_an_update_may_keep_its_own_shortcut_but_not_take_another(lead):
    template = make(lead)
    make(lead, name="Refund", shortcut="refund")
    template_update(actor=lead, template=template, name="Delay!", shortcut="DELAY", queue=None, active=True,
                    variants={})
    with pytest.raises(ValidationError) as caught:
        template_update(actor=lead, template=template, name="Delay!", shortcut="refund", queue=None, active=True,
                        variants={})
    assert caught.value.message_dict == {"shortcut": ["/refund is already the shortcut of another template."]}
    assert ReplyTemplate.objects.get(pk=template.pk).shortcut == "delay"


def test_a_template_changed_meanwhile_is_not_overwritten(lead):
    template = make(lead)
    loaded_at = template.updated_at
    template_update(actor=lead, template=template, name="Changed by Sanne", shortcut="delay", queue=None,
                    active=True, variants={})
    with pytest.raises(TemplateConflict):
        template_update(actor=lead, template=template, name="Changed by Piet", shortcut="delay", queue=None,
                        active=True, variants={"en": "Overwritten"}, expected_updated_at=loaded_at)
    template.refresh_from_db()
    assert template.name == "Changed by Sanne"
    assert variants_of(template)["en"] == "Sorry, {customer_name}."
    with pytest.raises(TemplateConflict):
        template_update(actor=lead, template=template, name="x", shortcut="delay", queue=None, active=True,
                        variants={}, expected_updated_at=template.updated_at - timedelta(microseconds=1))


def test_variants_in_a_language_no_longer_on_the_desk_can_still_be_edited(lead, settings):
    template = make(lead, variants={"es": "Lo sentimos."})
    settings.WEBCARE = {**settings.WEBCARE, "LANGUAGES": ["en", "nl"]}
    template_update(actor=lead, template=template, name="x", shortcut="delay", queue=None, active=True,
                    variants={"es": "Lo sentimos mucho."})
    assert variants_of(template) == {"es": "Lo sentimos mucho."}
    with pytest.raises(ValidationError) as caught:
        template_update(actor=lead, template=template, name="x", shortcut="delay", queue=None, active=True,
                        variants={"fr": "Pardon."})
    assert caught.value.message_dict == {"variants": ["fr is not a desk language (en, nl)."]}


def test_deactivate_and_activate(lead):
    template = make(lead)
    TicketEvent.objects.all().delete()
    assert template_set_active(actor=lead, template=template, active=False).active is False
    assert template_set_active(actor=lead, template=template, active=False).active is False  # no change
    assert template_set_active(actor=lead, template=template, active=True).active is True
    assert ReplyTemplate.objects.get(pk=template.pk).active is True
    assert [type_ for type_, _payload in events()] == ["reply_template.deactivated", "reply_template.activated"]


def test_the_demo_templates_pass_the_checks():
    from inbox.routing.suggest import body_problems
    from inbox.services.demo import TEMPLATES

    problems = {
        (spec.shortcut, language): body_problems(body)
        for spec in TEMPLATES
        for language, body in spec.variants.items()
        if body_problems(body)
    }
    assert problems == {}
    assert len(TEMPLATES) >= 5
    assert all({"en", "nl", "de", "fr"} <= set(spec.variants) for spec in TEMPLATES)
