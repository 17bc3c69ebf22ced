"""Routing rule changes: create, update, delete, reorder.

Every change is checked (``rule_errors``: a regular expression that does not compile or
is too slow, priorities, weekdays, desk languages ...), written in one transaction with
a ``routing_rule.*`` TicketEvent (no ticket: leads see who changed routing), and, after
commit, moves the rules' version token so every process recompiles
(inbox/selectors/routing.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import time
from typing import Any, TypedDict

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _
from redis.exceptions import RedisError

from inbox.models import Platform, Queue, RoutingRule, SlaPolicy, Source
from inbox.realtime.publish import publish_on_commit
from inbox.routing.engine import rule_errors, split_keywords
from inbox.routing.language import desk_languages
from inbox.selectors.routing import RULES_VERSION_KEY, forget_compiled_rules
from inbox.services.events import event_for

logger = logging.getLogger(__name__)

#: Gap between positions written by the services, so a rule can be slotted in between.
POSITION_STEP = 10


class RoutingRuleFields(TypedDict, total=False):
    """Rule values by model field name; foreign keys by id."""

    name: str
    position: int
    enabled: bool
    platforms: list[str]
    visibility: str
    languages: list[str]
    keywords: str
    text_regex: str
    min_followers: int | None
    verified: bool | None
    vip: bool | None
    sentiment_below: float | None
    sentiment_above: float | None
    active_from: time | None
    active_until: time | None
    active_weekdays: list[int]
    has_open_ticket: bool | None
    queue_id: int | None
    set_priority: int | None
    add_tags: list[str]
    sla_policy_id: int | None
    mark_noise: bool
    requires_approval: bool
    continue_matching: bool


FIELDS: tuple[str, ...] = tuple(RoutingRuleFields.__annotations__)


def routing_rules_changed() -> None:
    """Tell every process the rules changed: a new version token, and this process's copy dropped."""
    forget_compiled_rules()
    try:
        cache.set(RULES_VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except RedisError:
        # The table fingerprint (count, latest updated_at) still tells the other processes.
        logger.warning("routing: could not move the rule version token", exc_info=True)


def _normalized(fields: RoutingRuleFields) -> dict[str, Any]:
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise TypeError(f"unknown routing rule fields: {sorted(unknown)}")
    values: dict[str, Any] = dict(fields)
    if "name" in values:
        values["name"] = str(values["name"]).strip()
    if "keywords" in values:
        values["keywords"] = "\n".join(split_keywords(values["keywords"] or ""))
    if "add_tags" in values and isinstance(values["add_tags"], list | tuple):
        values["add_tags"] = list(dict.fromkeys(str(t).strip() for t in values["add_tags"]))
    for name in ("platforms", "languages"):
        if name in values and isinstance(values[name], list | tuple):
            values[name] = list(dict.fromkeys(values[name]))
    if "active_weekdays" in values and isinstance(values["active_weekdays"], list | tuple):
        values["active_weekdays"] = sorted(set(values["active_weekdays"]))
    return values


def _check(rule: RoutingRule, values: dict[str, Any], source_ids: Sequence[int] | None) -> None:
    current = {name: getattr(rule, name) for name in FIELDS}
    errors = rule_errors(
        {**current, **values},
        languages=desk_languages(),
        platforms=[value for value, _label in Platform.choices],
    )
    if values.get("queue_id") is not None and not Queue.objects.filter(pk=values["queue_id"]).exists():
        errors.setdefault("queue", []).append(_("No queue with this id."))
    if (
        values.get("sla_policy_id") is not None
        and not SlaPolicy.objects.filter(pk=values["sla_policy_id"]).exists()
    ):
        errors.setdefault("sla_policy", []).append(_("No SLA policy with this id."))
    if source_ids:
        missing = set(source_ids) - set(
            Source.objects.filter(pk__in=set(source_ids)).values_list("pk", flat=True)
        )
        if missing:
            errors.setdefault("sources", []).append(
                _("No source with id %(ids)s.") % {"ids": ", ".join(str(i) for i in sorted(missing))}
            )
    for name, value in values.items():
        setattr(rule, name, value)
    try:
        # Lengths, blanks and choices of the model; fields already found wrong are not repeated.
        rule.full_clean(exclude=["queue", "sla_policy", "sources", *errors], validate_unique=False)
    except ValidationError as exc:
        for name, messages in exc.message_dict.items():
            errors.setdefault(name, []).extend(messages)
    if errors:
        raise ValidationError(errors)


def _publish(type_: str, *, actor: AbstractBaseUser | None, **payload: Any) -> None:
    event = event_for(None, type_, actor_id=actor.pk if actor is not None else None, **payload)
    event.save()
    publish_on_commit([event])
    transaction.on_commit(routing_rules_changed)


def routing_rule_create(
    *, fields: RoutingRuleFields, source_ids: Sequence[int] = (), actor: AbstractBaseUser | None = None
) -> RoutingRule:
    """A new rule; placed after every other rule unless ``fields`` has a position."""
    values = _normalized(fields)
    with transaction.atomic():
        rule = RoutingRule()
        if "position" not in values:
            last = RoutingRule.objects.aggregate(last=Max("position"))["last"]
            values["position"] = (last or 0) + POSITION_STEP
        _check(rule, values, source_ids)
        rule.save()
        if source_ids:
            rule.sources.set(sorted(set(source_ids)))
        _publish("routing_rule.created", actor=actor, rule_id=rule.pk, name=rule.name, position=rule.position)
    return rule


def routing_rule_update(
    *,
    rule_id: int,
    fields: RoutingRuleFields,
    source_ids: Sequence[int] | None = None,
    actor: AbstractBaseUser | None = None,
) -> RoutingRule:
    """Change the given fields (and the sources, when ``source_ids`` is not None)."""
    values = _normalized(fields)
    with transaction.atomic():
        rule = RoutingRule.objects.select_for_update().get(pk=rule_id)
        before = {name: getattr(rule, name) for name in values}
        old_sources = sorted(rule.sources.values_list("pk", flat=True))
        _check(rule, values, source_ids)
        changed = sorted(name for name in values if before[name] != values[name])
        new_sources = sorted(set(source_ids)) if source_ids is not None else old_sources
        if new_sources != old_sources:
            changed.append("sources")
        if not changed:
            return rule
        # updated_at moves on every change: the table fingerprint relies on it.
        rule.updated_at = timezone.now()
        rule.save()
        if new_sources != old_sources:
            rule.sources.set(new_sources)
        _publish("routing_rule.updated", actor=actor, rule_id=rule.pk, name=rule.name, changed=changed)
    return rule


def routing_rule_delete(*, rule_id: int, actor: AbstractBaseUser | None = None) -> None:
    with transaction.atomic():
        rule = RoutingRule.objects.select_for_update().get(pk=rule_id)
        name = rule.name
        rule.delete()
        _publish("routing_rule.deleted", actor=actor, rule_id=rule_id, name=name)


def routing_rules_reorder(
    *, rule_ids: Sequence[int], actor: AbstractBaseUser | None = None
) -> list[RoutingRule]:
    """Put every rule in the order of ``rule_ids`` (which must list each rule exactly once)."""
    with transaction.atomic():
        rules = {rule.pk: rule for rule in RoutingRule.objects.select_for_update().order_by("pk")}
        if len(rule_ids) != len(set(rule_ids)) or set(rule_ids) != set(rules):
            missing = sorted(set(rules) - set(rule_ids))
            unknown = sorted(set(rule_ids) - set(rules))
            parts = [_("List every rule exactly once.")]
            if missing:
                parts.append(_("Missing: %(ids)s.") % {"ids": ", ".join(map(str, missing))})
            if unknown:
                parts.append(_("Unknown: %(ids)s.") % {"ids": ", ".join(map(str, unknown))})
            raise ValidationError({"rule_ids": " ".join(parts)})
        now = timezone.now()
        ordered = [rules[pk] for pk in rule_ids]
        moved = []
        for index, rule in enumerate(ordered, start=1):
            if rule.position != index * POSITION_STEP:
                rule.position = index * POSITION_STEP
                rule.updated_at = now
                moved.append(rule)
        if moved:
            RoutingRule.objects.bulk_update(moved, ["position", "updated_at"])
            _publish("routing_rules.reordered", actor=actor, rule_ids=list(rule_ids))
    return ordered
