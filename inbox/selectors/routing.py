"""Reads for routing: the compiled rules (cached per process), facts about customers, the preview.

The compiled rules are kept per process and checked at most every
``ROUTING_RULES_CHECK_SECONDS`` (default 1 s) against two signals, so a change made in
any process reaches every other one within that time:

* a version token in the shared cache (Redis), replaced by the rule services after
  every commit that changes a rule;
* a fingerprint of the table (number of rules, latest ``updated_at``), which the
  services also move on every change. It catches a token that was lost (Redis flushed
  or unreachable at the moment of the change).

Either one differing from what the rules were compiled with means a reload. The token
is read before the rows, so a change committed while reloading is seen at the next check.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.cache import cache
from django.db.models import Count, Max, Prefetch, QuerySet
from django.utils import timezone
from redis.exceptions import RedisError

from inbox.models import Customer, Queue, RoutingRule, SlaPolicy, Source, Ticket
from inbox.routing.engine import (
    CompiledRules,
    RoutingDecision,
    RoutingFacts,
    RuleTrace,
    compile_rules,
    explain,
    local_clock,
)
from inbox.routing.language import detect_language, normalize_language_tag, score_sentiment
from inbox.selectors.tickets import user_is_lead

logger = logging.getLogger(__name__)

#: Cache key of the version token (the cache adds its own "webcare" prefix).
RULES_VERSION_KEY = "routing:rules:version"
_CHUNK = 900


@dataclass(frozen=True, slots=True)
class _Memo:
    compiled: CompiledRules
    token: str | None
    fingerprint: tuple[int, str]
    checked_at: float


_memo: _Memo | None = None
_memo_lock = threading.Lock()


def _check_seconds() -> float:
    return float(settings.WEBCARE.get("ROUTING_RULES_CHECK_SECONDS", 1.0))


def routing_rules_token() -> str | None:
    """The shared version token (made anew if the cache lost it); None when Redis is down."""
    try:
        token = cache.get(RULES_VERSION_KEY)
        if token is None:
            # Every process that finds it missing proposes one; the first one stays.
            cache.add(RULES_VERSION_KEY, uuid.uuid4().hex, timeout=None)
            token = cache.get(RULES_VERSION_KEY)
    except RedisError:
        logger.warning(
            "routing: rule version token unreadable; relying on the table fingerprint", exc_info=True
        )
        return None
    return token


def _fingerprint() -> tuple[int, str]:
    found = RoutingRule.objects.aggregate(count=Count("id"), latest=Max("updated_at"))
    latest = found["latest"]
    return found["count"], latest.isoformat() if latest is not None else ""


def routing_rule_rows(*, enabled_only: bool = True) -> list[RoutingRule]:
    """Rules in evaluation order, each with ``source_ids`` set (two queries)."""
    rules = RoutingRule.objects.order_by("position", "id")
    if enabled_only:
        rules = rules.filter(enabled=True)
    rows = list(rules)
    links = RoutingRule.sources.through.objects.filter(routingrule_id__in=[r.pk for r in rows])
    source_ids: dict[int, list[int]] = defaultdict(list)
    for rule_id, source_id in links.values_list("routingrule_id", "source_id").order_by("source_id"):
        source_ids[rule_id].append(source_id)
    for row in rows:
        row.source_ids = source_ids.get(row.pk, [])
    return rows


def user_is_desk_user(user: AbstractBaseUser | AnonymousUser) -> bool:
    """Agents, leads and admins: who may read the routing rules."""
    if not user.is_authenticated:
        return False
    return user.is_staff or user_is_lead(user) or getattr(user, "agent_profile", None) is not None


def routing_rules_visible_to(user: AbstractBaseUser | AnonymousUser) -> QuerySet[RoutingRule]:
    """All rules in evaluation order for desk users (with their sources), none for anyone else."""
    rules = RoutingRule.objects.order_by("position", "id").prefetch_related(
        Prefetch("sources", queryset=Source.objects.only("id"))
    )
    return rules if user_is_desk_user(user) else rules.none()


def routing_rules_compiled() -> CompiledRules:
    """The enabled rules, compiled, as every process currently sees them (see module doc)."""
    global _memo
    memo = _memo
    now = time.monotonic()
    if memo is not None and now - memo.checked_at < _check_seconds():
        return memo.compiled
    with _memo_lock:
        memo = _memo
        if memo is not None and now - memo.checked_at < _check_seconds():
            return memo.compiled  # another thread just checked
        token = routing_rules_token()
        fingerprint = _fingerprint()
        if memo is not None and token is not None and memo.token == token and memo.fingerprint == fingerprint:
            _memo = _Memo(memo.compiled, token, fingerprint, now)
            return memo.compiled
        version = f"{token or '-'}:{fingerprint[0]}:{fingerprint[1]}"
        compiled = compile_rules(routing_rule_rows(), version=version)
        _memo = _Memo(compiled, token, fingerprint, now)
        return compiled


def forget_compiled_rules() -> None:
    """Drop this process's copy: the next ``routing_rules_compiled`` reloads."""
    global _memo
    with _memo_lock:
        _memo = None


# --- Facts about customers, batched for ingest ----------------------------------------------


def customers_vip(customer_ids: Iterable[int]) -> set[int]:
    """The VIPs among ``customer_ids``."""
    ids = sorted(set(customer_ids))
    found: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found.update(Customer.objects.filter(pk__in=chunk, vip=True).values_list("pk", flat=True))
    return found


def customers_with_open_tickets(customer_ids: Iterable[int]) -> set[int]:
    """The customers among ``customer_ids`` with a ticket that is new, open or pending."""
    ids = sorted(set(customer_ids))
    found: set[int] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found.update(
            Ticket.objects.filter(customer_id__in=chunk, status__in=Ticket.ACTIVE_STATUSES)
            .values_list("customer_id", flat=True)
            .distinct()
        )
    return found


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def desk_time_zone() -> ZoneInfo:
    """The zone rule times are written in: the desk's ``TIME_ZONE``."""
    return _zone(settings.TIME_ZONE)


def desk_default_queue_id() -> int | None:
    """The desk's default queue, chosen as ingest chooses it."""
    return Queue.objects.filter(is_default=True).order_by("name").values_list("id", flat=True).first()


# --- The "try it" preview -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutingPreview:
    """What routing would do with one sample message, and why."""

    language: str
    # True when the language came from detection (or the hint), False when it was given.
    language_detected: bool
    sentiment: float | None
    facts: RoutingFacts
    decision: RoutingDecision
    traces: tuple[RuleTrace, ...]
    queue_name: str
    sla_policy_name: str
    rules_version: str


def routing_preview(
    *,
    text: str,
    platform: str = "",
    source: Source | None = None,
    is_public: bool = True,
    followers_count: int | None = None,
    verified: bool = False,
    vip: bool = False,
    has_open_ticket: bool = False,
    language: str = "",
    language_hint: str = "",
    sentiment: float | None = None,
    created_at: datetime | None = None,
) -> RoutingPreview:
    """Route a sample message with the rules in force, without storing anything.

    ``language`` given is used as is; otherwise it is detected (``language_hint`` being the
    platform's tag). ``sentiment`` given is used as is; otherwise it is scored.
    ``created_at`` defaults to now; naive values are read in the desk time zone.
    """
    zone = desk_time_zone()
    instant = created_at or timezone.now()
    if timezone.is_naive(instant):
        instant = instant.replace(tzinfo=zone)
    detected = not language
    if detected:
        language = detect_language(text, hint=language_hint)
    else:
        language = normalize_language_tag(language)
    if sentiment is None:
        sentiment = score_sentiment(text, language)
    local_time, weekday = local_clock(instant, zone)
    facts = RoutingFacts(
        source_id=source.pk if source is not None else 0,
        platform=platform or (source.platform if source is not None else ""),
        is_public=is_public,
        language=language,
        text=text,
        followers_count=followers_count,
        verified=verified,
        source_default_queue_id=source.default_queue_id if source is not None else None,
        desk_default_queue_id=desk_default_queue_id(),
        sentiment=sentiment,
        vip=vip,
        has_open_ticket=has_open_ticket,
        local_time=local_time,
        weekday=weekday,
    )
    rules = routing_rules_compiled()
    decision, traces = explain(facts, rules)
    queue_name = ""
    if decision.queue_id is not None:
        queue_name = Queue.objects.filter(pk=decision.queue_id).values_list("name", flat=True).first() or ""
    sla_policy_name = ""
    if decision.sla_policy_id is not None:
        sla_policy_name = (
            SlaPolicy.objects.filter(pk=decision.sla_policy_id).values_list("name", flat=True).first() or ""
        )
    return RoutingPreview(
        language=language,
        language_detected=detected,
        sentiment=sentiment,
        facts=facts,
        decision=decision,
        traces=traces,
        queue_name=queue_name,
        sla_policy_name=sla_policy_name,
        rules_version=rules.version,
    )
