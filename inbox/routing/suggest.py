"""Reply templates without a database: variables, variant choice, checks and suggestion ranking.

Variables
    A template body may use ``{customer_name}``, ``{customer_handle}``, ``{agent_first_name}``,
    ``{ticket_number}`` and ``{platform}``. ``render_template`` replaces them with a regular
    expression and a replacement *function*, never ``str.format``: a customer called
    ``{agent_first_name}`` or ``{0.__class__}`` is inserted as exactly those characters. A
    variable without a value and any unknown ``{thing}`` stay as written, so the agent sees
    what to fill in before sending. Names are cleaned of control and bidirectional-override
    characters first (an RLO in a display name would otherwise flip the rest of the reply).

Suggestions
    ``rank_templates`` scores each template by how similar the customer's last message is to
    the customer messages the template answered before (its *history*), and to the
    template's own text in the ticket's language. Similarity is SoftTF-IDF (Cohen, Ravikumar
    and Fienberg, "A comparison of string distance metrics for name-matching tasks", 2003):
    the cosine of TF-IDF word vectors in which two words also count as the same when their
    Jaro-Winkler similarity (rapidfuzz) is at least ``WORD_SIMILARITY``, weighted by that
    similarity. TF-IDF makes words every message has ("my", "de", "the", "flight" for an
    airline) count little without a stop-word list per language; Jaro-Winkler matches
    inflections and typos ("delay"/"delayed", "luggage"/"lugage") that short social posts
    are full of. Document frequencies come from the texts being compared (the candidates'
    history and texts), so they fit the desk's own vocabulary.

    A template's score blends the two: ``w * history + (1 - w) * text`` with
    ``w = n / (n + HISTORY_PRIOR)``, ``n`` the number of answered messages in the ticket's
    language. History is what agents actually did, so it outweighs the text as soon as there
    is some; without history the text alone decides. ``history`` is the mean of the
    ``HISTORY_TOP`` best matches, so one odd message does not make a template fit. Ties
    (including "nothing matches": an empty message or only emoji) go to the most used
    template, then by name.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler

from inbox.routing.assign import normalize_language

# --- Variables ---------------------------------------------------------------------------------

#: Every variable a template body may use, in the order the management UI lists them.
VARIABLES: tuple[str, ...] = (
    "customer_name",
    "customer_handle",
    "agent_first_name",
    "ticket_number",
    "platform",
)

# A variable as written in a body: an identifier in single braces.
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Anything in braces (for the checks): "{customer name}", "{}", "{ foo }".
_BRACED = re.compile(r"\{([^{}\n]*)\}")
# Explicit bidi formatting (embeddings, overrides, isolates, marks): never inserted from a name.
_BIDI_CONTROLS = frozenset("\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_value(value: object) -> str:
    """A name or handle fit to insert into a reply: one line, no control or bidi-override characters.

    Line breaks and tabs become spaces; zero-width joiners stay (emoji and Persian need them).
    """
    text = "" if value is None else str(value)
    out = []
    for char in text:
        if char in _BIDI_CONTROLS:
            continue
        category = unicodedata.category(char)
        if category == "Cc" or char in "\u2028\u2029":
            out.append(" ")
        else:
            out.append(char)
    return " ".join("".join(out).split())


def template_variables(
    *,
    customer_name: str = "",
    contact_name: str = "",
    handle: str = "",
    agent_first_name: str = "",
    agent_username: str = "",
    ticket_number: int | str | None = None,
    platform: str = "",
) -> dict[str, str]:
    """The value of every variable for one ticket and agent, with the fallbacks applied.

    ``customer_name``: the customer's name, else the platform display name, else the handle.
    ``customer_handle``: the handle with one leading ``@``. ``agent_first_name``: the first
    name, else the username. ``ticket_number``: the ticket's number without ``#`` (a ``#`` would
    become a hashtag on most platforms). A value that is still empty stays empty: rendering
    leaves that variable as written.
    """
    bare_handle = clean_value(handle).lstrip("@")
    at_handle = f"@{bare_handle}" if bare_handle else ""
    return {
        "customer_name": clean_value(customer_name) or clean_value(contact_name) or at_handle,
        "customer_handle": at_handle,
        "agent_first_name": clean_value(agent_first_name) or clean_value(agent_username),
        "ticket_number": "" if ticket_number is None else clean_value(ticket_number),
        "platform": clean_value(platform),
    }


@dataclass(frozen=True, slots=True)
class RenderedTemplate:
    text: str
    #: Known variables that had no value and are still written in ``text``.
    missing: tuple[str, ...] = ()
    #: ``{names}`` that are no variable, left as written.
    unknown: tuple[str, ...] = ()


def render_template(body: str, values: Mapping[str, str]) -> RenderedTemplate:
    """``body`` with every known variable that has a value replaced by it, literally."""
    missing: list[str] = []
    unknown: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in VARIABLES:
            unknown.append(name)
            return match.group(0)
        value = values.get(name, "")
        if not value:
            missing.append(name)
            return match.group(0)
        return value  # returned from a function: re.sub inserts it as is, "\1" and "{x}" included

    text = _VARIABLE.sub(replace, body)
    return RenderedTemplate(text=text, missing=tuple(dict.fromkeys(missing)), unknown=tuple(dict.fromkeys(unknown)))


@dataclass(frozen=True, slots=True)
class BodyProblems:
    """What is wrong with the variables of a template body (empty: nothing)."""

    unknown: tuple[str, ...] = ()
    stray_braces: bool = False

    def __bool__(self) -> bool:
        return bool(self.unknown) or self.stray_braces


def body_problems(body: str) -> BodyProblems:
    """Unknown ``{names}`` and braces that belong to no variable.

    Braces are reserved for variables: ``{customer name}``, ``{{customer_name}}`` and a lone
    ``}`` are all reported, so a typo never reaches a customer as ``{custmer_name}``.
    """
    unknown: list[str] = []
    stray = False
    for inner in _BRACED.findall(body):
        if inner in VARIABLES:
            continue
        if inner.strip():
            unknown.append(inner)
        else:
            stray = True  # "{}" or "{ }"
    leftover = _BRACED.sub("", body)
    return BodyProblems(
        unknown=tuple(dict.fromkeys(unknown)), stray_braces=stray or "{" in leftover or "}" in leftover
    )


# --- Languages ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VariantChoice:
    language: str
    #: True when the variant is not in the ticket's language (shown with a language badge).
    is_fallback: bool


def choose_variant(languages: Iterable[str], *, language: str, fallback_language: str) -> VariantChoice | None:
    """The variant to use for a ticket in ``language``: its own, else the desk's fallback language.

    ``None`` when the template has neither (it is not offered for this ticket). A ticket whose
    language is unknown gets the fallback, marked as such.
    """
    present = {normalize_language(code) for code in languages}
    language = normalize_language(language)
    fallback_language = normalize_language(fallback_language)
    if language and language in present:
        return VariantChoice(language=language, is_fallback=False)
    if fallback_language in present:
        return VariantChoice(language=fallback_language, is_fallback=True)
    return None


# --- Similarity --------------------------------------------------------------------------------

#: Two words count as the same from this Jaro-Winkler similarity on (SoftTF-IDF's theta).
WORD_SIMILARITY = 0.9
#: Words shorter than this only match exactly ("bag" and "bad" are different words).
FUZZY_MIN_LENGTH = 4
#: Answered messages of a template that are looked at (most recent first).
HISTORY_LIMIT = 50
#: A template's history score is the mean of its best this-many matches.
HISTORY_TOP = 3
#: History weight ``n / (n + HISTORY_PRIOR)``: one answered message already counts half.
HISTORY_PRIOR = 1.0
#: Scores equal to this many decimals are a tie (broken by usage, then name).
_SCORE_DECIMALS = 6

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"@[\w.]+(?:@[\w.-]+)?")
_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*")
_CJK = re.compile(
    r"[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]"
)


def tokens(text: str) -> list[str]:
    """The words of a text for comparing: case-folded, without links, @mentions, digits and variables.

    Runs of Chinese, Japanese or Korean characters (written without spaces) give their
    character pairs.
    """
    text = unicodedata.normalize("NFKC", text or "").casefold()
    text = _VARIABLE.sub(" ", _MENTION.sub(" ", _URL.sub(" ", text)))
    words: list[str] = []
    for word in _WORD.findall(text):
        if _CJK.search(word):
            words.extend(word[i : i + 2] for i in range(max(1, len(word) - 1)))
        elif len(word) > 1:
            words.append(word)
    return words


class SoftTfIdf:
    """SoftTF-IDF similarity of one query text against documents of one corpus."""

    def __init__(self, corpus: Sequence[Sequence[str]], query: Sequence[str]) -> None:
        document_frequency: Counter[str] = Counter()
        for words in corpus:
            document_frequency.update(set(words))
        self._size = len(corpus)
        self._df = document_frequency
        self._query = self.vector(query)
        vocabulary = list(document_frequency)
        # For each query word, the corpus words close enough to stand in for it.
        self._close: dict[str, dict[str, float]] = {}
        for word in self._query:
            close = {word: 1.0} if word in document_frequency else {}
            if len(word) >= FUZZY_MIN_LENGTH:
                for other, score, _index in process.extract(
                    word, vocabulary, scorer=JaroWinkler.normalized_similarity,
                    score_cutoff=WORD_SIMILARITY, limit=None,
                ):
                    if other != word and len(other) >= FUZZY_MIN_LENGTH:
                        close[other] = score
            self._close[word] = close

    def _idf(self, word: str) -> float:
        return math.log((1 + self._size) / (1 + self._df.get(word, 0))) + 1.0

    def vector(self, words: Sequence[str]) -> dict[str, float]:
        """Unit-length TF-IDF weights (sub-linear term frequency)."""
        weights = {word: (1.0 + math.log(count)) * self._idf(word) for word, count in Counter(words).items()}
        norm = math.sqrt(sum(value * value for value in weights.values()))
        return {word: value / norm for word, value in weights.items()} if norm else {}

    def similarity(self, words: Sequence[str]) -> float:
        """0 (nothing in common) … 1 (the same words)."""
        if not self._query or not words:
            return 0.0
        document = self.vector(words)
        total = 0.0
        for word, weight in self._query.items():
            best = 0.0
            for other, closeness in self._close[word].items():
                other_weight = document.get(other)
                if other_weight is not None:
                    best = max(best, other_weight * closeness)
            total += weight * best
        return min(total, 1.0)


# --- Ranking -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnsweredMessage:
    """A customer message that a reply started from the template answered."""

    text: str
    language: str = ""


@dataclass(frozen=True, slots=True)
class TemplateCandidate:
    template_id: int
    name: str
    usage_count: int
    #: Language → body of every variant the template has.
    texts: Mapping[str, str]
    #: Answered messages, most recent first (only the first ``HISTORY_LIMIT`` are used).
    answered: Sequence[AnsweredMessage] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class RankedTemplate:
    template_id: int
    language: str
    is_fallback: bool
    score: float
    #: Why it is suggested: "history" (answered similar messages), "text" (its text is
    #: similar) or "usage" (nothing matched; one of the most used).
    reason: str


def rank_templates(
    message: str,
    candidates: Iterable[TemplateCandidate],
    *,
    language: str,
    fallback_language: str,
    limit: int = 3,
) -> list[RankedTemplate]:
    """The ``limit`` templates that fit ``message`` best, best first (see the module docstring).

    Only templates with a variant in ``language`` or ``fallback_language`` take part; history
    counts only messages in the ticket's language (all of them when it is unknown).
    """
    language = normalize_language(language)
    prepared: list[tuple[TemplateCandidate, VariantChoice, list[str], list[list[str]]]] = []
    for candidate in candidates:
        texts = {normalize_language(code): body for code, body in candidate.texts.items()}
        choice = choose_variant(texts, language=language, fallback_language=fallback_language)
        if choice is None:
            continue
        answered = [
            tokens(item.text)
            for item in list(candidate.answered)[:HISTORY_LIMIT]
            if not language or normalize_language(item.language) == language
        ]
        prepared.append((candidate, choice, tokens(texts[choice.language]), answered))

    corpus = [words for _c, _v, text, answered in prepared for words in [text, *answered]]
    similarity = SoftTfIdf(corpus, tokens(message))

    ranked: list[tuple[tuple, RankedTemplate]] = []
    for candidate, choice, text, answered in prepared:
        text_score = similarity.similarity(text)
        history_scores = sorted((similarity.similarity(words) for words in answered), reverse=True)
        weight = len(answered) / (len(answered) + HISTORY_PRIOR)
        top = history_scores[:HISTORY_TOP]
        history_score = sum(top) / len(top) if top else 0.0
        score = round(weight * history_score + (1.0 - weight) * text_score, _SCORE_DECIMALS)
        if score <= 0:
            reason = "usage"
        elif weight * history_score >= (1.0 - weight) * text_score:
            reason = "history"
        else:
            reason = "text"
        item = RankedTemplate(
            template_id=candidate.template_id, language=choice.language,
            is_fallback=choice.is_fallback, score=score, reason=reason,
        )
        ranked.append(((-score, -candidate.usage_count, candidate.name.casefold(), candidate.template_id), item))
    ranked.sort(key=lambda pair: pair[0])
    return [item for _key, item in ranked[: max(limit, 0)]]
