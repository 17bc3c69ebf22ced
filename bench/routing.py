"""Routing cost per inbound message: the rule engine, and language + sentiment detection.

    .venv/bin/python bench/routing.py [--quick] [--json FILE]

What it measures (CPU time of this process, one core, no database):

* **decide**: ``decide(facts, rules)`` with 200 compiled rules of a realistic mix (most do
  not match a given message; keyword lists and regular expressions among them), for
  messages in ten languages from the labelled sample, on a desk of 300 agents in 30 queues.
  Routing facts carry no agent data, so the agents only shape the rules' queues: the cost
  grows with rules, not with agents.
* **baseline**: in the same run, one dictionary lookup per rule (200 per message), the
  floor any per-rule work sits on; the ratio says how many lookups a decision costs.
* **explain**: the "try it" preview, which checks every condition of every rule.
* **detect_language + score_sentiment**: per message, after the detector is built; and
  the one-off cost of building it.

``main()`` prints the "Routing" section and returns the numbers, so a combined benchmark
script can call it beside other sections. ``--quick`` shrinks the run (CI smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import time as clock
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

SEED = 20261102
RULES = 200
AGENTS = 300
QUEUES = 30
SOURCES = 12
PLATFORMS = ("x", "facebook", "instagram", "messenger", "mastodon", "bluesky")
LANGUAGES = ("nl", "en", "fr", "de", "es", "it", "pt", "ja", "zh", "ko")
#: Budget per message for 200 rules: "well under 1 ms".
TARGET_DECIDE_US = 250.0

KEYWORD_POOL = (
    "lost bag", "missing luggage", "delayed bag", "koffer kwijt", "bagage perdu", "koffer weg", "maleta perdida",
    "refund", "terugbetaling", "remboursement", "erstattung", "reembolso", "rimborso", "reembolso urgente",
    "compensation", "vergoeding", "indemnisation", "entschädigung", "compensación", "risarcimento",
    "wheelchair", "rolstoel", "fauteuil roulant", "rollstuhl", "silla de ruedas", "sedia a rotelle",
    "cancelled", "geannuleerd", "annulé", "gestrichen", "cancelado", "cancellato",
    "journalist", "press office", "journaliste", "periodista", "giornalista", "jornalista",
    "lawyer", "advocaat", "avocat", "anwalt", "abogado", "avvocato",
    "bomb", "fire", "emergency", "noodgeval", "urgence", "notfall",
    "free bitcoin", "crypto giveaway", "follow back", "dm for promo",
    "pet", "huisdier", "animal", "haustier", "mascota", "animale",
    "upgrade", "miles", "lounge", "status match", "gold card", "platinum",
    "rude", "onbeleefd", "impoli", "unhöflich", "grosero", "scortese",
    "遅延", "欠航", "航班取消", "退款", "환불", "결항",
)  # fmt: skip
REGEX_POOL = (
    r"\b[A-Z0-9]{6}\b",  # booking reference
    r"\bKL\s?\d{3,4}\b",  # flight number
    r"\b[\w.+-]+@[\w-]+\.[\w.]+\b",  # e-mail address
    r"\+?\d[\d\s-]{8,}\d",  # phone number
    r"\b(?:AMS|CDG|JFK|LHR|FRA)\b",
    r"(?:!{3,}|\?{3,})",
    r"\bPIR\s?[A-Z]{5}\d{5}\b",  # baggage claim reference
    r"^(?:urgent|dringend|urgente)\b",
)


@dataclass(frozen=True)
class Desk:
    queues: list[int]
    agents: list[dict[str, Any]]


def build_desk(rng: random.Random) -> Desk:
    """300 agents spread over 30 queues, each speaking two or three desk languages."""
    queues = list(range(1, QUEUES + 1))
    agents = [
        {
            "id": 1000 + n,
            "queues": rng.sample(queues, 2),
            "languages": rng.sample(LANGUAGES, rng.choice((2, 3))),
        }
        for n in range(AGENTS)
    ]
    return Desk(queues=queues, agents=agents)


def build_rules(rng: random.Random, desk: Desk) -> list[dict[str, Any]]:
    """200 rules as a big desk writes them: by channel and language, by words, by account, by time."""
    rules: list[dict[str, Any]] = []

    def add(**spec: Any) -> None:
        index = len(rules) + 1
        rules.append({"id": index, "name": f"rule {index}", "position": index * 10, **spec})

    # A few catch-nothing-but-spam rules first, as desks do.
    for _ in range(4):
        add(keywords="\n".join(rng.sample(KEYWORD_POOL[50:54], 2)), mark_noise=True)
    while len(rules) < RULES:
        kind = rng.random()
        queue = rng.choice(desk.queues)
        if kind < 0.25:  # channel and language → team
            add(
                platforms=rng.sample(PLATFORMS, rng.choice((1, 2))),
                languages=rng.sample(LANGUAGES, 1),
                queue_id=queue,
            )
        elif kind < 0.50:  # words → tags (and sometimes a team), keep going
            add(
                keywords="\n".join(rng.sample(KEYWORD_POOL, rng.randint(3, 10))),
                add_tags=[f"topic-{rng.randint(1, 40)}"],
                queue_id=queue if rng.random() < 0.3 else None,
                continue_matching=rng.random() < 0.6,
            )
        elif kind < 0.62:  # a pattern in the text
            add(text_regex=rng.choice(REGEX_POOL), add_tags=["reference"], languages=rng.sample(LANGUAGES, 2))
        elif kind < 0.72:  # one account's messages
            add(
                sources=[rng.randint(1, SOURCES)],
                visibility=rng.choice(("public", "private")),
                queue_id=queue,
            )
        elif kind < 0.82:  # influencers and VIPs
            add(
                min_followers=rng.choice((5_000, 20_000, 100_000)),
                verified=rng.choice((True, None)),
                vip=rng.choice((True, None)),
                set_priority=3,
                continue_matching=True,
            )
        elif kind < 0.90:  # angry customers
            add(
                sentiment_below=rng.choice((-0.8, -0.6)),
                keywords="\n".join(rng.sample(KEYWORD_POOL, 3)),
                set_priority=2,
            )
        else:  # night and weekend shifts
            add(
                active_from=clock(rng.choice((20, 22, 23))),
                active_until=clock(rng.choice((6, 7))),
                active_weekdays=rng.sample(range(7), 2),
                languages=rng.sample(LANGUAGES, 1),
                has_open_ticket=rng.choice((True, False)),
                queue_id=queue,
            )
    return rules


def build_messages(rng: random.Random, count: int) -> list[Any]:
    from inbox.routing.engine import RoutingFacts
    from tests.routing.samples import LANGUAGE_SAMPLE

    texts = [(language, text) for language, items in LANGUAGE_SAMPLE.items() for text in items]
    messages = []
    for _ in range(count):
        language, text = rng.choice(texts)
        messages.append(
            RoutingFacts(
                source_id=rng.randint(1, SOURCES),
                platform=rng.choice(PLATFORMS),
                is_public=rng.random() < 0.7,
                language=language,
                text=text,
                followers_count=int(rng.paretovariate(1.2) * 50),
                verified=rng.random() < 0.02,
                source_default_queue_id=rng.choice((None, 1, 2)),
                desk_default_queue_id=1,
                sentiment=rng.uniform(-1, 1) if language in ("en", "nl", "fr") else None,
                vip=rng.random() < 0.01,
                has_open_ticket=rng.random() < 0.2,
                local_time=clock(rng.randrange(24), rng.randrange(60)),
                weekday=rng.randrange(7),
            )
        )
    return messages


def _per_message_us(run: Any, items: list[Any], repeats: int) -> float:
    """Median over ``repeats`` runs of CPU µs per item."""
    samples = []
    for _ in range(repeats):
        start = time.process_time()
        run(items)
        samples.append((time.process_time() - start) / len(items) * 1e6)
    return statistics.median(samples)


def measure(quick: bool = False) -> dict[str, Any]:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webcare.settings")
    import django

    django.setup()
    from inbox.routing.engine import compile_rules, decide, explain
    from inbox.routing.language import desk_languages, detect_language, score_sentiment, warm_up
    from tests.routing.samples import LANGUAGE_SAMPLE

    rng = random.Random(SEED)
    desk = build_desk(rng)
    specs = build_rules(rng, desk)
    started = time.process_time()
    rules = compile_rules(specs)
    compile_ms = (time.process_time() - started) * 1e3
    messages = build_messages(rng, 500 if quick else 5000)
    repeats = 3 if quick else 7

    def run_decide(items: list[Any]) -> None:
        for facts in items:
            decide(facts, rules)

    # The floor: one dictionary lookup per rule, keyed by a value of the message.
    table = {
        f"{p}:{lang}": n for n, (p, lang) in enumerate((p, lang) for p in PLATFORMS for lang in LANGUAGES)
    }
    per_rule = range(len(specs))

    def run_baseline(items: list[Any]) -> None:
        for facts in items:
            key = f"{facts.platform}:{facts.language}"
            for _ in per_rule:
                table.get(key)

    def run_explain(items: list[Any]) -> None:
        for facts in items:
            explain(facts, rules)

    run_decide(messages[:200])  # warm caches
    decide_us = _per_message_us(run_decide, messages, repeats)
    baseline_us = _per_message_us(run_baseline, messages, repeats)
    explain_us = _per_message_us(run_explain, messages[: len(messages) // 5], max(1, repeats // 2))
    matched = [decide(facts, rules) for facts in messages]
    matched_per_message = statistics.mean(len(d.rule_ids) for d in matched)

    # Language and sentiment: build once (timed), then per message.
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    warm_up()
    build_s = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    texts = [text for items in LANGUAGE_SAMPLE.values() for text in items]
    texts = (texts * (1 if quick else 4))[: 300 if quick else 1200]

    def run_detect(items: list[str]) -> None:
        for text in items:
            detect_language(text)

    def run_both(items: list[str]) -> None:
        for text in items:
            score_sentiment(text, detect_language(text))

    scored = {lang: [t for t in LANGUAGE_SAMPLE[lang]] for lang in ("en", "nl", "fr")}

    def run_sentiment(language: str) -> Any:
        def run(items: list[str]) -> None:
            for text in items:
                score_sentiment(text, language)

        return run

    detect_us = _per_message_us(run_detect, texts, repeats)
    both_us = _per_message_us(run_both, texts, repeats)
    sentiment_us = {
        lang: _per_message_us(run_sentiment(lang), items * 4, repeats) for lang, items in scored.items()
    }
    return {
        "rules": len(specs),
        "agents": len(desk.agents),
        "queues": len(desk.queues),
        "messages": len(messages),
        "compile_ms": round(compile_ms, 2),
        "decide_us": round(decide_us, 2),
        "baseline_us": round(baseline_us, 2),
        "ratio": round(decide_us / baseline_us, 2),
        "explain_us": round(explain_us, 1),
        "matched_rules_per_message": round(matched_per_message, 2),
        "detector_build_s": round(build_s, 2),
        "detector_rss_mb": round((rss_after - rss_before) / 1024, 1),
        "desk_languages": list(desk_languages()),
        "detect_language_us": round(detect_us, 1),
        "score_sentiment_us": {lang: round(v, 1) for lang, v in sentiment_us.items()},
        "detect_and_score_us": round(both_us, 1),
        "target_decide_us": TARGET_DECIDE_US,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
    }


def report(result: dict[str, Any]) -> str:
    verdict = "ok" if result["decide_us"] <= result["target_decide_us"] else "OVER BUDGET"
    sentiment = ", ".join(f"{lang} {us:.0f} µs" for lang, us in result["score_sentiment_us"].items())
    lines = [
        "## Routing",
        "",
        f"{result['rules']} rules, {result['agents']} agents in {result['queues']} queues, "
        f"{result['messages']} messages; CPU time per message, median of runs; Python {result['python']}.",
        "",
        "| what | per message |",
        "| --- | --- |",
        f"| decide ({result['rules']} rules) | {result['decide_us']:.1f} µs ({verdict}: budget "
        f"{result['target_decide_us']:.0f} µs) |",
        f"| baseline: one dict lookup per rule | {result['baseline_us']:.1f} µs |",
        f"| ratio decide / baseline | {result['ratio']:.2f} |",
        f"| explain (the preview, every condition of every rule) | {result['explain_us']:.0f} µs |",
        f"| detect_language | {result['detect_language_us']:.0f} µs |",
        f"| score_sentiment | {sentiment} |",
        f"| detect_language + score_sentiment | {result['detect_and_score_us']:.0f} µs |",
        "",
        f"Compiling the {result['rules']} rules: {result['compile_ms']:.1f} ms; matched rules per message: "
        f"{result['matched_rules_per_message']:.2f}. Building the language detector and the sentiment "
        f"scorers once per process: {result['detector_build_s']:.1f} s, {result['detector_rss_mb']:.0f} MB.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Measure and print the Routing section; returns the numbers."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small run (CI smoke test)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument(
        "--no-sweep", action="store_true", help="skip the backlog sweep on PostgreSQL (bench/backlog_sweep.py)"
    )
    args = parser.parse_args(argv)
    result = measure(quick=args.quick)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if not args.no_sweep:
        # The second half of the routing benchmark: assignment of a large backlog.
        import backlog_sweep

        print()
        status = backlog_sweep.main(["--quick"] if args.quick else [])
        if status:
            raise SystemExit(status)
    return result


if __name__ == "__main__":
    main()
