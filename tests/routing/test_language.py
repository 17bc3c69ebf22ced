"""Language detection on short social messages, measured on our labelled sample.

The measured figures (docs/routing.md records them): of the 296 messages of the labelled
sample, 293 get their language and 3 get "" (unsure), none a wrong language; with the
platform's tag as hint all 296 are right. Of the 70 held-out messages, 64 are right, 4
unsure and 2 wrong (Spanish read as Portuguese, Portuguese as Italian).
"""

from __future__ import annotations

import pytest

from inbox.routing.language import (
    clean_for_detection,
    desk_languages,
    detect_language,
    normalize_language_tag,
)
from tests.routing.samples import HELD_OUT_SAMPLE, LANGUAGE_SAMPLE

SAMPLE = [(language, text) for language, texts in LANGUAGE_SAMPLE.items() for text in texts]


def test_the_sample_has_at_least_thirty_messages_per_european_language_and_some_per_asian_one():
    assert {language: len(texts) for language, texts in LANGUAGE_SAMPLE.items()} == {
        "nl": 38, "en": 38, "fr": 38, "de": 38, "es": 38, "it": 38, "pt": 38, "ja": 10, "zh": 10, "ko": 10,
    }  # fmt: skip
    assert set(LANGUAGE_SAMPLE) == set(desk_languages())


def test_accuracy_on_the_labelled_sample():
    answers = [(language, detect_language(text)) for language, text in SAMPLE]

    right = sum(1 for language, got in answers if got == language)
    unsure = sum(1 for _, got in answers if got == "")
    wrong = [(language, got) for language, got in answers if got not in ("", language)]

    assert len(answers) == 296
    assert right >= 293  # measured: 293 (99.0 %)
    assert unsure <= 3
    assert wrong == []  # unsure is allowed, a wrong language is not


@pytest.mark.parametrize("language", sorted(LANGUAGE_SAMPLE))
def test_each_language_is_recognised(language):
    texts = LANGUAGE_SAMPLE[language]

    right = sum(1 for text in texts if detect_language(text) == language)

    # measured: nl fr de pt 38/38, en es it 37/38, ja zh ko 10/10
    assert right >= len(texts) - 1


def test_accuracy_on_messages_the_thresholds_were_not_tuned_on():
    answers = [
        (language, detect_language(text)) for language, texts in HELD_OUT_SAMPLE.items() for text in texts
    ]

    right = sum(1 for language, got in answers if got == language)
    wrong = sum(1 for language, got in answers if got not in ("", language))

    assert len(answers) == 70
    assert right >= 64  # measured: 64 (91.4 %), 4 unsure
    assert wrong <= 2  # measured: el código de reserva → pt, perdi o passaporte → it


def test_the_platform_tag_answers_where_the_text_is_unsure():
    right = sum(1 for language, text in SAMPLE if detect_language(text, hint=language) == language)

    assert right == 296


@pytest.mark.parametrize(
    "text",
    [
        "Thanks! Merci! Danke! Gracias!",
        "Merci beaucoup, vielen Dank, thank you very much",
        "thank you, dank je, merci, danke, gracias, grazie, obrigado",
        "hello hallo bonjour hola ciao olá",
    ],
)
def test_text_mixing_languages_gives_no_language(text):
    assert detect_language(text) == ""


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ok",
        "bedankt",
        "merci",
        "Danke",
        "lol",
        "👍👍🙏",
        "@KLM",
        "#KLM #AF",
        "https://klm.com/x 123",
        "KL1234 ?!",
        "返",
    ],
)
def test_text_too_short_to_tell_gives_no_language(text):
    assert detect_language(text) == ""


def test_too_short_text_takes_the_platform_tag():
    assert detect_language("bedankt!", hint="nl-NL") == "nl"
    assert detect_language("👍", hint="pt_BR") == "pt"


def test_clear_text_wins_over_the_platform_tag():
    # The tag is often the customer's app language, not the post's.
    assert detect_language("Mijn koffer is al drie dagen kwijt", hint="en") == "nl"


def test_a_tag_outside_the_desk_languages_is_no_answer():
    assert detect_language("ok", hint="ru") == ""
    assert detect_language("ok", hint="und") == ""


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("en", "en"),
        ("en-GB", "en"),
        ("pt_BR", "pt"),
        ("zh-Hant", "zh"),
        ("NL", "nl"),
        ("und", ""),
        ("ru", ""),
        ("", ""),
    ],
)
def test_platform_language_tags_become_desk_languages(tag, language):
    assert normalize_language_tag(tag) == language


def test_links_mentions_hashtags_emoji_and_digits_are_removed_before_detection():
    assert (
        clean_for_detection(
            "@KLM @anna@mastodon.social waar is mijn koffer?? 😡 #KL1234 https://t.co/a1 klm.com/help 23C"
        )
        == "waar is mijn koffer C"
    )


def test_japanese_and_chinese_are_told_apart():
    assert detect_language("返金がまだありません") == "ja"
    assert detect_language("退款还没有收到") == "zh"


def test_detection_picks_only_among_the_desk_languages(settings):
    settings.WEBCARE = {**settings.WEBCARE, "LANGUAGES": ["nl", "en"]}

    answers = {detect_language(text) for text in LANGUAGE_SAMPLE["fr"]}

    assert answers <= {"nl", "en", ""}
    assert detect_language("Waar blijft mijn koffer? Al drie dagen niks gehoord") == "nl"
