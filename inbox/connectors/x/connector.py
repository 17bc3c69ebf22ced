"""X (API v2) connector: the brand's mentions in, threaded replies out.

Inbound: ``GET /2/users/:id/mentions`` (``:id`` = ``Source.account_id``), newest first,
paged with ``pagination_token``. One poll reads every page newer than the stored
``since_id``; the watermark moves to the first page's ``meta.newest_id`` only once the
last page was read. When a later page fails (or ``max_pages`` is reached) the poll
returns what it read with ``has_more=True`` and a resume cursor, so nothing is skipped:

* ``None`` — never polled: X returns the most recent mentions.
* ``{"since_id": "123"}`` — caught up; the next poll asks for tweets after 123.
* ``{"since_id": "123", "pagination_token": "t", "newest_id": "456"}`` — a burst is half
  read: go on at page ``t`` of the same ``since_id`` query; once it is finished the
  watermark becomes 456 (the newest tweet of the burst's first page).

Outbound: ``POST /2/tweets`` with ``reply.in_reply_to_tweet_id``; X mentions the
customer by itself. X takes no idempotency key, so after a timeout ``find_sent`` scans
the brand's own tweets since the parent for a reply to the same parent with the same text.

Tweet ids are numeric strings (snowflakes): compared as integers, never as text.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from inbox.connectors.base import (
    AuthenticationFailed,
    AuthorIdentity,
    Connector,
    ConnectorError,
    FetchResult,
    InboundMessage,
    OutcomeUnknown,
    PermanentError,
    RejectedItem,
    RetryableError,
    SendResult,
)
from inbox.connectors.http import PlatformHTTP, error_text
from inbox.connectors.limits import Counting, reply_length
from inbox.connectors.registry import register

if TYPE_CHECKING:
    from inbox.models import OutboundDelivery, Source

DEFAULT_API_BASE = "https://api.x.com"
#: X's limit for a tweet, in its weighted units (links count 23).
MAX_TWEET_LENGTH = 280
TWEET_URL_LENGTH = 23
TWEET_FIELDS = "created_at,conversation_id,in_reply_to_user_id,referenced_tweets,lang,author_id"
USER_FIELDS = "username,name,verified,public_metrics"
#: X's own "no language" codes: undetermined, emoji/media only, no text.
_NO_LANGUAGE = frozenset({"und", "qam", "qct", "qht", "qme", "qst", "zxx", "art"})
_NUMERIC_ID = re.compile(r"^[1-9][0-9]{0,19}$")
_LEADING_MENTIONS = re.compile(r"^(?:@\w{1,15}\s+)+")
_URL = re.compile(r"https?://\S+")
#: Pages of the brand's own timeline ``find_sent`` reads before it gives up looking.
FIND_SENT_PAGES = 5


def _is_tweet_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_NUMERIC_ID.match(value))


def _int_setting(config: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PermanentError(
            f"x source config: {key} must be an integer between {low} and {high}, got {value!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class XConfig:
    """``Source.config`` (all optional) plus the secrets and account id an X source needs."""

    api_base: str
    account_id: str
    access_token: str
    #: ``max_results`` per mentions page (X allows 5..100).
    page_size: int = 100
    #: Pages read per fetch before handing the batch to ingest (the poller comes back at once).
    max_pages: int = 10
    timeout_seconds: float = 10.0

    @classmethod
    def from_source(cls, source: Source) -> XConfig:
        config = source.config or {}
        if not isinstance(config, Mapping):
            raise PermanentError(f"x source config must be an object, got {type(config).__name__}")
        api_base = config.get("api_base", DEFAULT_API_BASE)
        if not isinstance(api_base, str) or not api_base.startswith(("https://", "http://")):
            raise PermanentError(f"x source config: api_base must be an http(s) URL, got {api_base!r}")
        account_id = source.account_id or ""
        if not _is_tweet_id(account_id):
            raise PermanentError(
                f"x source: account_id must be the brand's numeric X user id, got {account_id!r}"
            )
        secrets = source.secrets or {}
        token = secrets.get("access_token") if isinstance(secrets, Mapping) else None
        if not isinstance(token, str) or not token.strip():
            # Never echo the secret: only say which key is missing.
            raise PermanentError("x source secrets: access_token (OAuth 2.0 user token) is missing")
        timeout = config.get("timeout_seconds", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise PermanentError(
                f"x source config: timeout_seconds must be a number above 0 and at most 120, got {timeout!r}"
            )
        return cls(
            api_base=api_base.rstrip("/"),
            account_id=account_id,
            access_token=token.strip(),
            page_size=_int_setting(config, "page_size", 100, 5, 100),
            max_pages=_int_setting(config, "max_pages", 10, 1, 100),
            timeout_seconds=float(timeout),
        )


@dataclass(frozen=True, slots=True)
class XCursor:
    """Where the mentions timeline was left (see the module docstring for the shapes)."""

    since_id: str = ""
    pagination_token: str = ""
    newest_id: str = ""

    @classmethod
    def load(cls, value: Any) -> XCursor:
        if value is None:
            return cls()
        if not isinstance(value, Mapping):
            raise PermanentError(f"x cursor is malformed: {value!r}")
        # Ids are stored as strings; an integer (a hand-edited cursor) means the same tweet.
        since_id = str(value.get("since_id") or "")
        token = value.get("pagination_token") or ""
        newest_id = str(value.get("newest_id") or "")
        if since_id and not _is_tweet_id(since_id) or newest_id and not _is_tweet_id(newest_id):
            raise PermanentError(f"x cursor is malformed (ids must be numeric strings): {value!r}")
        if not isinstance(token, str) or (token and not newest_id):
            raise PermanentError(f"x cursor is malformed (a pagination_token needs its newest_id): {value!r}")
        return cls(since_id=since_id, pagination_token=token, newest_id=newest_id)

    def dump(self) -> dict[str, str] | None:
        if not (self.since_id or self.pagination_token):
            return None
        if not self.pagination_token:
            return {"since_id": self.since_id}
        result = {"pagination_token": self.pagination_token, "newest_id": self.newest_id}
        if self.since_id:
            result["since_id"] = self.since_id
        return result


def newer(a: str, b: str) -> str:
    """The newer of two tweet ids ("" counts as none)."""
    if not a:
        return b
    if not b:
        return a
    return a if int(a) >= int(b) else b


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"created_at must be an ISO 8601 string, got {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"created_at has no time zone: {value!r}")
    return moment


def _replied_to(tweet: Mapping[str, Any]) -> str:
    refs = tweet.get("referenced_tweets") or []
    if not isinstance(refs, list):
        raise ValueError(f"referenced_tweets must be a list, got {refs!r}")
    for ref in refs:
        if isinstance(ref, Mapping) and ref.get("type") == "replied_to":
            if not _is_tweet_id(ref.get("id")):
                raise ValueError(f"replied_to id must be a numeric string, got {ref.get('id')!r}")
            return str(ref["id"])
    return ""


def _author(author_id: str, user: Mapping[str, Any] | None) -> AuthorIdentity:
    if user is None:
        # The expansion can be missing (suspended or protected author): keep the id.
        return AuthorIdentity(external_id=author_id)
    metrics = user.get("public_metrics")
    followers = metrics.get("followers_count") if isinstance(metrics, Mapping) else None
    return AuthorIdentity(
        external_id=author_id,
        handle=str(user.get("username") or ""),
        display_name=str(user.get("name") or ""),
        followers_count=followers if isinstance(followers, int) and not isinstance(followers, bool) else None,
        verified=user.get("verified") is True,
    )


def comparable_text(text: str) -> str:
    """Tweet text as X stores it, reduced to what our own text must match: X HTML-escapes
    ``& < >``, prefixes a reply with the handles it answers, and wraps links in t.co."""
    text = html.unescape(text)
    text = unicodedata.normalize("NFC", text).strip()
    text = _LEADING_MENTIONS.sub("", text)
    return " ".join(_URL.sub("<link>", text).split())


@register
class XConnector(Connector):
    platform: ClassVar[str] = "x"

    def __init__(self, source: Source, *, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(source)
        self._transport = transport

    @cached_property
    def config(self) -> XConfig:
        return XConfig.from_source(self.source)

    @cached_property
    def http(self) -> PlatformHTTP:
        config = self.config
        token = config.access_token
        return PlatformHTTP(
            config.api_base,
            headers=lambda: {"Authorization": f"Bearer {token}", "User-Agent": "webcare-desk"},
            reset_header="x-rate-limit-reset",
            timeout=httpx.Timeout(config.timeout_seconds, connect=min(5.0, config.timeout_seconds)),
            transport=self._transport,
            classify=_classify,
        )

    def close(self) -> None:
        # Only a client that was made: building one now would read the config for nothing.
        http = self.__dict__.get("http")
        if http is not None:
            http.close()

    # --- Inbound ------------------------------------------------------------------

    def fetch(self, cursor: Any) -> FetchResult:
        config = self.config
        state = XCursor.load(cursor)
        messages: list[InboundMessage] = []
        rejected: list[RejectedItem] = []
        seen: set[str] = set()
        token = state.pagination_token
        newest = state.newest_id
        for page_number in range(config.max_pages):
            params: dict[str, Any] = {
                "max_results": config.page_size,
                "tweet.fields": TWEET_FIELDS,
                "expansions": "author_id",
                "user.fields": USER_FIELDS,
            }
            if state.since_id:
                params["since_id"] = state.since_id
            if token:
                params["pagination_token"] = token
            try:
                body = self.http.json("GET", f"/2/users/{config.account_id}/mentions", params=params)
                data, users, meta = _page_parts(body)
            except RetryableError:
                if page_number == 0:
                    raise
                # Keep what was read; the next fetch asks for this page again.
                return FetchResult(messages, XCursor(state.since_id, token, newest).dump(), rejected, True)
            except AuthenticationFailed:
                raise
            except PermanentError:
                if page_number != 0 or not token:
                    raise
                # X refused the stored pagination_token (they expire): read the burst again
                # from its since_id; ingest drops what it already has.
                token = ""
                continue
            if not token:
                # The first page of a query: its newest id is the burst's new watermark.
                page_newest = meta.get("newest_id")
                if _is_tweet_id(page_newest):
                    newest = newer(newest, page_newest)
            for item in data:
                parsed = self._parse(item, users)
                if isinstance(parsed, RejectedItem):
                    rejected.append(parsed)
                elif parsed.external_id not in seen:
                    seen.add(parsed.external_id)
                    messages.append(parsed)
                    # newest_id can be absent from a malformed meta; the items still tell.
                    newest = newer(newest, parsed.external_id)
            token = meta.get("next_token") or ""
            if not isinstance(token, str):
                raise RetryableError(f"x mentions: meta.next_token is not a string: {token!r}")
            if not token:
                done = XCursor(since_id=newer(state.since_id, newest))
                return FetchResult(messages, done.dump(), rejected, False)
        return FetchResult(messages, XCursor(state.since_id, token, newest).dump(), rejected, True)

    def _parse(self, item: Any, users: Mapping[str, Mapping[str, Any]]) -> InboundMessage | RejectedItem:
        tweet_id = item.get("id") if isinstance(item, Mapping) else None
        external_id = tweet_id if isinstance(tweet_id, str) else ""
        try:
            if not isinstance(item, Mapping):
                raise ValueError(f"a tweet must be an object, got {type(item).__name__}")
            if not _is_tweet_id(tweet_id):
                raise ValueError(f"id must be a numeric string, got {tweet_id!r}")
            text = item.get("text")
            if not isinstance(text, str):
                raise ValueError(f"text must be a string, got {text!r}")
            author_id = item.get("author_id")
            if not _is_tweet_id(author_id):
                raise ValueError(f"author_id must be a numeric string, got {author_id!r}")
            created_at = _parse_time(item.get("created_at"))
            in_reply_to = _replied_to(item)
        except ValueError as exc:
            return RejectedItem(
                reason=f"x tweet {external_id or '?'}: {exc}", raw=item, external_id=external_id
            )
        language = item.get("lang")
        language = language if isinstance(language, str) and language not in _NO_LANGUAGE else ""
        user = users.get(author_id)
        return InboundMessage(
            external_id=tweet_id,
            author=_author(author_id, user),
            # X escapes & < > in tweet text; agents read the characters the customer typed.
            text=html.unescape(text),
            created_at=created_at,
            is_public=True,
            in_reply_to_external_id=in_reply_to,
            # X's conversation_id is the root of a public thread that many customers may
            # answer: tickets follow reply chains instead (it stays in raw).
            conversation_id="",
            author_is_brand=author_id == self.config.account_id,
            language=language,
            raw={**item, "author": dict(user) if user is not None else None},
        )

    # --- Outbound -----------------------------------------------------------------

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        text, parent = self._reply_parts(delivery)
        body = self.http.json(
            "POST",
            "/2/tweets",
            write=True,
            json={"text": text, "reply": {"in_reply_to_tweet_id": parent}},
        )
        data = body.get("data") if isinstance(body, Mapping) else None
        if not isinstance(data, Mapping) or not _is_tweet_id(data.get("id")):
            # X took the request but the answer does not say which tweet it made.
            raise OutcomeUnknown(f"POST /2/tweets: answer has no tweet id: {str(body)[:200]!r}")
        return SendResult(platform_id=str(data["id"]), raw=dict(data))

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        try:
            return self._find_sent(delivery)
        except PermanentError as exc:
            # delivery_send only expects retryable errors from a lookup; anything else would
            # leave the reply stuck without a reason. Retried, it ends failed with this text.
            raise RetryableError(f"x: could not look up an earlier post: {exc}") from exc

    def _find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        text, parent = self._reply_parts(delivery)
        wanted = comparable_text(text)
        params: dict[str, Any] = {
            "since_id": parent,
            "max_results": 100,
            "tweet.fields": "created_at,conversation_id,in_reply_to_user_id,referenced_tweets",
            "exclude": "retweets",
        }
        for _ in range(FIND_SENT_PAGES):
            body = self.http.json("GET", f"/2/users/{self.config.account_id}/tweets", params=params)
            data, _, meta = _page_parts(body)
            for item in data:
                if not isinstance(item, Mapping) or not _is_tweet_id(item.get("id")):
                    continue
                try:
                    answers = _replied_to(item)
                except ValueError:
                    continue
                if answers == parent and comparable_text(str(item.get("text") or "")) == wanted:
                    return SendResult(platform_id=str(item["id"]), raw=dict(item))
            token = meta.get("next_token")
            if not isinstance(token, str) or not token:
                return None
            params["pagination_token"] = token
        return None

    def _reply_parts(self, delivery: OutboundDelivery) -> tuple[str, str]:
        message = delivery.message
        if not message.is_public:
            raise PermanentError("x: direct messages are not supported by this connector; reply publicly")
        text = (message.text or "").strip()
        if not text:
            raise PermanentError("x: reply text is empty")
        length = reply_length(text, counting=Counting.X, url_length=TWEET_URL_LENGTH)
        if length > MAX_TWEET_LENGTH:
            raise PermanentError(
                f"x: reply is {length} weighted characters long; X allows {MAX_TWEET_LENGTH}"
            )
        parent = message.in_reply_to_external_id or (
            message.in_reply_to.external_id if message.in_reply_to_id and message.in_reply_to else ""
        )
        if not _is_tweet_id(parent):
            raise PermanentError(f"x: a reply needs the tweet it answers; got {parent!r}")
        return text, parent


def _page_parts(body: Any) -> tuple[list[Any], dict[str, Mapping[str, Any]], Mapping[str, Any]]:
    """(tweets, users by id, meta) of a timeline page; a page of the wrong shape is retried."""
    if not isinstance(body, Mapping):
        raise RetryableError(f"x timeline page is not an object: {str(body)[:200]!r}")
    data = body.get("data", [])
    meta = body.get("meta", {})
    includes = body.get("includes", {})
    if not isinstance(data, list) or not isinstance(meta, Mapping) or not isinstance(includes, Mapping):
        raise RetryableError(f"x timeline page has the wrong shape: {str(body)[:200]!r}")
    users = includes.get("users") or []
    by_id = {
        str(user["id"]): user
        for user in (users if isinstance(users, list) else [])
        if isinstance(user, Mapping) and isinstance(user.get("id"), str)
    }
    return data, by_id, meta


#: X problem types that mean the credentials cannot do this at all: a new token is needed.
_CREDENTIAL_PROBLEMS = ("unsupported-authentication", "client-not-enrolled")


def _classify(response: httpx.Response, write: bool) -> ConnectorError | None:
    """X answers 403 with a problem type when the token is of the wrong kind (app-only where a
    user context is needed) or the app is not enrolled: that is a re-authorization, not a
    refusal of this one post."""
    if response.status_code != 403:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    problem = body.get("type") if isinstance(body, dict) else None
    if isinstance(problem, str) and problem.rstrip("/").rsplit("/", 1)[-1] in _CREDENTIAL_PROBLEMS:
        return AuthenticationFailed(f"credentials refused: {error_text(response)}")
    return None
