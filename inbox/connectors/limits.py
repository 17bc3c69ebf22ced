"""What each platform takes as a reply: public and/or private, how long, and how it counts.

The composer counts with the same rules in the browser (``static/js/desk/ticket.js``,
``DeskReplyLength``); ``inbox.services.replies.reply_create`` enforces them, so a reply
that is too long is refused before it is stored instead of failing on the platform.

Counting rules (see docs/desk/ticket.md):

* ``code_points`` — Unicode code points (Python ``len``; ``Array.from(text).length``).
* ``graphemes`` — user-perceived characters (extended grapheme clusters), as Bluesky
  counts its 300 (``regex`` ``\\X``; ``Intl.Segmenter`` in the browser).
* ``x`` — X's weighted count: the text is NFC-normalised, every emoji counts 2, every
  other character counts 1 when it is in X's light ranges (Latin, Greek, Cyrillic,
  Hebrew, Arabic, Indic scripts … up to U+10FF, and some punctuation) and 2 otherwise
  (CJK, Hangul …); the limit of 280 is in those units.

Where ``url_length`` is set, each ``http(s)://`` link counts that many characters
whatever its length (X shortens links to t.co, Mastodon counts every link as 23).
Links without a scheme (``example.com``) are counted as typed.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import regex

#: Matches what the browser counter matches (``URL_RE`` in ticket.js): a scheme, then
#: anything up to white space, without trailing punctuation.
URL_RE = regex.compile(r"https?://[^\s]*[^\s.,;:!?'\")\]}>]", regex.IGNORECASE)
_GRAPHEME = regex.compile(r"\X")
_EMOJI = regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}]")
#: Code points X counts as 1 (twitter-text v3 configuration); everything else counts 2.
_X_LIGHT_RANGES = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))


class Counting(StrEnum):
    CODE_POINTS = "code_points"
    GRAPHEMES = "graphemes"
    X = "x"


@dataclass(frozen=True, slots=True)
class ReplyLimit:
    """How long one kind of reply (public or private) may be on a platform."""

    #: None: the platform sets no limit we know of (the desk's MAX_TEXT_LENGTH still applies).
    max_length: int | None
    counting: Counting = Counting.CODE_POINTS
    #: Characters each http(s) link counts, whatever its length; None: as typed.
    url_length: int | None = None

    def length(self, text: str) -> int:
        return reply_length(text, counting=self.counting, url_length=self.url_length)


@dataclass(frozen=True, slots=True)
class PlatformReplies:
    """The replies a platform takes. ``public``/``private`` None: that kind is not possible."""

    platform: str
    public: ReplyLimit | None
    private: ReplyLimit | None
    #: The connector starts every reply with ``@author`` (Mastodon), which the platform counts.
    mentions_author: bool = False

    def limit_for(self, *, is_public: bool) -> ReplyLimit | None:
        return self.public if is_public else self.private

    def allows(self, *, is_public: bool) -> bool:
        return self.limit_for(is_public=is_public) is not None


_UNLIMITED = ReplyLimit(max_length=None)

#: Known platforms. Private replies are direct messages (Instagram, Messenger), private replies
#: to comments (Facebook, Instagram) or direct-visibility posts (Mastodon).
PLATFORM_REPLIES: dict[str, PlatformReplies] = {
    # X direct messages (10,000) and Bluesky chat (1,000 graphemes) exist, but their
    # connectors ingest and send public posts only: offering a private reply would only fail.
    "x": PlatformReplies("x", public=ReplyLimit(280, Counting.X, url_length=23), private=None),
    "bluesky": PlatformReplies("bluesky", public=ReplyLimit(300, Counting.GRAPHEMES), private=None),
    # 500 is Mastodon's default; an instance allowing more is still held to 500 here.
    "mastodon": PlatformReplies(
        "mastodon",
        public=ReplyLimit(500, Counting.CODE_POINTS, url_length=23),
        private=ReplyLimit(500, Counting.CODE_POINTS, url_length=23),
        mentions_author=True,
    ),
    "facebook": PlatformReplies("facebook", public=ReplyLimit(8_000), private=ReplyLimit(2_000)),
    "instagram": PlatformReplies("instagram", public=ReplyLimit(2_200), private=ReplyLimit(1_000)),
    # Messenger conversations are private only.
    "messenger": PlatformReplies("messenger", public=None, private=ReplyLimit(2_000)),
    # The demo platform refuses more than 500 code points (inbox/connectors/simulated).
    "simulated": PlatformReplies("simulated", public=ReplyLimit(500), private=ReplyLimit(500)),
}


def replies_for(platform: str) -> PlatformReplies:
    """The reply rules of ``platform``; unknown platforms (generic webhooks, imports, test
    platforms) take public and private replies of any length."""
    known = PLATFORM_REPLIES.get(platform)
    if known is not None:
        return known
    return PlatformReplies(platform, public=_UNLIMITED, private=_UNLIMITED)


def mention_length(platform: str, handle: str, text: str = "") -> int:
    """Characters the connector adds in front of a reply to ``handle`` (``@user ``), as the
    platform counts them: Mastodon counts ``@user@domain`` as ``@user``. 0 when the platform
    adds nothing, or ``text`` already starts with the mention."""
    handle = handle.lstrip("@")
    if not replies_for(platform).mentions_author or not handle:
        return 0
    first_word = text.split(maxsplit=1)[0].lower() if text.strip() else ""
    if first_word == f"@{handle.lower()}":
        return 0
    return len(handle.split("@", 1)[0]) + 2


def reply_length(text: str, *, counting: Counting, url_length: int | None = None) -> int:
    """``text``'s length as the platform counts it (see the module docstring)."""
    if counting == Counting.X:
        text = unicodedata.normalize("NFC", text)
    total = 0
    position = 0
    if url_length is not None:
        for match in URL_RE.finditer(text):
            total += _plain_length(text[position : match.start()], counting) + url_length
            position = match.end()
    return total + _plain_length(text[position:], counting)


def _plain_length(text: str, counting: Counting) -> int:
    if counting == Counting.CODE_POINTS:
        return len(text)
    if counting == Counting.GRAPHEMES:
        return len(_GRAPHEME.findall(text))
    total = 0
    for cluster in _GRAPHEME.findall(text):
        if _EMOJI.search(cluster):
            total += 2
        else:
            total += sum(1 if _x_light(ord(char)) else 2 for char in cluster)
    return total


def _x_light(code_point: int) -> bool:
    return any(low <= code_point <= high for low, high in _X_LIGHT_RANGES)


# --- Reply windows -------------------------------------------------------------------
#
# Meta lets a business answer a private conversation (Messenger, Instagram Direct) freely
# for 24 hours after the customer's last message; after that only with the HUMAN_AGENT
# message tag, up to 7 days; after that not at all until the customer writes again. A
# private reply to a public comment (Facebook and Instagram "private replies") is allowed
# once, within 7 days of the comment. Public replies have no window.

STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
PRIVATE_REPLY_WINDOW = timedelta(days=7)
HUMAN_AGENT_TAG = "HUMAN_AGENT"

#: Platforms whose private conversations have the 24-hour / HUMAN_AGENT windows.
_WINDOWED_CONVERSATIONS = frozenset({"messenger", "instagram"})
#: Platforms where a private reply to a public comment is a "private reply" (7 days, once).
_PRIVATE_REPLY_TO_COMMENT = frozenset({"facebook", "instagram"})


class WindowState(StrEnum):
    #: No window applies (public replies; platforms without windows).
    NONE = "none"
    #: Inside the standard window: a normal response.
    OPEN = "open"
    #: Past the standard window, inside the tagged one: sent with ``tag``.
    TAGGED = "tagged"
    #: Past every window: the platform refuses replies until the customer writes again.
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class ReplyWindow:
    """Whether a reply can be sent now, and how."""

    state: WindowState
    #: The message tag to send with (``HUMAN_AGENT``) when ``state`` is TAGGED.
    tag: str = ""
    #: When the current state ends (the standard window closes, or the tagged one).
    closes_at: datetime | None = None
    #: The customer message the window is counted from.
    counted_from: datetime | None = None

    @property
    def can_send(self) -> bool:
        return self.state != WindowState.CLOSED


def has_reply_windows(platform: str) -> bool:
    """Whether any private reply on ``platform`` is bound to a window."""
    return platform in _WINDOWED_CONVERSATIONS or platform in _PRIVATE_REPLY_TO_COMMENT


def reply_window(
    platform: str,
    *,
    is_public: bool,
    answering_is_public: bool,
    customer_wrote_at: datetime | None,
    now: datetime,
) -> ReplyWindow:
    """The window a reply falls in. ``customer_wrote_at``: for a private conversation, the
    customer's last message in it; for a private reply to a comment, that comment's time.
    None (nothing to count from) means no window is known to apply."""
    if is_public or customer_wrote_at is None:
        return ReplyWindow(WindowState.NONE)
    if answering_is_public:
        if platform not in _PRIVATE_REPLY_TO_COMMENT:
            return ReplyWindow(WindowState.NONE)
        closes = customer_wrote_at + PRIVATE_REPLY_WINDOW
        state = WindowState.OPEN if now < closes else WindowState.CLOSED
        return ReplyWindow(state, closes_at=closes if state == WindowState.OPEN else None,
                           counted_from=customer_wrote_at)
    if platform not in _WINDOWED_CONVERSATIONS:
        return ReplyWindow(WindowState.NONE)
    standard = customer_wrote_at + STANDARD_WINDOW
    if now < standard:
        return ReplyWindow(WindowState.OPEN, closes_at=standard, counted_from=customer_wrote_at)
    tagged = customer_wrote_at + HUMAN_AGENT_WINDOW
    if now < tagged:
        return ReplyWindow(WindowState.TAGGED, tag=HUMAN_AGENT_TAG, closes_at=tagged,
                           counted_from=customer_wrote_at)
    return ReplyWindow(WindowState.CLOSED, counted_from=customer_wrote_at)
