"""Routing rules: facts about a new ticket in, a RoutingDecision out.

Pure: no database, no settings. ``compile_rules`` turns rule rows (model instances or
plain mappings) into matchers once; ``decide`` runs them for every new ticket and
``explain`` says, rule by rule, why each did or did not match (the "try it" preview).

Semantics (docs/routing.md has the long version):

* Rules run by position (then id). A condition left empty does not constrain; a rule
  matches when every condition it sets holds.
* A matching rule stops evaluation unless it has ``continue_matching``; then later
  matches accumulate: tags add up, and a later match overrides queue, priority and SLA
  policy when it sets them. Noise and approval, once set by a match, stay set.
* No matching rule names a queue: the source's default queue, else the desk's. A
  ticket marked noise is kept but not routed: it goes to no queue unless a matching
  rule names one.
* Times are wall-clock times in the desk time zone (``RoutingFacts.local_time``). A
  window whose start is after its end runs across midnight, and its weekdays are the
  days the window starts on (Friday 22:00-06:00 covers Saturday 03:00).
* A condition on something unknown (no follower count, no sentiment, no local time)
  does not hold.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, time, tzinfo
from operator import attrgetter
from typing import Any

import regex
from django.utils.dates import WEEKDAYS
from django.utils.translation import gettext as _

logger = logging.getLogger(__name__)

#: A user's regular expression gets this long per message; past it the condition does not
#: hold (and a warning is logged) instead of stalling ingest on catastrophic backtracking.
REGEX_TIMEOUT_SECONDS = 0.02
REGEX_FLAGS = regex.IGNORECASE
#: Ticket priorities (Ticket.Priority: low, normal, high, urgent).
PRIORITIES = range(0, 4)
VISIBILITIES = ("", "public", "private")
MAX_TAG_LENGTH = 60


# --- Facts and decision --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoutingFacts:
    """What routing may know about the first message of a new ticket."""

    source_id: int
    platform: str
    is_public: bool
    language: str
    text: str
    followers_count: int | None
    verified: bool
    source_default_queue_id: int | None
    desk_default_queue_id: int | None
    sentiment: float | None = None
    vip: bool = False
    # The customer has another ticket that is new, open or pending.
    has_open_ticket: bool = False
    # Wall-clock time and weekday (0 = Monday) in the desk time zone: see ``local_clock``.
    local_time: time | None = None
    weekday: int | None = None


def local_clock(instant: datetime, zone: tzinfo) -> tuple[time, int]:
    """Wall-clock time and weekday (0 = Monday) of ``instant`` in ``zone``.

    Converting the aware instant (never adding a fixed offset) keeps it right across
    daylight-saving changes.
    """
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError("local_clock needs an aware datetime")
    local = instant.astimezone(zone)
    return local.time(), local.weekday()


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    queue_id: int | None
    priority: int | None = None
    tags: tuple[str, ...] = ()
    sla_policy_id: int | None = None
    is_noise: bool = False
    requires_approval: bool = False
    # Matched rules, in evaluation order.
    rule_ids: tuple[int, ...] = ()
    # One line for the audit event: which rules matched and where the queue came from.
    reason: str = ""

    @property
    def rule_id(self) -> int | None:
        """The first matching rule (the one a ticket records as its routing rule)."""
        return self.rule_ids[0] if self.rule_ids else None


# --- Compiled rules ----------------------------------------------------------------------

# A residual check: (facts, casefolded text) -> holds.
_Check = Callable[[RoutingFacts, str], bool]


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition a rule sets: its field, its test and why it failed."""

    field: str
    test: _Check
    why_not: Callable[[RoutingFacts], str]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: int
    name: str
    position: int
    continue_matching: bool
    # Every condition the rule sets, in the order ``explain`` reports them.
    conditions: tuple[Condition, ...]
    # The conditions the candidate index does not decide, cheapest first.
    residual: tuple[_Check, ...]
    queue_id: int | None
    priority: int | None
    tags: tuple[str, ...]
    sla_policy_id: int | None
    mark_noise: bool
    requires_approval: bool
    # Why the stored rule cannot run (it then never matches); "" when it is fine.
    error: str = ""

    @property
    def label(self) -> str:
        return f'#{self.id} "{self.name}"'


@dataclass(frozen=True, slots=True)
class _Dimension:
    """A condition on one exact value (platform, source, language, flags) as bit masks."""

    key: Callable[[RoutingFacts], Any]
    unconstrained: int
    by_value: dict[Any, int]


@dataclass(frozen=True, slots=True)
class _KeywordIndex:
    """Every rule's words and phrases, so one pass over a message finds all the rules they match.

    A keyword of word characters only (in a spaced script) matches exactly when it is one of
    the text's words; a phrase of such words is looked for only when its first word occurs;
    other keywords (punctuation at an edge, CJK) are searched rule by rule.
    """

    rules: int = 0
    words: dict[str, int] = field(default_factory=dict)
    phrases: dict[str, tuple[tuple[re.Pattern[str], int], ...]] = field(default_factory=dict)
    others: tuple[tuple[re.Pattern[str], int], ...] = ()

    def hits(self, text: str, wanted: int) -> int:
        """Mask of the rules among ``wanted`` with a keyword in ``text`` (made by normalize_text)."""
        found = 0
        words, phrases = self.words, self.phrases
        for word in set(_WORD.findall(text)):
            found |= words.get(word, 0)
            for pattern, bits in phrases.get(word, ()):
                if bits & wanted & ~found and pattern.search(text):
                    found |= bits
        for pattern, bit in self.others:
            if bit & wanted & ~found and pattern.search(text):
                found |= bit
        return found & wanted


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRules:
    """Rules ready to run. Bit ``i`` of a mask stands for ``rules[i]``."""

    rules: tuple[CompiledRule, ...] = ()
    # Identifies the rule set it was compiled from (cache version); "" when not cached.
    version: str = ""
    # Rule id → why it cannot run, for rules stored with data validation would refuse.
    errors: Mapping[int, str] = field(default_factory=dict)
    runnable: int = 0
    dimensions: tuple[_Dimension, ...] = ()
    keywords: _KeywordIndex = field(default_factory=_KeywordIndex)

    def __len__(self) -> int:
        return len(self.rules)

    def candidates(self, facts: RoutingFacts) -> int:
        """Mask of the rules whose exact-value conditions all hold for ``facts``."""
        mask = self.runnable
        for dim in self.dimensions:
            mask &= dim.unconstrained | dim.by_value.get(dim.key(facts), 0)
            if not mask:
                break
        return mask


class RuleSpecError(ValueError):
    """A stored rule holds a value of the wrong shape (validation would have refused it)."""


def _get(row: Any, name: str, default: Any = None) -> Any:
    if isinstance(row, Mapping):
        return row.get(name, default)
    return getattr(row, name, default)


def _source_ids(row: Any) -> list[Any]:
    if isinstance(row, Mapping):
        return list(row.get("source_ids", row.get("sources")) or ())
    found = getattr(row, "source_ids", None)
    if found is not None:
        return list(found)
    # A model instance: its sources, prefetched by the caller (a query otherwise).
    if getattr(row, "pk", None) is None:
        return []
    return [source.pk for source in row.sources.all()]


def _fk(row: Any, name: str) -> int | None:
    value = _get(row, f"{name}_id")
    if value is None and isinstance(row, Mapping):
        value = row.get(name)
    return None if value is None else int(value)


def _values(value: Any, name: str) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    raise RuleSpecError(f"{name} must be a list, not {type(value).__name__}")


def split_keywords(text: str) -> list[str]:
    """The words and phrases of a rule: one per line, blank lines ignored, duplicates once."""
    seen: dict[str, None] = {}
    for line in (text or "").splitlines():
        phrase = " ".join(line.split())
        if phrase:
            seen.setdefault(phrase, None)
    return list(seen)


def normalize_text(text: str) -> str:
    """How keywords and message text are compared: NFC, then case-folded (ß = ss)."""
    return unicodedata.normalize("NFC", text).casefold()


# Scripts written without spaces between words: a keyword in them matches inside a run
# of letters (遅延 in フライトが遅延しています), Korean too, where particles attach to words.
_UNSPACED = re.compile(
    r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)


def _needs_boundary(char: str) -> bool:
    return (char.isalnum() or char == "_") and not _UNSPACED.match(char)


_WORD = re.compile(r"\w+")


def _is_plain_word(word: str) -> bool:
    """Word characters only, none from a script without spaces: matches exactly as a whole word."""
    return _WORD.fullmatch(word) is not None and not _UNSPACED.search(word)


def keyword_pattern(keywords: Iterable[str]) -> re.Pattern[str] | None:
    """One alternation of whole words and phrases, over text made with ``normalize_text``.

    A phrase matches with any run of white space between its words. "Whole word": the
    match may not start or end inside a word, except in scripts without spaces.
    """
    parts: list[str] = []
    for phrase in sorted({normalize_text(k) for k in keywords if k.strip()}, key=lambda k: (-len(k), k)):
        body = r"\s+".join(re.escape(word) for word in phrase.split())
        head = r"(?<!\w)" if _needs_boundary(phrase[0]) else ""
        tail = r"(?!\w)" if _needs_boundary(phrase[-1]) else ""
        parts.append(f"{head}{body}{tail}")
    if not parts:
        return None
    return re.compile("|".join(parts))


def compile_regex(pattern: str) -> regex.Pattern[str]:
    """A rule's regular expression as routing runs it (case-insensitive); raises regex.error."""
    return regex.compile(pattern, REGEX_FLAGS)


def _in_window(start: time | None, end: time | None, at: time) -> bool:
    if start is not None and end is not None and start > end:  # across midnight
        return at >= start or at < end
    return (start is None or at >= start) and (end is None or at < end)


def _window_weekday(start: time | None, end: time | None, at: time, weekday: int) -> int:
    """The weekday a window started on: after midnight of an overnight window, the day before."""
    if start is not None and end is not None and start > end and at < end:
        return (weekday - 1) % 7
    return weekday


def _names(values: Iterable[Any]) -> str:
    return ", ".join(str(v) for v in sorted(values, key=str))


def _hhmm(value: time | None) -> str:
    return value.strftime("%H:%M") if value is not None else "…"


def _rule_conditions(row: Any) -> tuple[list[Condition], list[tuple[str, frozenset[Any]]]]:
    """The rule's conditions in form order, and its exact-value ones as (facts field, accepted values)."""
    conditions: list[Condition] = []
    indexed: list[tuple[str, frozenset[Any]]] = []

    sources = {int(v) for v in _values(_source_ids(row), "sources")}
    if sources:
        indexed.append(("source_id", frozenset(sources)))
        conditions.append(
            Condition(
                "sources",
                lambda f, t, s=frozenset(sources): f.source_id in s,
                lambda f, s=sources: _("source #%(source)s is not one of %(wanted)s")
                % {"source": f.source_id, "wanted": _names(f"#{v}" for v in s)},
            )
        )
    platforms = {str(v) for v in _values(_get(row, "platforms"), "platforms")}
    if platforms:
        indexed.append(("platform", frozenset(platforms)))
        conditions.append(
            Condition(
                "platforms",
                lambda f, t, s=frozenset(platforms): f.platform in s,
                lambda f, s=platforms: _("platform “%(platform)s” is not one of %(wanted)s")
                % {"platform": f.platform, "wanted": _names(s)},
            )
        )
    visibility = _get(row, "visibility") or ""
    if visibility not in VISIBILITIES:
        raise RuleSpecError(f"visibility must be one of {VISIBILITIES}, not {visibility!r}")
    if visibility:
        public = visibility == "public"
        indexed.append(("is_public", frozenset({public})))
        conditions.append(
            Condition(
                "visibility",
                lambda f, t, p=public: f.is_public is p,
                lambda f, p=public: _("the message is private; the rule wants public messages")
                if p
                else _("the message is public; the rule wants private messages"),
            )
        )
    languages = {str(v) for v in _values(_get(row, "languages"), "languages")}
    if languages:
        indexed.append(("language", frozenset(languages)))
        conditions.append(
            Condition(
                "languages",
                lambda f, t, s=frozenset(languages): f.language in s,
                lambda f, s=languages: (
                    _("language “%(language)s” is not one of %(wanted)s")
                    % {"language": f.language, "wanted": _names(s)}
                    if f.language
                    else _("language unknown; the rule wants %(wanted)s") % {"wanted": _names(s)}
                ),
            )
        )
    for name, yes, no in (
        ("verified", _("the account is not verified"), _("the account is verified")),
        ("vip", _("the customer is not a VIP"), _("the customer is a VIP")),
        (
            "has_open_ticket",
            _("the customer has no other open ticket"),
            _("the customer already has an open ticket"),
        ),
    ):
        wanted = _get(row, name)
        if wanted is None:
            continue
        wanted = bool(wanted)
        indexed.append((name, frozenset({wanted})))
        conditions.append(
            Condition(
                name,
                lambda f, t, n=name, w=wanted: bool(getattr(f, n)) is w,
                lambda f, w=wanted, yes=yes, no=no: yes if w else no,
            )
        )

    min_followers = _get(row, "min_followers")
    if min_followers is not None:
        least = int(min_followers)
        conditions.append(
            Condition(
                "min_followers",
                lambda f, t, n=least: f.followers_count is not None and f.followers_count >= n,
                lambda f, n=least: (
                    _("%(count)s followers, fewer than %(least)s") % {"count": f.followers_count, "least": n}
                    if f.followers_count is not None
                    else _("follower count unknown")
                ),
            )
        )
    below, above = _get(row, "sentiment_below"), _get(row, "sentiment_above")
    if below is not None:
        limit = float(below)
        conditions.append(
            Condition(
                "sentiment_below",
                lambda f, t, x=limit: f.sentiment is not None and f.sentiment < x,
                lambda f, x=limit: (
                    _("sentiment %(score).2f is not below %(limit).2f") % {"score": f.sentiment, "limit": x}
                    if f.sentiment is not None
                    else _("sentiment unknown")
                ),
            )
        )
    if above is not None:
        limit = float(above)
        conditions.append(
            Condition(
                "sentiment_above",
                lambda f, t, x=limit: f.sentiment is not None and f.sentiment > x,
                lambda f, x=limit: (
                    _("sentiment %(score).2f is not above %(limit).2f") % {"score": f.sentiment, "limit": x}
                    if f.sentiment is not None
                    else _("sentiment unknown")
                ),
            )
        )
    start, end = _get(row, "active_from"), _get(row, "active_until")
    if start is not None or end is not None:
        if (start is not None and not isinstance(start, time)) or (
            end is not None and not isinstance(end, time)
        ):
            raise RuleSpecError("active_from and active_until must be times")
        conditions.append(
            Condition(
                "active_from",
                lambda f, t, a=start, b=end: f.local_time is not None and _in_window(a, b, f.local_time),
                lambda f, a=start, b=end: (
                    _("local time %(time)s is outside %(start)s–%(end)s")
                    % {"time": _hhmm(f.local_time), "start": _hhmm(a), "end": _hhmm(b)}
                    if f.local_time is not None
                    else _("local time unknown")
                ),
            )
        )
    weekdays = _values(_get(row, "active_weekdays"), "active_weekdays")
    if weekdays:
        days = frozenset(int(d) for d in weekdays)
        if not days <= set(range(7)):
            raise RuleSpecError(f"weekdays must be 0..6, not {sorted(days)}")

        def on_day(f: RoutingFacts, t: str, a: time | None = start, b: time | None = end) -> bool:
            if f.weekday is None:
                return False
            if f.local_time is None:
                return f.weekday in days
            return _window_weekday(a, b, f.local_time, f.weekday) in days

        def not_on_day(f: RoutingFacts, a: time | None = start, b: time | None = end) -> str:
            if f.weekday is None:
                return _("weekday unknown")
            day = f.weekday if f.local_time is None else _window_weekday(a, b, f.local_time, f.weekday)
            return _("%(day)s is not one of %(wanted)s") % {
                "day": WEEKDAYS[day],
                "wanted": ", ".join(str(WEEKDAYS[d]) for d in sorted(days)),
            }

        conditions.append(Condition("active_weekdays", on_day, not_on_day))

    keywords = keyword_pattern(split_keywords(_get(row, "keywords") or ""))
    if keywords is not None:
        conditions.append(
            Condition(
                "keywords",
                lambda f, t, p=keywords: p.search(t) is not None,
                lambda f: _("none of the words or phrases occurs"),
            )
        )
    pattern_text = _get(row, "text_regex") or ""
    if pattern_text:
        pattern = compile_regex(pattern_text)
        rule_label = f"#{_get(row, 'id')}"

        def regex_holds(f: RoutingFacts, t: str, p: regex.Pattern[str] = pattern) -> bool:
            try:
                return p.search(f.text, timeout=REGEX_TIMEOUT_SECONDS) is not None
            except TimeoutError:
                logger.warning(
                    "routing: regular expression of rule %s timed out; treated as no match", rule_label
                )
                return False

        conditions.append(
            Condition("text_regex", regex_holds, lambda f: _("the regular expression does not match"))
        )
    return conditions, indexed


_DIMENSION_KEYS: dict[str, Callable[[RoutingFacts], Any]] = {
    name: attrgetter(name)
    for name in ("source_id", "platform", "is_public", "language", "verified", "vip", "has_open_ticket")
}


def _broken(row: Any, rule_id: int, error: str) -> CompiledRule:
    return CompiledRule(
        id=rule_id, name=str(_get(row, "name") or ""), position=int(_get(row, "position") or 0),
        continue_matching=False, conditions=(), residual=(), queue_id=None, priority=None, tags=(),
        sla_policy_id=None, mark_noise=False, requires_approval=False, error=error,
    )  # fmt: skip


# Conditions neither the dimension masks nor the keyword index decide, cheapest first (the
# order they are added in).
_RESIDUAL_FIELDS = frozenset(
    {"min_followers", "sentiment_below", "sentiment_above", "active_from", "active_weekdays", "text_regex"}
)


def _compile_one(row: Any, rule_id: int) -> tuple[CompiledRule, list[tuple[str, frozenset[Any]]]]:
    conditions, indexed = _rule_conditions(row)
    priority = _get(row, "set_priority")
    if priority is not None and int(priority) not in PRIORITIES:
        raise RuleSpecError(f"priority must be 0..3, not {priority!r}")
    tags = tuple(
        dict.fromkeys(
            str(tag).strip() for tag in _values(_get(row, "add_tags"), "add_tags") if str(tag).strip()
        )
    )
    rule = CompiledRule(
        id=rule_id,
        name=str(_get(row, "name") or ""),
        position=int(_get(row, "position") or 0),
        continue_matching=bool(_get(row, "continue_matching")),
        conditions=tuple(conditions),
        # Cheapest first: numbers, then clock, then text.
        residual=tuple(c.test for c in conditions if c.field in _RESIDUAL_FIELDS),
        queue_id=_fk(row, "queue"),
        priority=None if priority is None else int(priority),
        tags=tags,
        sla_policy_id=_fk(row, "sla_policy"),
        mark_noise=bool(_get(row, "mark_noise")),
        requires_approval=bool(_get(row, "requires_approval")),
    )
    return rule, indexed


def compile_rules(rows: Iterable[Any], *, version: str = "") -> CompiledRules:
    """Rules ready for ``decide``: enabled rows, ordered by (position, id).

    ``rows`` are RoutingRule instances (with ``source_ids`` set, or sources prefetched) or
    mappings with the same field names (``queue_id``/``queue``, ``sla_policy_id``/
    ``sla_policy``, ``source_ids``/``sources``). A stored rule that cannot run (say a
    regular expression saved around validation) never matches and is listed in
    ``errors``; it never stops routing.
    """
    enabled = [row for row in rows if _get(row, "enabled", True)]
    enabled.sort(key=lambda row: (int(_get(row, "position") or 0), int(_get(row, "id") or 0)))
    compiled: list[CompiledRule] = []
    errors: dict[int, str] = {}
    unconstrained: dict[str, int] = dict.fromkeys(_DIMENSION_KEYS, 0)
    by_value: dict[str, dict[Any, int]] = {name: {} for name in _DIMENSION_KEYS}
    runnable = 0
    keyword_rules = 0
    words: dict[str, int] = {}
    phrases: dict[str, dict[str, int]] = {}
    others: list[tuple[re.Pattern[str], int]] = []
    for index, row in enumerate(enabled):
        bit = 1 << index
        rule_id = int(_get(row, "id") or 0)
        try:
            rule, indexed = _compile_one(row, rule_id)
        except (RuleSpecError, regex.error, TypeError, ValueError) as exc:
            errors[rule_id] = str(exc)
            logger.error("routing: rule #%s cannot run and is skipped: %s", rule_id, exc)
            compiled.append(_broken(row, rule_id, str(exc)))
            continue
        compiled.append(rule)
        runnable |= bit
        keywords = [normalize_text(k) for k in split_keywords(_get(row, "keywords") or "")]
        if keywords:
            keyword_rules |= bit
            searched = []
            for keyword in keywords:
                parts = keyword.split()
                if not all(_is_plain_word(part) for part in parts):
                    searched.append(keyword)
                elif len(parts) == 1:
                    words[keyword] = words.get(keyword, 0) | bit
                else:
                    same_start = phrases.setdefault(parts[0], {})
                    same_start[keyword] = same_start.get(keyword, 0) | bit
            if searched:
                others.append((keyword_pattern(searched), bit))
        constrained = {name for name, _accepted in indexed}
        for name in _DIMENSION_KEYS:
            if name not in constrained:
                unconstrained[name] |= bit
        for name, values in indexed:
            for value in values:
                by_value[name][value] = by_value[name].get(value, 0) | bit
    dimensions = tuple(
        _Dimension(key=_DIMENSION_KEYS[name], unconstrained=unconstrained[name], by_value=by_value[name])
        for name in _DIMENSION_KEYS
        if unconstrained[name] & runnable != runnable  # some rule constrains it
    )
    keyword_index = _KeywordIndex(
        rules=keyword_rules,
        words=words,
        phrases={
            first: tuple((keyword_pattern([phrase]), bits) for phrase, bits in same_start.items())
            for first, same_start in phrases.items()
        },
        others=tuple(others),
    )
    return CompiledRules(
        rules=tuple(compiled), version=version, errors=errors, runnable=runnable,
        dimensions=dimensions, keywords=keyword_index,
    )  # fmt: skip


NO_RULES = compile_rules(())


# --- Deciding -------------------------------------------------------------------------------


def _default_queue(facts: RoutingFacts) -> tuple[int | None, str]:
    if facts.source_default_queue_id is not None:
        return facts.source_default_queue_id, "source default queue"
    if facts.desk_default_queue_id is not None:
        return facts.desk_default_queue_id, "desk default queue"
    return None, "no default queue"


def _decision(facts: RoutingFacts, matched: list[CompiledRule]) -> RoutingDecision:
    queue_id = priority = sla_policy_id = None
    tags: dict[str, None] = {}
    noise = approval = False
    for rule in matched:
        if rule.queue_id is not None:
            queue_id = rule.queue_id
        if rule.priority is not None:
            priority = rule.priority
        if rule.sla_policy_id is not None:
            sla_policy_id = rule.sla_policy_id
        tags.update(dict.fromkeys(rule.tags))
        noise = noise or rule.mark_noise
        approval = approval or rule.requires_approval
    reasons = []
    if matched:
        word = "rule" if len(matched) == 1 else "rules"
        reasons.append(f"{word} {', '.join(rule.label for rule in matched)}")
    if queue_id is None:
        if noise:
            reasons.append("noise: not routed")
        else:
            queue_id, where = _default_queue(facts)
            reasons.append(where)
    return RoutingDecision(
        queue_id=queue_id, priority=priority, tags=tuple(tags), sla_policy_id=sla_policy_id,
        is_noise=noise, requires_approval=approval, rule_ids=tuple(rule.id for rule in matched),
        reason="; ".join(reasons),
    )  # fmt: skip


def decide(facts: RoutingFacts, rules: CompiledRules = NO_RULES) -> RoutingDecision:
    """Where a new ticket goes, and what else its first message sets (see the module doc)."""
    mask = rules.candidates(facts)
    index = rules.keywords
    if mask & index.rules:
        # Rules with keywords stay candidates only when one of their keywords occurs.
        mask &= ~index.rules | index.hits(normalize_text(facts.text), mask & index.rules)
    ordered = rules.rules
    matched: list[CompiledRule] = []
    while mask:
        lowest = mask & -mask
        mask ^= lowest
        rule = ordered[lowest.bit_length() - 1]
        for check in rule.residual:
            if not check(facts, ""):
                break
        else:
            matched.append(rule)
            if not rule.continue_matching:
                break
    return _decision(facts, matched)


# --- Explaining (the preview) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule fared for one message."""

    class Outcome:
        MATCHED = "matched"
        NOT_MATCHED = "not_matched"
        NOT_REACHED = "not_reached"
        BROKEN = "broken"

    rule_id: int
    name: str
    position: int
    outcome: str
    # The first condition that did not hold (its field name) and why, for "not_matched";
    # the stopping rule for "not_reached"; the error for "broken".
    failed_condition: str = ""
    detail: str = ""


def explain(facts: RoutingFacts, rules: CompiledRules) -> tuple[RoutingDecision, tuple[RuleTrace, ...]]:
    """The decision and, for every rule in order, whether it matched and if not why not.

    Evaluates each condition in the order of the rule form, so "why not" names the
    first condition that failed; the decision is ``decide``'s.
    """
    decision = decide(facts, rules)
    text = normalize_text(facts.text)
    traces: list[RuleTrace] = []
    stopped_by: CompiledRule | None = None
    for rule in rules.rules:
        base = {"rule_id": rule.id, "name": rule.name, "position": rule.position}
        if rule.error:
            traces.append(RuleTrace(**base, outcome=RuleTrace.Outcome.BROKEN, detail=rule.error))
            continue
        if stopped_by is not None:
            traces.append(
                RuleTrace(
                    **base, outcome=RuleTrace.Outcome.NOT_REACHED,
                    detail=_("rule %(rule)s matched earlier and stopped evaluation") % {"rule": stopped_by.label},
                )
            )  # fmt: skip
            continue
        failed = next((c for c in rule.conditions if not c.test(facts, text)), None)
        if failed is None:
            traces.append(RuleTrace(**base, outcome=RuleTrace.Outcome.MATCHED))
            if not rule.continue_matching:
                stopped_by = rule
        else:
            traces.append(
                RuleTrace(
                    **base, outcome=RuleTrace.Outcome.NOT_MATCHED,
                    failed_condition=failed.field, detail=failed.why_not(facts),
                )
            )  # fmt: skip
    return decision, tuple(traces)


# --- Validation (forms and serializers) ----------------------------------------------------

#: Texts a saved regular expression must get through within the timeout: long messages,
#: and the runs of one letter that make nested repetition such as (a+)+ backtrack.
_REGEX_PROBES = (
    "Where is my bag? I have been waiting for three hours at the belt and nobody answers. " * 24,
    "a" * 2000 + "!",
    "x" * 2000 + "!",
    " " * 2000 + "!",
)


def regex_error(pattern: str) -> str:
    """Why ``pattern`` cannot be a rule's regular expression, or "" when it can."""
    try:
        compiled = compile_regex(pattern)
    except regex.error as exc:
        if exc.pos is not None:
            return _("Not a valid regular expression: %(error)s at position %(position)d.") % {
                "error": exc.msg,
                "position": exc.pos,
            }
        return _("Not a valid regular expression: %(error)s.") % {"error": exc.msg}
    for probe in _REGEX_PROBES:
        try:
            compiled.search(probe, timeout=REGEX_TIMEOUT_SECONDS)
        except TimeoutError:
            return _(
                "This regular expression is too slow: it takes longer than %(ms)d ms on a long message. "
                "Avoid nested repetition such as (a+)+."
            ) % {"ms": round(REGEX_TIMEOUT_SECONDS * 1000)}
    return ""


def rule_errors(
    values: Mapping[str, Any], *, languages: Collection[str], platforms: Collection[str]
) -> dict[str, list[str]]:
    """Field → messages for rule values that cannot be saved; empty when all is well.

    ``values`` uses the model's field names (any subset); ``languages`` and
    ``platforms`` are what the desk accepts.
    """
    errors: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if "name" in values and not str(values["name"] or "").strip():
        add("name", _("Give the rule a name."))
    if values.get("text_regex"):
        message = regex_error(values["text_regex"])
        if message:
            add("text_regex", message)
    for name, allowed in (("languages", languages), ("platforms", platforms)):
        chosen = values.get(name) or []
        if not isinstance(chosen, list | tuple):
            add(name, _("Give a list."))
            continue
        unknown = [str(v) for v in chosen if v not in allowed]
        if unknown:
            add(
                name,
                _("Not available here: %(unknown)s. Choose from %(allowed)s.")
                % {"unknown": ", ".join(unknown), "allowed": ", ".join(allowed)},
            )
    if values.get("visibility", "") not in VISIBILITIES:
        add("visibility", _("Choose public, private or leave empty."))
    weekdays = values.get("active_weekdays") or []
    if not isinstance(weekdays, list | tuple) or any(
        isinstance(d, bool) or not isinstance(d, int) or not 0 <= d <= 6 for d in weekdays
    ):
        add("active_weekdays", _("Weekdays are numbers from 0 (Monday) to 6 (Sunday)."))
    priority = values.get("set_priority")
    if priority is not None and (isinstance(priority, bool) or priority not in PRIORITIES):
        add("set_priority", _("Priority is 0 (low), 1 (normal), 2 (high) or 3 (urgent)."))
    for name in ("sentiment_below", "sentiment_above"):
        score = values.get(name)
        if score is not None and not -1.0 <= score <= 1.0:
            add(name, _("Sentiment runs from -1 to 1."))
    below, above = values.get("sentiment_below"), values.get("sentiment_above")
    if below is not None and above is not None and below <= above and "sentiment_below" not in errors:
        add(
            "sentiment_below",
            _("Sentiment below %(below)s and above %(above)s can never both hold.")
            % {"below": below, "above": above},
        )
    start, end = values.get("active_from"), values.get("active_until")
    if start is not None and end is not None and start == end:
        add("active_until", _("The window is empty: from and until are the same time."))
    tags = values.get("add_tags") or []
    if not isinstance(tags, list | tuple) or any(not isinstance(t, str) or not t.strip() for t in tags):
        add("add_tags", _("Tags are non-empty names."))
    elif any(len(t.strip()) > MAX_TAG_LENGTH for t in tags):
        add("add_tags", _("A tag name has at most %(count)d characters.") % {"count": MAX_TAG_LENGTH})
    return errors
