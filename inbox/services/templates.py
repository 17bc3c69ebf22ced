"""Reply template changes by team leads: create, update, (de)activate.

Every change is checked first (``ValidationError`` with a message per field: name, shortcut,
queue, ``variants`` and ``variant_<language>``), written in one transaction and recorded as a
``reply_template.*`` TicketEvent without a ticket (leads see who changed which template).

Checks: the shortcut is a slug (a leading ``/`` and capitals are accepted and dropped),
unique; at least one variant has text; a variant's language is a desk language (or one the
template already has); its text uses only the known variables (``inbox.routing.suggest.
VARIABLES``) and no other braces: an unknown ``{variable}`` is rejected, never sent to a
customer as written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils.text import normalize_newlines
from django.utils.translation import gettext as _

from inbox.models import Queue, ReplyTemplate, ReplyTemplateVariant
from inbox.realtime.publish import publish_on_commit
from inbox.routing.assign import normalize_language
from inbox.routing.language import desk_languages
from inbox.routing.suggest import VARIABLES, body_problems
from inbox.selectors.tickets import user_is_lead
from inbox.services.events import event_for
from inbox.services.normalize import clean_text

_SHORTCUT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_NAME_MAX = ReplyTemplate._meta.get_field("name").max_length
_SHORTCUT_MAX = ReplyTemplate._meta.get_field("shortcut").max_length


class TemplateConflict(Exception):
    """The template changed since the editor loaded it; nothing was written."""


def _require_lead(actor: AbstractBaseUser) -> None:
    if not user_is_lead(actor):
        raise PermissionDenied(_("Only team leads manage reply templates."))


def normalize_shortcut(value: str) -> str:
    """``"/Delay "`` → ``"delay"``: how agents type it, as it is stored."""
    return value.strip().lstrip("/").strip().lower()


def _variable_list() -> str:
    return ", ".join(f"{{{name}}}" for name in VARIABLES)


def _body_errors(body: str) -> list[str]:
    problems = body_problems(body)
    errors = []
    if problems.unknown:
        errors.append(
            _("Unknown variable %(names)s. Known variables: %(known)s.")
            % {"names": ", ".join(f"{{{name}}}" for name in problems.unknown), "known": _variable_list()}
        )
    if problems.stray_braces:
        errors.append(_("Braces { } are only for variables, such as {customer_name}."))
    return errors


def _clean_variants(variants: Mapping[str, str]) -> dict[str, str]:
    cleaned: dict[str, str] = {}
    for language, body in variants.items():
        code = normalize_language(language)
        text = normalize_newlines(clean_text(body or "")).strip()
        if code in cleaned and text and cleaned[code]:
            raise ValidationError({"variants": _("Two texts for the language %(code)s.") % {"code": code}})
        cleaned[code] = text or cleaned.get(code, "")
    return cleaned


def _check(
    *,
    template: ReplyTemplate | None,
    name: str,
    shortcut: str,
    queue: Queue | None,
    variants: dict[str, str],
    existing: dict[str, ReplyTemplateVariant],
) -> None:
    errors: dict[str, list[str]] = {}
    if not name:
        errors.setdefault("name", []).append(_("Give the template a name."))
    elif len(name) > _NAME_MAX:
        errors.setdefault("name", []).append(_("At most %(n)d characters.") % {"n": _NAME_MAX})

    if not shortcut:
        errors.setdefault("shortcut", []).append(_("Give the template a shortcut, such as delay."))
    elif len(shortcut) > _SHORTCUT_MAX:
        errors.setdefault("shortcut", []).append(_("At most %(n)d characters.") % {"n": _SHORTCUT_MAX})
    elif not _SHORTCUT.match(shortcut):
        errors.setdefault("shortcut", []).append(
            _("Use only letters a-z, digits, - and _ (no spaces), starting with a letter or digit.")
        )
    else:
        taken = ReplyTemplate.objects.filter(shortcut__iexact=shortcut)
        if template is not None:
            taken = taken.exclude(pk=template.pk)
        if taken.exists():
            errors.setdefault("shortcut", []).append(
                _("/%(shortcut)s is already the shortcut of another template.") % {"shortcut": shortcut}
            )

    if queue is not None and not Queue.objects.filter(pk=queue.pk).exists():
        errors.setdefault("queue", []).append(_("This queue no longer exists."))

    allowed = set(desk_languages()) | set(existing)
    max_length = settings.WEBCARE["MAX_TEXT_LENGTH"]
    for code, body in variants.items():
        key = f"variant_{code}"
        if code not in allowed:
            errors.setdefault("variants", []).append(
                _("%(code)s is not a desk language (%(languages)s).")
                % {"code": code or "?", "languages": ", ".join(desk_languages())}
            )
            continue
        if len(body) > max_length:
            errors.setdefault(key, []).append(
                _("The text is %(length)d characters long; at most %(max)d.") % {"length": len(body), "max": max_length}
            )
        errors.setdefault(key, []).extend(_body_errors(body))
        if not errors[key]:
            del errors[key]

    remaining = {code for code in existing if variants.get(code, existing[code].body)} | {
        code for code, body in variants.items() if body and code in allowed
    }
    if not remaining:
        errors.setdefault("variants", []).append(_("Write the text in at least one language."))
    if errors:
        raise ValidationError(errors)


def _save_variants(
    template: ReplyTemplate, variants: dict[str, str], existing: dict[str, ReplyTemplateVariant]
) -> list[str]:
    """Write the changed variants; an empty text removes the variant. Returns the languages changed."""
    changed = []
    for code, body in sorted(variants.items()):
        current = existing.get(code)
        if not body:
            if current is not None:
                current.delete()
                changed.append(code)
        elif current is None:
            ReplyTemplateVariant.objects.create(template=template, language=code, body=body)
            changed.append(code)
        elif current.body != body:
            current.body = body
            current.save(update_fields=["body"])
            changed.append(code)
    return changed


def _record(type_: str, *, actor: AbstractBaseUser, template: ReplyTemplate, **payload: Any) -> None:
    event = event_for(
        None, type_, actor_id=actor.pk, template_id=template.pk, shortcut=template.shortcut,
        name=template.name, **payload,
    )
    event.save()
    publish_on_commit([event])


def _shortcut_race(shortcut: str) -> ValidationError:
    return ValidationError(
        {"shortcut": _("/%(shortcut)s is already the shortcut of another template.") % {"shortcut": shortcut}}
    )


def template_create(
    *,
    actor: AbstractBaseUser,
    name: str,
    shortcut: str,
    variants: Mapping[str, str],
    queue: Queue | None = None,
    active: bool = True,
) -> ReplyTemplate:
    """A new reply template with its variants (language → text; empty texts are left out)."""
    _require_lead(actor)
    name = " ".join(clean_text(name or "").split())
    shortcut = normalize_shortcut(shortcut or "")
    cleaned = _clean_variants(variants)
    _check(template=None, name=name, shortcut=shortcut, queue=queue, variants=cleaned, existing={})
    with transaction.atomic():
        try:
            with transaction.atomic():
                template = ReplyTemplate.objects.create(
                    name=name, shortcut=shortcut, queue=queue, active=active, created_by=actor
                )
        except IntegrityError:
            # Another lead took the shortcut between the check and the insert.
            if ReplyTemplate.objects.filter(shortcut__iexact=shortcut).exists():
                raise _shortcut_race(shortcut) from None
            raise
        languages = _save_variants(template, cleaned, {})
        _record("reply_template.created", actor=actor, template=template, languages=languages, active=active)
    return template


def template_update(
    *,
    actor: AbstractBaseUser,
    template: ReplyTemplate,
    name: str,
    shortcut: str,
    queue: Queue | None,
    active: bool,
    variants: Mapping[str, str],
    expected_updated_at: datetime | None = None,
) -> ReplyTemplate:
    """Change a template. ``variants`` maps language → text: an empty text removes that
    language's variant, a language left out keeps its variant as it is.

    With ``expected_updated_at`` (when the editor loaded the template) a template changed
    since then raises ``TemplateConflict`` instead of overwriting the other lead's change.
    """
    _require_lead(actor)
    name = " ".join(clean_text(name or "").split())
    shortcut = normalize_shortcut(shortcut or "")
    cleaned = _clean_variants(variants)
    with transaction.atomic():
        template = ReplyTemplate.objects.select_for_update().get(pk=template.pk)
        if expected_updated_at is not None and template.updated_at != expected_updated_at:
            raise TemplateConflict(_("Someone else changed this template while you were editing it."))
        existing = {normalize_language(v.language): v for v in template.variants.all()}
        _check(template=template, name=name, shortcut=shortcut, queue=queue, variants=cleaned, existing=existing)
        new_values = {"name": name, "shortcut": shortcut, "queue_id": queue.pk if queue else None, "active": active}
        changed = [field for field, value in new_values.items() if getattr(template, field) != value]
        for field in changed:
            setattr(template, field, new_values[field])
        languages = _save_variants(template, cleaned, existing)
        if not changed and not languages:
            return template
        try:
            with transaction.atomic():
                template.save(update_fields=[*changed, "updated_at"])
        except IntegrityError:
            if "shortcut" in changed:
                raise _shortcut_race(shortcut) from None
            raise
        _record(
            "reply_template.updated", actor=actor, template=template,
            changed=[field.removesuffix("_id") for field in changed], languages=languages,
        )
    return template


def template_set_active(*, actor: AbstractBaseUser, template: ReplyTemplate, active: bool) -> ReplyTemplate:
    """Offer the template to agents again, or stop offering it (it is kept, with its usage count)."""
    _require_lead(actor)
    with transaction.atomic():
        template = ReplyTemplate.objects.select_for_update().get(pk=template.pk)
        if template.active == active:
            return template
        template.active = active
        template.save(update_fields=["active", "updated_at"])
        _record("reply_template.activated" if active else "reply_template.deactivated", actor=actor, template=template)
    return template
