"""The rule engine: every condition, every action, first match and accumulation, clocks, bad input.

Pure: rules are plain mappings with the model's field names, facts are RoutingFacts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import factory
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inbox.routing.engine import (
    NO_RULES,
    RoutingDecision,
    RoutingFacts,
    RuleTrace,
    compile_rules,
    decide,
    explain,
    keyword_pattern,
    local_clock,
    normalize_text,
    rule_errors,
)
from tests.routing.factories import FactsFactory

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
DESK_LANGUAGES = ["nl", "en", "fr", "de", "es", "it", "pt", "ja", "zh", "ko"]
PLATFORMS = ["x", "facebook", "instagram", "mastodon", "bluesky", "messenger"]


class RuleSpecFactory(factory.DictFactory):
    """A rule as compile_rules takes it: the model's field names, nothing set but the name."""

    id = factory.Sequence(lambda n: n + 1)
    name = factory.LazyAttribute(lambda o: f"rule {o.id}")
    position = factory.LazyAttribute(lambda o: o.id * 10)


def route(facts: RoutingFacts, *specs: dict) -> RoutingDecision:
    return decide(facts, compile_rules(specs))


def why_not(facts: RoutingFacts, spec: dict) -> tuple[str, str]:
    _, (trace,) = explain(facts, compile_rules([spec]))
    return trace.failed_condition, trace.detail


# --- Defaults ------------------------------------------------------------------------------


def test_without_rules_the_source_default_queue_takes_the_ticket():
    assert decide(FactsFactory()) == RoutingDecision(queue_id=100, reason="source default queue")


def test_without_a_source_default_the_desk_default_queue_takes_it():
    assert decide(FactsFactory(source_default_queue_id=None), NO_RULES) == RoutingDecision(
        queue_id=200, reason="desk default queue"
    )


def test_without_any_default_the_ticket_has_no_queue():
    facts = FactsFactory(source_default_queue_id=None, desk_default_queue_id=None)
    assert decide(facts) == RoutingDecision(queue_id=None, reason="no default queue")


def test_a_matching_rule_without_a_queue_keeps_the_default_queue():
    decision = route(
        FactsFactory(), RuleSpecFactory(id=7, name="Tag bags", keywords="bag", add_tags=["baggage"])
    )

    assert decision == RoutingDecision(
        queue_id=100, tags=("baggage",), rule_ids=(7,), reason='rule #7 "Tag bags"; source default queue'
    )


# --- Conditions ------------------------------------------------------------------------------


CONDITIONS = [
    # (rule conditions, facts that match, facts that do not, failed condition, why not)
    ({"sources": [1, 2]}, {"source_id": 2}, {"source_id": 3}, "sources", "source #3 is not one of #1, #2"),
    ({"source_ids": [5]}, {"source_id": 5}, {"source_id": 1}, "sources", "source #1 is not one of #5"),
    (
        {"platforms": ["facebook", "instagram"]},
        {"platform": "instagram"},
        {"platform": "x"},
        "platforms",
        "platform “x” is not one of facebook, instagram",
    ),
    (
        {"visibility": "public"},
        {"is_public": True},
        {"is_public": False},
        "visibility",
        "the message is private; the rule wants public messages",
    ),
    (
        {"visibility": "private"},
        {"is_public": False},
        {"is_public": True},
        "visibility",
        "the message is public; the rule wants private messages",
    ),
    (
        {"languages": ["nl", "de"]},
        {"language": "de"},
        {"language": "en"},
        "languages",
        "language “en” is not one of de, nl",
    ),
    (
        {"languages": ["nl"]},
        {"language": "nl"},
        {"language": ""},
        "languages",
        "language unknown; the rule wants nl",
    ),
    ({"verified": True}, {"verified": True}, {"verified": False}, "verified", "the account is not verified"),
    ({"verified": False}, {"verified": False}, {"verified": True}, "verified", "the account is verified"),
    ({"vip": True}, {"vip": True}, {"vip": False}, "vip", "the customer is not a VIP"),
    ({"vip": False}, {"vip": False}, {"vip": True}, "vip", "the customer is a VIP"),
    (
        {"has_open_ticket": True},
        {"has_open_ticket": True},
        {"has_open_ticket": False},
        "has_open_ticket",
        "the customer has no other open ticket",
    ),
    (
        {"has_open_ticket": False},
        {"has_open_ticket": False},
        {"has_open_ticket": True},
        "has_open_ticket",
        "the customer already has an open ticket",
    ),
    (
        {"min_followers": 10_000},
        {"followers_count": 10_000},
        {"followers_count": 9_999},
        "min_followers",
        "9999 followers, fewer than 10000",
    ),
    (
        {"min_followers": 0},
        {"followers_count": 0},
        {"followers_count": None},
        "min_followers",
        "follower count unknown",
    ),
    (
        {"sentiment_below": -0.5},
        {"sentiment": -0.51},
        {"sentiment": -0.5},
        "sentiment_below",
        "sentiment -0.50 is not below -0.50",
    ),
    (
        {"sentiment_below": 0.5},
        {"sentiment": 0.0},
        {"sentiment": None},
        "sentiment_below",
        "sentiment unknown",
    ),
    (
        {"sentiment_above": 0.6},
        {"sentiment": 0.61},
        {"sentiment": 0.6},
        "sentiment_above",
        "sentiment 0.60 is not above 0.60",
    ),
    (
        {"keywords": "lost bag\nmissing luggage"},
        {"text": "I think I have a LOST  bag at Schiphol"},
        {"text": "I lost my bag"},
        "keywords",
        "none of the words or phrases occurs",
    ),
    (
        {"text_regex": r"\bKL\s?\d{3,4}\b"},
        {"text": "flight kl 1234 is late"},
        {"text": "flight AF1234 is late"},
        "text_regex",
        "the regular expression does not match",
    ),
    (
        {"active_from": time(9), "active_until": time(17)},
        {"local_time": time(16, 59)},
        {"local_time": time(17)},
        "active_from",
        "local time 17:00 is outside 09:00–17:00",
    ),
    (
        {"active_from": time(9)},
        {"local_time": time(9)},
        {"local_time": None},
        "active_from",
        "local time unknown",
    ),
    (
        {"active_weekdays": [5, 6]},
        {"weekday": 6},
        {"weekday": 4},
        "active_weekdays",
        "Friday is not one of Saturday, Sunday",
    ),
    ({"active_weekdays": [0]}, {"weekday": 0}, {"weekday": None}, "active_weekdays", "weekday unknown"),
]


@pytest.mark.parametrize(
    ("conditions", "matching", "failing", "field", "why"),
    CONDITIONS,
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_each_condition_holds_or_says_why_not(conditions, matching, failing, field, why):
    spec = RuleSpecFactory(id=1, name="under test", queue_id=42, **conditions)

    assert route(FactsFactory(**matching), spec).queue_id == 42
    not_matched = route(FactsFactory(**failing), spec)
    assert not_matched.queue_id == 100
    assert not_matched.rule_ids == ()
    assert why_not(FactsFactory(**failing), spec) == (field, why)


def test_a_rule_matches_only_when_every_condition_it_sets_holds():
    spec = RuleSpecFactory(
        platforms=["x"], languages=["nl"], min_followers=1000, keywords="vertraging", queue_id=9
    )
    facts = FactsFactory(platform="x", language="nl", followers_count=5000, text="Weer vertraging!")

    assert route(facts, spec).queue_id == 9
    assert (
        route(FactsFactory(platform="x", language="nl", followers_count=5000, text="Top!"), spec).queue_id
        == 100
    )
    assert (
        route(
            FactsFactory(platform="x", language="en", followers_count=5000, text="vertraging"), spec
        ).queue_id
        == 100
    )


def test_the_first_failing_condition_is_reported_in_form_order():
    spec = RuleSpecFactory(platforms=["facebook"], languages=["nl"], keywords="refund")

    assert why_not(FactsFactory(platform="x", language="en", text="hello"), spec)[0] == "platforms"
    assert why_not(FactsFactory(platform="facebook", language="en", text="hello"), spec)[0] == "languages"
    assert why_not(FactsFactory(platform="facebook", language="nl", text="hello"), spec)[0] == "keywords"


@pytest.mark.parametrize(
    ("keywords", "text", "matches"),
    [
        ("bag", "Where is my BAG?", True),
        ("bag", "my baggage is late", False),  # whole words only
        ("bag", "handbag lost", False),
        ("lost bag", "lost\n\tbag", True),  # any white space inside a phrase
        ("vertraging", "Weer VERTRAGING bij KLM", True),
        ("annulé", "Vol ANNULÉ ce matin", True),  # case-insensitive beyond ASCII
        ("straße", "Chaos in der HAUPTSTRASSE", False),
        ("hauptstraße", "Chaos in der HAUPTSTRASSE", True),  # case folding: ß = ss
        ("#klmfail", "again #KLMfail today", True),
        ("c++", "I code in C++ all day", True),
        ("遅延", "フライトが遅延しています", True),  # no word spaces in Japanese
        ("환불", "환불은 언제 되나요", True),  # Korean particles attach to the word
        ("refund\n\n  \ncompensation", "I want compensation", True),  # blank lines ignored
    ],
)
def test_keywords_match_whole_words_in_any_case(keywords, text, matches):
    spec = RuleSpecFactory(keywords=keywords, queue_id=9)
    assert (route(FactsFactory(text=text), spec).queue_id == 9) is matches


def test_keywords_compile_to_one_alternation():
    pattern = keyword_pattern(["Lost bag", "refund", "遅延"])

    assert pattern.pattern == r"(?<!\w)lost\s+bag(?!\w)|(?<!\w)refund(?!\w)|遅延"
    assert pattern.search(normalize_text("Refund please")) is not None


def test_the_regular_expression_ignores_case():
    spec = RuleSpecFactory(text_regex=r"^urgent", queue_id=9)

    assert route(FactsFactory(text="URGENT: help"), spec).queue_id == 9
    assert route(FactsFactory(text="not urgent"), spec).queue_id == 100


# --- Time of day -------------------------------------------------------------------------------

NIGHT = {"active_from": time(22), "active_until": time(6)}


@pytest.mark.parametrize(
    ("at", "matches"),
    [
        (time(21, 59), False),
        (time(22), True),
        (time(23, 59), True),
        (time(0), True),
        (time(5, 59), True),
        (time(6), False),
    ],
)
def test_a_window_whose_start_is_after_its_end_runs_across_midnight(at, matches):
    spec = RuleSpecFactory(queue_id=9, **NIGHT)
    assert (route(FactsFactory(local_time=at), spec).queue_id == 9) is matches


@pytest.mark.parametrize(
    ("weekday", "at", "matches"),
    [
        (4, time(23), True),  # Friday night
        (5, time(3), True),  # Saturday 03:00 is still Friday's night shift
        (4, time(3), False),  # Friday 03:00 belongs to Thursday's night
        (5, time(23), False),  # Saturday night is not Friday's
    ],
)
def test_weekdays_of_an_overnight_window_are_the_days_it_starts_on(weekday, at, matches):
    spec = RuleSpecFactory(queue_id=9, active_weekdays=[4], **NIGHT)
    assert (route(FactsFactory(weekday=weekday, local_time=at), spec).queue_id == 9) is matches


def test_a_window_with_only_an_end_runs_from_midnight():
    spec = RuleSpecFactory(queue_id=9, active_until=time(8))

    assert route(FactsFactory(local_time=time(7, 59)), spec).queue_id == 9
    assert route(FactsFactory(local_time=time(8)), spec).queue_id == 100


def test_overnight_weekday_reason_names_the_day_the_window_started():
    spec = RuleSpecFactory(active_weekdays=[0], **NIGHT)

    assert why_not(FactsFactory(weekday=5, local_time=time(2)), spec) == (
        "active_weekdays",
        "Friday is not one of Monday",
    )


@pytest.mark.parametrize(
    ("instant", "local", "weekday"),
    [
        # Spring forward (last Sunday of March 2026): 02:00 CET becomes 03:00 CEST.
        (datetime(2026, 3, 29, 0, 30, tzinfo=UTC), time(1, 30), 6),
        (datetime(2026, 3, 29, 1, 30, tzinfo=UTC), time(3, 30), 6),
        # Fall back (last Sunday of October 2026): 02:30 happens twice.
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), time(2, 30), 6),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), time(2, 30), 6),
        # A Monday morning in winter and in summer.
        (datetime(2026, 1, 5, 8, 0, tzinfo=UTC), time(9, 0), 0),
        (datetime(2026, 7, 6, 8, 0, tzinfo=UTC), time(10, 0), 0),
        # Just before midnight UTC is already the next day in Amsterdam.
        (datetime(2026, 7, 5, 22, 30, tzinfo=UTC), time(0, 30), 0),
    ],
)
def test_local_clock_follows_daylight_saving_time(instant, local, weekday):
    assert local_clock(instant, AMSTERDAM) == (local, weekday)


def test_rules_see_wall_clock_time_on_both_sides_of_a_dst_change():
    spec = RuleSpecFactory(queue_id=9, active_from=time(2), active_until=time(3))

    def at(instant: datetime) -> RoutingFacts:
        local_time, weekday = local_clock(instant, AMSTERDAM)
        return FactsFactory(local_time=local_time, weekday=weekday)

    # 02:00-03:00 does not exist on the spring-forward night, and happens twice in autumn.
    assert route(at(datetime(2026, 3, 29, 0, 59, tzinfo=UTC)), spec).queue_id == 100
    assert route(at(datetime(2026, 3, 29, 1, 0, tzinfo=UTC)), spec).queue_id == 100
    assert route(at(datetime(2026, 10, 25, 0, 15, tzinfo=UTC)), spec).queue_id == 9
    assert route(at(datetime(2026, 10, 25, 1, 15, tzinfo=UTC)), spec).queue_id == 9


def test_local_clock_refuses_a_naive_datetime():
    with pytest.raises(ValueError, match="aware"):
        local_clock(datetime(2026, 3, 29, 1, 30), AMSTERDAM)


# --- Actions ---------------------------------------------------------------------------------


def test_every_action_of_a_matching_rule_applies():
    spec = RuleSpecFactory(
        id=3, name="Press", keywords="journalist", queue_id=9, set_priority=3, add_tags=["press", "pr"],
        sla_policy_id=4, requires_approval=True,
    )  # fmt: skip

    assert route(FactsFactory(text="I am a journalist"), spec) == RoutingDecision(
        queue_id=9, priority=3, tags=("press", "pr"), sla_policy_id=4, is_noise=False,
        requires_approval=True, rule_ids=(3,), reason='rule #3 "Press"',
    )  # fmt: skip


def test_noise_is_kept_but_not_routed():
    spec = RuleSpecFactory(id=2, name="Spam", keywords="free bitcoin", mark_noise=True, add_tags=["spam"])

    assert route(FactsFactory(text="FREE bitcoin here"), spec) == RoutingDecision(
        queue_id=None,
        tags=("spam",),
        is_noise=True,
        rule_ids=(2,),
        reason='rule #2 "Spam"; noise: not routed',
    )


def test_noise_goes_to_the_queue_a_matching_rule_names():
    spec = RuleSpecFactory(id=2, name="Spam review", keywords="bitcoin", mark_noise=True, queue_id=13)

    decision = route(FactsFactory(text="bitcoin"), spec)

    assert (decision.queue_id, decision.is_noise, decision.reason) == (13, True, 'rule #2 "Spam review"')


# --- First match and accumulation ------------------------------------------------------------


def test_the_first_matching_rule_stops_evaluation():
    first = RuleSpecFactory(id=1, name="Dutch", languages=["nl"], queue_id=11, add_tags=["nl"])
    second = RuleSpecFactory(
        id=2, name="Bags", keywords="koffer", queue_id=12, add_tags=["bag"], set_priority=2
    )

    decision = route(FactsFactory(language="nl", text="Mijn koffer is weg"), first, second)

    assert decision == RoutingDecision(queue_id=11, tags=("nl",), rule_ids=(1,), reason='rule #1 "Dutch"')


def test_continue_matching_accumulates_and_later_matches_win():
    tag_all = RuleSpecFactory(
        id=1, name="VIP", vip=True, continue_matching=True, add_tags=["vip"], set_priority=3, queue_id=5,
        requires_approval=True,
    )  # fmt: skip
    dutch = RuleSpecFactory(
        id=2, name="Dutch", languages=["nl"], continue_matching=True, add_tags=["nl", "vip"], queue_id=11,
        sla_policy_id=7,
    )  # fmt: skip
    unmatched = RuleSpecFactory(id=3, name="French", languages=["fr"], queue_id=30, set_priority=0)
    bags = RuleSpecFactory(id=4, name="Bags", keywords="koffer", add_tags=["bag"], set_priority=2)
    after_stop = RuleSpecFactory(id=5, name="Everything", queue_id=99, add_tags=["never"])

    decision = route(
        FactsFactory(vip=True, language="nl", text="Waar is mijn koffer?"),
        tag_all,
        dutch,
        unmatched,
        bags,
        after_stop,
    )

    assert decision == RoutingDecision(
        queue_id=11,  # from Dutch: Bags sets no queue
        priority=2,  # from Bags, the last match that sets one
        tags=("vip", "nl", "bag"),  # added up, each once, in order
        sla_policy_id=7,
        is_noise=False,
        requires_approval=True,  # stays set
        rule_ids=(1, 2, 4),
        reason='rules #1 "VIP", #2 "Dutch", #4 "Bags"',
    )


def test_rules_run_by_position_then_id_and_disabled_rules_never_match():
    late = RuleSpecFactory(id=1, name="Late", position=50, queue_id=1)
    early = RuleSpecFactory(id=2, name="Early", position=10, queue_id=2)
    tie_low = RuleSpecFactory(id=3, name="Tie low id", position=20, queue_id=3, enabled=False)
    tie_high = RuleSpecFactory(id=4, name="Tie high id", position=20, queue_id=4)

    rules = compile_rules([late, tie_high, tie_low, early])

    assert [rule.id for rule in rules.rules] == [2, 4, 1]
    assert decide(FactsFactory(), rules).queue_id == 2


def test_the_preview_marks_rules_after_a_stop_as_not_reached():
    first = RuleSpecFactory(id=1, name="Keeps going", continue_matching=True, add_tags=["a"])
    second = RuleSpecFactory(id=2, name="French", languages=["fr"])
    third = RuleSpecFactory(id=3, name="Stops", keywords="bag", queue_id=8)
    fourth = RuleSpecFactory(id=4, name="Never reached", queue_id=9)

    decision, traces = explain(FactsFactory(text="my bag"), compile_rules([first, second, third, fourth]))

    assert decision.rule_ids == (1, 3)
    assert traces == (
        RuleTrace(1, "Keeps going", 10, RuleTrace.Outcome.MATCHED),
        RuleTrace(2, "French", 20, RuleTrace.Outcome.NOT_MATCHED, "languages", "language “en” is not one of fr"),
        RuleTrace(3, "Stops", 30, RuleTrace.Outcome.MATCHED),
        RuleTrace(
            4, "Never reached", 40, RuleTrace.Outcome.NOT_REACHED, "",
            'rule #3 "Stops" matched earlier and stopped evaluation',
        ),
    )  # fmt: skip


# The index that skips rules by exact values must never change which rules match.
_fact_values = st.fixed_dictionaries(
    {
        "source_id": st.sampled_from([1, 2, 3]),
        "platform": st.sampled_from(["x", "facebook", "instagram"]),
        "is_public": st.booleans(),
        "language": st.sampled_from(["", "nl", "en", "fr"]),
        "text": st.sampled_from(
            [
                "Where is my bag?",
                "refund NOW",
                "free bitcoin",
                "vertraging koffer",
                "",
                "LOST\n bag!!",
                "lost baggage",
                "I code C++",
                "フライトが遅延しています",
                "bag-lost #KLMfail",
                "a lost  bag",
            ]
        ),
        "followers_count": st.one_of(st.none(), st.integers(0, 20_000)),
        "verified": st.booleans(),
        "vip": st.booleans(),
        "has_open_ticket": st.booleans(),
        "sentiment": st.one_of(st.none(), st.floats(-1, 1)),
        "local_time": st.one_of(st.none(), st.times()),
        "weekday": st.one_of(st.none(), st.integers(0, 6)),
    }
)
_MIXED_RULES = compile_rules(
    [
        RuleSpecFactory(id=1, sources=[1], platforms=["x"], continue_matching=True, add_tags=["a"]),
        RuleSpecFactory(id=2, visibility="private", vip=True, continue_matching=True, queue_id=2),
        RuleSpecFactory(id=3, languages=["nl", "fr"], keywords="koffer\nbag", continue_matching=True),
        RuleSpecFactory(
            id=9, position=5, keywords="lost bag\nc++\n遅延", continue_matching=True, add_tags=["k"]
        ),
        RuleSpecFactory(id=10, position=6, keywords="lost\n#klmfail", continue_matching=True, add_tags=["l"]),
        RuleSpecFactory(
            id=11, position=7, keywords="bag\nlost bag\nlost baggage", vip=False, continue_matching=True
        ),
        RuleSpecFactory(id=4, verified=True, min_followers=5000, sentiment_below=0, queue_id=4),
        RuleSpecFactory(
            id=5, has_open_ticket=False, active_from=time(22), active_until=time(6), active_weekdays=[4, 5]
        ),
        RuleSpecFactory(
            id=6, text_regex=r"refund|bitcoin", sentiment_above=-0.5, platforms=["facebook", "x"]
        ),
        RuleSpecFactory(id=7, sources=[2, 3], verified=False, continue_matching=True, add_tags=["b"]),
        RuleSpecFactory(id=8, queue_id=8),
    ]
)


@settings(max_examples=300, deadline=None)
@given(_fact_values)
def test_decide_matches_exactly_the_rules_the_preview_says_match(values):
    facts = FactsFactory(**values)

    decision, traces = explain(facts, _MIXED_RULES)

    assert decide(facts, _MIXED_RULES) == decision
    assert decision.rule_ids == tuple(t.rule_id for t in traces if t.outcome == RuleTrace.Outcome.MATCHED)


# --- Bad input never crashes routing -----------------------------------------------------------


def test_a_stored_rule_that_cannot_run_never_matches_and_the_others_still_do(caplog):
    broken_regex = RuleSpecFactory(id=1, name="Broken", text_regex="(unclosed", queue_id=66)
    broken_days = RuleSpecFactory(id=2, name="Bad days", active_weekdays=[9], queue_id=66)
    broken_platforms = RuleSpecFactory(id=3, name="Bad platforms", platforms="x", queue_id=66)
    fine = RuleSpecFactory(id=4, name="Fine", queue_id=9)

    with caplog.at_level(logging.ERROR, logger="inbox.routing.engine"):
        rules = compile_rules([broken_regex, broken_days, broken_platforms, fine])
    decision, traces = explain(FactsFactory(text="(unclosed"), rules)

    assert rules.errors == {
        1: "missing ) at position 9",
        2: "weekdays must be 0..6, not [9]",
        3: "platforms must be a list, not str",
    }
    assert decision.queue_id == 9
    assert decision.rule_ids == (4,)
    assert [(t.rule_id, t.outcome) for t in traces] == [
        (1, RuleTrace.Outcome.BROKEN), (2, RuleTrace.Outcome.BROKEN), (3, RuleTrace.Outcome.BROKEN),
        (4, RuleTrace.Outcome.MATCHED),
    ]  # fmt: skip
    assert len(caplog.records) == 3


def test_a_regular_expression_that_backtracks_forever_times_out_as_no_match(caplog):
    spec = RuleSpecFactory(id=1, text_regex=r"(a|aa)+$", queue_id=9)

    with caplog.at_level(logging.WARNING, logger="inbox.routing.engine"):
        decision = route(FactsFactory(text="a" * 60 + "!"), spec)

    assert decision.queue_id == 100
    assert [r.getMessage() for r in caplog.records] == [
        "routing: regular expression of rule #1 timed out; treated as no match"
    ]


# --- Validation ----------------------------------------------------------------------------------


def errors_for(**values) -> dict[str, list[str]]:
    return rule_errors(values, languages=DESK_LANGUAGES, platforms=PLATFORMS)


def test_valid_rule_values_have_no_errors():
    assert errors_for(
        name="Night VIP", text_regex=r"\bKL\d{3,4}\b", languages=["nl", "ja"], platforms=["x"], set_priority=3,
        active_weekdays=[0, 6], sentiment_below=0.5, sentiment_above=-0.5, active_from=time(22),
        active_until=time(6), add_tags=["vip"], visibility="public",
    ) == {}  # fmt: skip


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        (
            {"text_regex": "(abc"},
            {"text_regex": ["Not a valid regular expression: missing ) at position 4."]},
        ),
        (
            {"text_regex": "[z-a]"},
            {"text_regex": ["Not a valid regular expression: bad character range at position 4."]},
        ),
        (
            {"text_regex": "(a|aa)+$"},
            {
                "text_regex": [
                    "This regular expression is too slow: it takes longer than 20 ms on a long message. "
                    "Avoid nested repetition such as (a+)+."
                ]
            },
        ),
        ({"name": "  "}, {"name": ["Give the rule a name."]}),
        ({"set_priority": 4}, {"set_priority": ["Priority is 0 (low), 1 (normal), 2 (high) or 3 (urgent)."]}),
        (
            {"set_priority": True},
            {"set_priority": ["Priority is 0 (low), 1 (normal), 2 (high) or 3 (urgent)."]},
        ),
        (
            {"active_weekdays": [0, 7]},
            {"active_weekdays": ["Weekdays are numbers from 0 (Monday) to 6 (Sunday)."]},
        ),
        (
            {"active_weekdays": ["mon"]},
            {"active_weekdays": ["Weekdays are numbers from 0 (Monday) to 6 (Sunday)."]},
        ),
        (
            {"languages": ["nl", "ru"]},
            {"languages": ["Not available here: ru. Choose from nl, en, fr, de, es, it, pt, ja, zh, ko."]},
        ),
        ({"languages": "nl"}, {"languages": ["Give a list."]}),
        (
            {"platforms": ["myspace"]},
            {
                "platforms": [
                    "Not available here: myspace. Choose from x, facebook, instagram, mastodon, bluesky, messenger."
                ]
            },
        ),
        ({"visibility": "both"}, {"visibility": ["Choose public, private or leave empty."]}),
        ({"sentiment_below": -1.5}, {"sentiment_below": ["Sentiment runs from -1 to 1."]}),
        (
            {"sentiment_below": -0.2, "sentiment_above": 0.3},
            {"sentiment_below": ["Sentiment below -0.2 and above 0.3 can never both hold."]},
        ),
        (
            {"active_from": time(8), "active_until": time(8)},
            {"active_until": ["The window is empty: from and until are the same time."]},
        ),
        ({"add_tags": ["ok", " "]}, {"add_tags": ["Tags are non-empty names."]}),
        ({"add_tags": ["x" * 61]}, {"add_tags": ["A tag name has at most 60 characters."]}),
    ],
)
def test_invalid_rule_values_are_refused_precisely(values, errors):
    assert errors_for(**values) == errors
