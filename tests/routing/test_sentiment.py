"""Sentiment scores: VADER for English, the Pattern lexicons for Dutch and French, None elsewhere.

A score above 0.05 reads as positive, below -0.05 as negative, in between as neutral (VADER's
usual bands). Measured on the 30 labelled messages per language in tests/routing/samples.py:
English 29/30, Dutch 27/30, French 26/30 (docs/routing.md).
"""

from __future__ import annotations

import pytest

from inbox.routing.language import score_sentiment, sentiment_languages
from tests.routing.samples import LANGUAGE_SAMPLE, SENTIMENT_SAMPLE

NEUTRAL_BAND = 0.05


def reading(score: float) -> str:
    if score > NEUTRAL_BAND:
        return "positive"
    if score < -NEUTRAL_BAND:
        return "negative"
    return "neutral"


def test_english_dutch_and_french_are_scored():
    assert sentiment_languages() == frozenset({"en", "nl", "fr"})


@pytest.mark.parametrize(("language", "least"), [("en", 29), ("nl", 27), ("fr", 26)])
def test_accuracy_on_the_labelled_sample(language, least):
    rows = SENTIMENT_SAMPLE[language]

    right = sum(1 for label, text in rows if reading(score_sentiment(text, language)) == label)

    assert len(rows) == 30
    assert right >= least  # measured: en 29, nl 27, fr 26


@pytest.mark.parametrize("language", ["de", "es", "it", "pt", "ja", "zh", "ko", "", "xx"])
def test_languages_without_a_library_get_no_score_rather_than_a_fake_zero(language):
    text = LANGUAGE_SAMPLE.get(language, LANGUAGE_SAMPLE["en"])[4]
    assert score_sentiment(text, language) is None


@pytest.mark.parametrize("language", ["en", "nl", "fr"])
def test_scores_stay_between_minus_one_and_one(language):
    scores = [score_sentiment(text, language) for _, text in SENTIMENT_SAMPLE[language]]
    scores.append(
        score_sentiment("NO NO NO!!! worst, horrible, terrible, awful, hate hate hate 😡😡😡", language)
    )
    assert all(-1.0 <= score <= 1.0 for score in scores)


def test_nothing_to_score_gives_none():
    assert score_sentiment("", "en") is None
    assert score_sentiment("   @KLM https://t.co/x1 ", "en") is None


def test_a_message_without_feelings_scores_zero():
    assert score_sentiment("My booking reference is ABC123", "en") == 0.0


def test_mentions_and_links_do_not_colour_the_score():
    plain = score_sentiment("my bag is lost", "en")
    assert score_sentiment("@HappyTravels my bag is lost https://t.co/great", "en") == plain


def test_hashtags_count_as_their_word():
    assert score_sentiment("Delayed again #fail", "en") < -NEUTRAL_BAND
    assert score_sentiment("Delayed again #fail", "en") == score_sentiment("Delayed again fail", "en")


def test_emoji_carry_sentiment_in_english():
    assert score_sentiment("flight landed 😍", "en") > score_sentiment("flight landed", "en")
    assert score_sentiment("flight landed 😠", "en") < score_sentiment("flight landed", "en")


def test_scores_are_exact_and_repeatable():
    assert score_sentiment("Worst airline ever, my bag is lost and nobody helps", "en") == -0.5859
    assert score_sentiment("Heel erg teleurgesteld in de manier waarop dit is afgehandeld", "nl") == -0.62
    assert score_sentiment("Excellent vol, le repas était délicieux", "fr") == 0.65
