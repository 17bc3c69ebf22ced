"""Reply templates without a database: variables, checks, variant choice and suggestion ranking."""

from __future__ import annotations

import pytest

from inbox.routing.suggest import (
    HISTORY_LIMIT,
    VARIABLES,
    AnsweredMessage,
    BodyProblems,
    RankedTemplate,
    TemplateCandidate,
    VariantChoice,
    body_problems,
    choose_variant,
    clean_value,
    rank_templates,
    render_template,
    template_variables,
    tokens,
)

VALUES = {
    "customer_name": "Anna",
    "customer_handle": "@anna_b",
    "agent_first_name": "Piet",
    "ticket_number": "4711",
    "platform": "Mastodon",
}


# --- Variables -----------------------------------------------------------------------------


def test_every_variable_is_filled_in():
    body = "Hi {customer_name} ({customer_handle}), case {ticket_number} on {platform}. ^{agent_first_name}"
    rendered = render_template(body, VALUES)
    assert rendered.text == "Hi Anna (@anna_b), case 4711 on Mastodon. ^Piet"
    assert rendered.missing == ()
    assert rendered.unknown == ()
    assert set(VARIABLES) == set(VALUES)


def test_unknown_variables_and_other_braces_stay_as_written():
    rendered = render_template("Hi {customer_name}, {order_id} {customer name} {} {{x", VALUES)
    assert rendered.text == "Hi Anna, {order_id} {customer name} {} {{x"
    assert rendered.unknown == ("order_id",)


def test_a_variable_without_value_stays_visible_for_the_agent():
    rendered = render_template("Hi {customer_name}, #{ticket_number}", {**VALUES, "ticket_number": ""})
    assert rendered.text == "Hi Anna, #{ticket_number}"
    assert rendered.missing == ("ticket_number",)


@pytest.mark.parametrize(
    "name",
    [
        "{agent_first_name}",  # a variable in a name is not filled in again
        "{0.__class__.__mro__}",  # no format-string injection
        "{customer_name}{customer_name}",
        r"\1 \g<0> $1",  # no regex back-references
        "<script>alert(1)</script>",  # plain text here; escaped where it is shown
        "محمد الأحمد",  # right-to-left
        "Zoë 👩‍👩‍👧 Jansen",  # emoji with zero-width joiners
        "%s %(x)s",
    ],
)
def test_hostile_customer_names_are_inserted_literally(name):
    values = template_variables(customer_name=name, handle="x", agent_first_name="Piet", ticket_number=7)
    rendered = render_template("Hi {customer_name}, I am {agent_first_name}.", values)
    assert rendered.text == f"Hi {name}, I am Piet."
    assert rendered.unknown == ()


def test_names_lose_line_breaks_and_direction_overrides():
    # U+202E (right-to-left override) would flip the rest of the reply on the platform.
    assert clean_value("Anna\u202e ecnatsni\n\tde Vries\u2066") == "Anna ecnatsni de Vries"
    assert clean_value("Zoë 👩‍👩‍👧") == "Zoë 👩‍👩‍👧"
    assert clean_value(None) == ""


def test_variable_fallbacks():
    assert template_variables(
        customer_name="", contact_name="", handle="anna_b", agent_first_name="", agent_username="piet",
        ticket_number=12, platform="X",
    ) == {
        "customer_name": "@anna_b",
        "customer_handle": "@anna_b",
        "agent_first_name": "piet",
        "ticket_number": "12",
        "platform": "X",
    }
    assert template_variables(customer_name="  ", contact_name="Anna B.", handle="@anna")["customer_name"] == "Anna B."
    assert template_variables(handle="@anna@mastodon.social")["customer_handle"] == "@anna@mastodon.social"
    assert template_variables() == dict.fromkeys(VARIABLES, "")


# --- Checks for the management UI -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ("Hi {customer_name}, see {platform}.", BodyProblems()),
        ("Hi there!", BodyProblems()),
        ("Hi {custmer_name}", BodyProblems(unknown=("custmer_name",))),
        ("Hi {customer name} {order} {order}", BodyProblems(unknown=("customer name", "order"))),
        ("Hi {{customer_name}}", BodyProblems(stray_braces=True)),
        ("Hi {}", BodyProblems(stray_braces=True)),
        ("smile :-}", BodyProblems(stray_braces=True)),
        ("Hi {customer_name", BodyProblems(stray_braces=True)),
    ],
)
def test_body_problems(body, problems):
    assert body_problems(body) == problems
    assert bool(body_problems(body)) is bool(problems.unknown or problems.stray_braces)


# --- Languages -----------------------------------------------------------------------------


def test_variant_in_the_tickets_language_else_the_fallback():
    assert choose_variant(["en", "nl"], language="nl", fallback_language="en") == VariantChoice("nl", False)
    assert choose_variant(["en", "de"], language="nl", fallback_language="en") == VariantChoice("en", True)
    assert choose_variant(["de", "fr"], language="nl", fallback_language="en") is None
    assert choose_variant(["NL", "en"], language="nl-BE", fallback_language="en") == VariantChoice("nl", False)
    # Unknown ticket language: the fallback, marked as one.
    assert choose_variant(["en", "nl"], language="", fallback_language="en") == VariantChoice("en", True)


# --- Ranking -------------------------------------------------------------------------------


def candidate(template_id, *, name=None, usage=0, texts=None, answered=()):
    return TemplateCandidate(
        template_id=template_id, name=name or f"T{template_id}", usage_count=usage,
        texts=texts or {"en": "Thank you for your message."},
        answered=tuple(AnsweredMessage(text, language) for text, language in answered),
    )


def ids(ranked: list[RankedTemplate]) -> list[int]:
    return [item.template_id for item in ranked]


def test_tokens_drop_links_mentions_digits_and_variables():
    assert tokens("@KLM my BAG #lost at https://x.com/a?b=1 since 12:00, {customer_name}!") == [
        "my", "bag", "lost", "at", "since",
    ]
    assert tokens("荷物が届きません") == ["荷物", "物が", "が届", "届き", "きま", "ませ", "せん"]


def test_history_wins_over_the_text_fallback():
    # Template 1's text shares words with the message, but agents used template 2 for
    # messages like it.
    message = "My suitcase never showed up on the belt in Madrid"
    text_match = candidate(1, texts={"en": "Your suitcase and the belt: we look into Madrid arrivals."})
    history_match = candidate(
        2, texts={"en": "Sorry to hear that, please file a report at the desk."},
        answered=[("my suitcase never showed up at the belt", "en"), ("suitcase did not show up", "en")],
    )
    ranked = rank_templates(message, [text_match, history_match], language="en", fallback_language="en")
    assert ids(ranked) == [2, 1]
    assert [item.reason for item in ranked] == ["history", "text"]
    assert ranked[0].score > ranked[1].score > 0


def test_history_that_does_not_fit_counts_against_a_template():
    message = "Thanks for the great service today"
    used_for_other_things = candidate(
        1, texts={"en": "Thanks for the great words!"},
        answered=[("where is my refund", "en"), ("refund still missing", "en"), ("refund please", "en")],
    )
    no_history = candidate(2, texts={"en": "Thanks for the great words!"})
    ranked = rank_templates(message, [used_for_other_things, no_history], language="en", fallback_language="en")
    assert ids(ranked) == [2, 1]


def test_similar_words_match_despite_typos_and_inflection():
    ranked = rank_templates(
        "flight delayd again", [candidate(1, texts={"en": "Sorry your flight is delayed."}),
                                candidate(2, texts={"en": "Your refund is on its way."})],
        language="en", fallback_language="en",
    )
    assert ids(ranked) == [1, 2]
    assert ranked[0].reason == "text"
    assert ranked[1].score == 0 and ranked[1].reason == "usage"


def test_history_in_other_languages_is_ignored():
    # On a Dutch ticket, English answered messages say nothing; the Dutch text decides.
    message = "Mijn koffer is niet aangekomen"
    english_history = candidate(
        1, texts={"nl": "Bedankt voor je bericht.", "en": "Thanks."},
        answered=[("Mijn koffer is niet aangekomen", "en")] * 3,
    )
    dutch_text = candidate(2, texts={"nl": "Wat vervelend dat je koffer niet is aangekomen."})
    ranked = rank_templates(message, [english_history, dutch_text], language="nl", fallback_language="en")
    assert ids(ranked) == [2, 1]
    assert ranked[1].reason == "usage"  # no Dutch history, and its Dutch text shares nothing


def test_only_templates_in_the_tickets_language_or_the_fallback_take_part():
    ranked = rank_templates(
        "Wo ist mein Koffer?",
        [
            candidate(1, texts={"fr": "Où est votre valise ?"}),
            candidate(2, texts={"de": "Ihr Koffer kommt morgen."}),
            candidate(3, texts={"en": "Your bag arrives tomorrow."}),
        ],
        language="de", fallback_language="en",
    )
    assert [(item.template_id, item.language, item.is_fallback) for item in ranked] == [
        (2, "de", False), (3, "en", True),
    ]


def test_ties_go_to_the_most_used_then_by_name():
    same = {"en": "We are sorry for the delay."}
    ranked = rank_templates(
        "delay", [candidate(1, name="B", usage=5, texts=same), candidate(2, name="A", usage=5, texts=same),
                  candidate(3, name="C", usage=9, texts=same)],
        language="en", fallback_language="en",
    )
    assert ids(ranked) == [3, 2, 1]
    assert len({item.score for item in ranked}) == 1


def test_top_three_only():
    ranked = rank_templates("hello", [candidate(i, usage=i) for i in range(1, 8)], language="en", fallback_language="en")
    assert ids(ranked) == [7, 6, 5]
    assert ids(rank_templates("hello", [candidate(1)], language="en", fallback_language="en", limit=0)) == []


@pytest.mark.parametrize("message", ["", "   ", "🙂🙂", "@klm https://t.co/x 12"])
def test_nothing_to_compare_gives_the_most_used(message):
    ranked = rank_templates(
        message,
        [candidate(1, usage=3, answered=[("bag lost", "en")]), candidate(2, usage=10), candidate(3, usage=1),
         candidate(4, usage=7)],
        language="en", fallback_language="en",
    )
    assert ids(ranked) == [2, 4, 1]
    assert {(item.score, item.reason) for item in ranked} == {(0.0, "usage")}


def test_only_the_most_recent_answered_messages_count():
    # The first HISTORY_LIMIT answered messages (most recent first) are looked at; an old
    # perfect match beyond them is not.
    old_match = [("refund for my cancelled flight", "en")]
    filler = [(f"question number {'x' * (i % 7 + 1)}", "en") for i in range(HISTORY_LIMIT)]
    hello = {"en": "Hello."}
    recent = candidate(1, texts=hello, answered=filler + old_match)
    ranked = rank_templates("refund for my cancelled flight", [recent], language="en", fallback_language="en")
    assert (ranked[0].score, ranked[0].reason) == (0.0, "usage")
    ranked = rank_templates("refund for my cancelled flight", [candidate(1, texts=hello, answered=old_match + filler)],
                            language="en", fallback_language="en")
    assert ranked[0].reason == "history"
    assert ranked[0].score > 0.3
