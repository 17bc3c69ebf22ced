"""Mastodon connector (REST API v1 of the brand account's instance).

Inbound: mention notifications (``GET /api/v1/notifications?types[]=mention``, with
``include_filtered=true`` so the account's notification filters hide no customer). Mastodon
answers newest first; with ``min_id`` it returns the page right after that id, so the
connector pages forward from the stored watermark until a page comes back empty. The
cursor is ``{"min_id": <newest notification id read>}``: every page moves it exactly, so a
poll cut short (page budget, rate limit, error) resumes where it stopped. The first poll
(no cursor) reads only the newest page: history before the source was connected is not
imported. Tracked hashtags (config ``hashtags``) are read the same way from
``/api/v1/timelines/tag/:tag``, one watermark each under the cursor's ``tags``.

Direct-visibility statuses become private messages; their ``conversation_id`` is the
thread's root status (found with ``GET /api/v1/statuses/:id/context``), so one DM thread
stays one ticket. Every other visibility is a public message.

Outbound: ``POST /api/v1/statuses`` answering the customer's status, the customer
@mentioned first, their visibility kept, and the delivery's idempotency key as
``Idempotency-Key`` (Mastodon returns the same status for a repeated key for about an
hour). ``find_sent`` looks for the brand's reply among the parent's descendants.

Profile: ``update_profile_note`` sets the account's bio (``note``) with
``PATCH /api/v1/accounts/update_credentials``, leaving every other field as it is.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

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
    RateLimited,
    RejectedItem,
    RetryableError,
    SendResult,
)
from inbox.connectors.http import PlatformHTTP, seconds_until
from inbox.connectors.mastodon.ids import is_newer, newest
from inbox.connectors.mastodon.text import comparable, html_to_text

if TYPE_CHECKING:
    from inbox.models import Message, OutboundDelivery, Source

NOTIFICATIONS = "/api/v1/notifications"
STATUSES = "/api/v1/statuses"
VERIFY_CREDENTIALS = "/api/v1/accounts/verify_credentials"
UPDATE_CREDENTIALS = "/api/v1/accounts/update_credentials"
VISIBILITIES = ("public", "unlisted", "private", "direct")
PUBLIC_REPLY_VISIBILITIES = ("public", "unlisted")
#: Mastodon's maximum ``limit`` for notifications.
MAX_PAGE_SIZE = 80
DEFAULT_PAGE_SIZE = 40
#: Mastodon's maximum ``limit`` for timelines.
MAX_TIMELINE_PAGE_SIZE = 40
MAX_HASHTAGS = 10
TAG_TIMELINE = "/api/v1/timelines/tag"
DEFAULT_MAX_PAGES = 10
DEFAULT_TIMEOUT_SECONDS = 10.0
#: A reply found by ``find_sent`` may carry a server time this much earlier than the delivery row.
CLOCK_SKEW = timedelta(minutes=5)
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_HASHTAG = re.compile(r"^\w{1,100}$")


def _bad(key: str, problem: str) -> PermanentError:
    return PermanentError(f"mastodon source config: {key} {problem}")


def _int_setting(config: Mapping[str, Any], key: str, default: int, *, low: int, high: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(key, f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise _bad(key, f"must be between {low} and {high}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class MastodonConfig:
    """``Source.config`` (and the token from ``Source.secrets``) of a Mastodon source."""

    instance_url: str
    access_token: str
    page_size: int = DEFAULT_PAGE_SIZE
    #: Pages read per fetch before handing the batch over (the poller asks again at once).
    max_pages: int = DEFAULT_MAX_PAGES
    #: Visibility of a reply to a public status: "public" or "unlisted".
    public_reply_visibility: str = "public"
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    #: Hashtags (without "#") whose public timeline is ingested beside the mentions.
    hashtags: tuple[str, ...] = ()

    @classmethod
    def from_source(cls, config: Any, secrets: Any) -> MastodonConfig:
        config = config or {}
        secrets = secrets or {}
        if not isinstance(config, Mapping):
            raise PermanentError(f"mastodon source config must be an object, got {type(config).__name__}")
        if not isinstance(secrets, Mapping):
            raise PermanentError("mastodon source secrets must be an object")
        url = config.get("instance_url")
        if not url:
            raise _bad("instance_url", "is missing (e.g. \"https://mastodon.social\")")
        if not isinstance(url, str):
            raise _bad("instance_url", f"must be a string, got {type(url).__name__}")
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise _bad("instance_url", f"must be an http(s) URL like \"https://mastodon.social\", got {url!r}")
        token = secrets.get("access_token")
        if not token or not isinstance(token, str) or not token.strip():
            # Never echo the value: it is a secret.
            raise PermanentError("mastodon source secrets: access_token is missing or blank")
        visibility = config.get("public_reply_visibility", "public")
        if visibility not in PUBLIC_REPLY_VISIBILITIES:
            raise _bad("public_reply_visibility", f"must be \"public\" or \"unlisted\", got {visibility!r}")
        timeout = config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
            raise _bad("timeout_seconds", f"must be a number above 0 and at most 120, got {timeout!r}")
        hashtags = config.get("hashtags", [])
        if not isinstance(hashtags, list) or not all(isinstance(t, str) and _HASHTAG.match(t) for t in hashtags):
            raise _bad("hashtags", f"must be a list of hashtags without \"#\" (letters, digits, _), got {hashtags!r}")
        if len(hashtags) > MAX_HASHTAGS:
            raise _bad("hashtags", f"may hold at most {MAX_HASHTAGS} hashtags, got {len(hashtags)}")
        return cls(
            instance_url=url.strip().rstrip("/"),
            access_token=token.strip(),
            page_size=_int_setting(config, "page_size", DEFAULT_PAGE_SIZE, low=1, high=MAX_PAGE_SIZE),
            max_pages=_int_setting(config, "max_pages", DEFAULT_MAX_PAGES, low=1, high=1000),
            public_reply_visibility=visibility,
            timeout_seconds=float(timeout),
            hashtags=tuple(dict.fromkeys(t.lower() for t in hashtags)),
        )


@dataclass(frozen=True, slots=True)
class MastodonCursor:
    """Watermarks: the newest mention notification read, and per tracked hashtag the newest
    status read. None: never read (the first read takes the newest page only); "": read, and
    there was nothing yet."""

    min_id: str | None
    tags: Mapping[str, str]


def _watermark(value: Any) -> bool:
    return isinstance(value, str) and not any(ch.isspace() for ch in value)


def _load_cursor(cursor: Any) -> MastodonCursor:
    if cursor is None:
        return MastodonCursor(min_id=None, tags={})
    if isinstance(cursor, Mapping) and _watermark(cursor.get("min_id")):
        tags = cursor.get("tags", {})
        if isinstance(tags, Mapping) and all(_watermark(v) for v in tags.values()):
            return MastodonCursor(min_id=cursor["min_id"], tags=dict(tags))
    raise PermanentError(f"mastodon cursor is malformed: {cursor!r}")


@dataclass(slots=True)
class _Batch:
    """What one fetch has read so far, across pages and streams."""

    marks: dict[str, str | None]
    messages: list[InboundMessage] = field(default_factory=list)
    rejected: list[RejectedItem] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    # Thread roots of direct statuses met in this fetch.
    roots: dict[str, str] = field(default_factory=dict)
    pages: int = 0

    def add(self, parsed: list[InboundMessage | RejectedItem | None]) -> None:
        for item in parsed:
            if isinstance(item, RejectedItem):
                self.rejected.append(item)
            elif item is not None and item.external_id not in self.seen:
                # A status met twice (across pages, or a mention that also carries a tracked tag).
                self.seen.add(item.external_id)
                self.messages.append(item)


def _prev_min_id(link_header: str | None) -> str:
    """``min_id`` of the Link header's ``rel="prev"`` URL (the page's newest item), if any."""
    if not link_header:
        return ""
    for part in link_header.split(","):
        match = re.search(r"<([^>]*)>\s*;\s*rel=\"?prev\"?", part)
        if match:
            values = parse_qs(urlsplit(match.group(1)).query).get("min_id")
            if values and values[0]:
                return values[0]
    return ""


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _id(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value.strip() if isinstance(value, str) else ""


def status_of(raw: Any) -> Mapping[str, Any]:
    """The status inside a stored raw item (a notification, or a status itself)."""
    if not isinstance(raw, Mapping):
        return {}
    inner = raw.get("status")
    if isinstance(inner, Mapping) and "type" in raw:
        return inner
    return raw


def status_text(status: Mapping[str, Any]) -> str:
    """What the customer wrote: content warning, body, and links to attached media."""
    body = html_to_text(status.get("content") or "")
    spoiler = status.get("spoiler_text") or ""
    if isinstance(spoiler, str) and spoiler.strip():
        body = f"CW: {spoiler.strip()}\n\n{body}" if body else f"CW: {spoiler.strip()}"
    media = status.get("media_attachments") or []
    links = [
        item.get("url") or item.get("remote_url")
        for item in media if isinstance(item, Mapping) and (item.get("url") or item.get("remote_url"))
    ]
    if links:
        body = "\n".join([body, *links]) if body else "\n".join(links)
    return body


class MastodonConnector(Connector):
    platform: ClassVar[str] = "mastodon"

    def __init__(self, source: Source) -> None:
        super().__init__(source)
        self._brand_id: str | None = source.account_id or None
        # Set when the platform said no requests are left in this window (seconds since epoch).
        self._blocked_until: float | None = None

    @cached_property
    def config(self) -> MastodonConfig:
        return MastodonConfig.from_source(self.source.config, self.source.secrets)

    @cached_property
    def http(self) -> PlatformHTTP:
        config = self.config
        token = config.access_token
        return PlatformHTTP(
            config.instance_url,
            headers=lambda: {"Authorization": f"Bearer {token}", "Accept": "application/json"},
            reset_header="X-RateLimit-Reset",
            timeout=httpx.Timeout(config.timeout_seconds, connect=min(config.timeout_seconds, 5.0)),
        )

    def close(self) -> None:
        # Only a client that was made: building one now would read the config for nothing.
        http = self.__dict__.get("http")
        if http is not None:
            http.close()

    # --- HTTP with Mastodon's rate-limit headers ------------------------------------

    def _call(self, method: str, url: str, *, write: bool = False, **kwargs: Any) -> tuple[Any, httpx.Headers]:
        if self._blocked_until is not None:
            wait = self._blocked_until - time.time()
            if wait > 0:
                raise RateLimited(f"rate limit used up: no requests left for {wait:.0f}s", retry_after=wait)
            self._blocked_until = None
        try:
            body = self.http.json(method, url, write=write, **kwargs)
        finally:
            self._note_rate_limit(self.http.last_headers)
        return body, self.http.last_headers or httpx.Headers()

    def _note_rate_limit(self, headers: httpx.Headers | None) -> None:
        if headers is None or headers.get("X-RateLimit-Remaining", "").strip() != "0":
            return
        wait = seconds_until(headers.get("X-RateLimit-Reset"))
        self._blocked_until = time.time() + (wait if wait is not None else 60.0)

    @property
    def _exhausted(self) -> bool:
        return self._blocked_until is not None and self._blocked_until > time.time()

    def brand_account_id(self) -> str:
        """The brand's account id: ``Source.account_id``, else asked from the instance."""
        if self._brand_id is None:
            account, _ = self._call("GET", VERIFY_CREDENTIALS)
            brand = _id(account.get("id")) if isinstance(account, Mapping) else ""
            if not brand:
                raise PermanentError("mastodon verify_credentials answered without an account id")
            self._brand_id = brand
        return self._brand_id

    # --- Inbound ----------------------------------------------------------------------

    def fetch(self, cursor: Any) -> FetchResult:
        config = self.config
        state = _load_cursor(cursor)
        batch = _Batch(marks={"min_id": state.min_id})
        for tag in config.hashtags:
            batch.marks[f"tag:{tag}"] = state.tags.get(tag)
        more = False
        try:
            more = self._read_stream(
                "min_id", NOTIFICATIONS, [("types[]", "mention"), ("include_filtered", "true")], batch, self._parse_notification,
                page_size=config.page_size,
            )
            for tag in config.hashtags:
                more = self._read_stream(
                    f"tag:{tag}", f"{TAG_TIMELINE}/{quote(tag, safe='')}", [], batch, self._parse_timeline_status,
                    page_size=min(config.page_size, MAX_TIMELINE_PAGE_SIZE),
                ) or more
        except ConnectorError:
            if batch.pages == 0:
                raise
            # Keep what was read; the next fetch resumes there and meets the error itself.
            more = True
        next_cursor: dict[str, Any] = {"min_id": batch.marks["min_id"] or ""}
        if config.hashtags:
            next_cursor["tags"] = {tag: batch.marks[f"tag:{tag}"] or "" for tag in config.hashtags}
        return FetchResult(messages=batch.messages, next_cursor=next_cursor, rejected=batch.rejected, has_more=more)

    def _read_stream(
        self,
        key: str,
        path: str,
        params: list[tuple[str, str | int]],
        batch: _Batch,
        parse: Callable[[Any, dict[str, str]], InboundMessage | RejectedItem | None],
        *,
        page_size: int,
    ) -> bool:
        """Page forward with ``min_id`` from ``batch.marks[key]`` until a page is empty.

        The mark moves with every page read, so an error or a cut leaves it exactly after
        the last page taken. A mark of None is the first read of this stream: only its newest
        page is taken (history from before the source was connected is not imported).
        Returns whether more is left (page budget used, or no requests left)."""
        watermark = batch.marks[key]
        first_read = watermark is None
        pages = 0
        while True:
            query = [*params, ("limit", page_size)]
            if watermark:
                query.append(("min_id", watermark))
            page, headers = self._call("GET", path, params=query)
            if not isinstance(page, list):
                raise RetryableError(f"GET {path}: expected a list, got {type(page).__name__}")
            parsed = [parse(item, batch.roots) for item in page]
            pages += 1
            batch.pages += 1
            page_newest = _prev_min_id(headers.get("Link")) or newest(
                _id(item.get("id")) for item in page if isinstance(item, Mapping)
            )
            batch.add(parsed)
            if not page_newest or (watermark and not is_newer(page_newest, watermark)):
                # Empty, or only repeats of items already read: caught up.
                batch.marks[key] = watermark or ""
                return False
            watermark = batch.marks[key] = page_newest
            if first_read:
                return False
            if pages >= self.config.max_pages or self._exhausted:
                return True

    def _parse_timeline_status(self, item: Any, roots: dict[str, str]) -> InboundMessage | RejectedItem | None:
        if not isinstance(item, Mapping):
            return RejectedItem(reason=f"timeline status is not an object but {type(item).__name__}", raw=item)
        return self._parse_status(item, raw=item, roots=roots)

    def _parse_notification(self, item: Any, roots: dict[str, str]) -> InboundMessage | RejectedItem | None:
        if not isinstance(item, Mapping):
            return RejectedItem(reason=f"notification is not an object but {type(item).__name__}", raw=item)
        notification_id = _id(item.get("id"))
        if not notification_id:
            return RejectedItem(reason="notification has no id", raw=item)
        kind = item.get("type")
        if kind != "mention":
            # Asked for mentions only; an older server may send more kinds. Not for the desk.
            return None
        status = item.get("status")
        if not isinstance(status, Mapping):
            return RejectedItem(
                reason=f"mention notification {notification_id} has no status object", raw=item,
                external_id=notification_id,
            )
        return self._parse_status(status, raw=item, roots=roots)

    def _parse_status(
        self, status: Mapping[str, Any], *, raw: Mapping[str, Any], roots: dict[str, str]
    ) -> InboundMessage | RejectedItem:
        status_id = _id(status.get("id"))
        if not status_id:
            return RejectedItem(reason="status has no id", raw=raw)

        def reject(problem: str) -> RejectedItem:
            return RejectedItem(reason=f"status {status_id}: {problem}", raw=raw, external_id=status_id)

        account = status.get("account")
        if not isinstance(account, Mapping) or not _id(account.get("id")):
            return reject("account is missing or has no id")
        created_at = _parse_time(status.get("created_at"))
        if created_at is None:
            return reject(f"created_at {status.get('created_at')!r} is not an ISO 8601 time with a zone")
        content = status.get("content")
        if content is not None and not isinstance(content, str):
            return reject(f"content must be HTML text, got {type(content).__name__}")
        visibility = status.get("visibility")
        if visibility not in VISIBILITIES:
            return reject(f"visibility {visibility!r} is not one of {', '.join(VISIBILITIES)}")
        followers = account.get("followers_count")
        if isinstance(followers, bool) or not isinstance(followers, int) or followers < 0:
            followers = None
        author_id = _id(account.get("id"))
        in_reply_to = _id(status.get("in_reply_to_id"))
        is_public = visibility != "direct"
        conversation_id = "" if is_public else self._thread_root(status_id, in_reply_to, roots)
        language = status.get("language")
        return InboundMessage(
            external_id=status_id,
            author=AuthorIdentity(
                external_id=author_id,
                handle=str(account.get("acct") or account.get("username") or ""),
                display_name=str(account.get("display_name") or account.get("username") or ""),
                followers_count=followers,
            ),
            text=status_text(status),
            created_at=created_at,
            is_public=is_public,
            in_reply_to_external_id=in_reply_to,
            conversation_id=conversation_id,
            author_is_brand=author_id == self.brand_account_id(),
            language=language if isinstance(language, str) and len(language) <= 10 else "",
            raw=raw,
        )

    def _thread_root(self, status_id: str, in_reply_to: str, roots: dict[str, str]) -> str:
        """The first status of a direct thread: one ticket per DM thread."""
        if not in_reply_to:
            roots[status_id] = status_id
            return status_id
        if in_reply_to in roots:
            root = roots[in_reply_to]
        else:
            try:
                context, _ = self._call("GET", f"{STATUSES}/{quote(status_id, safe='')}/context")
            except AuthenticationFailed:
                raise
            except PermanentError:
                # Deleted meanwhile (404): thread it on its parent.
                context = {}
            ancestors = context.get("ancestors") if isinstance(context, Mapping) else None
            first = ancestors[0] if isinstance(ancestors, list) and ancestors else None
            root = _id(first.get("id")) if isinstance(first, Mapping) else ""
            root = root or in_reply_to
        roots[status_id] = root
        return root

    # --- Outbound ---------------------------------------------------------------------

    def _reply_plan(self, delivery: OutboundDelivery) -> tuple[str, dict[str, Any]]:
        """(status answered, POST body) of a delivery, or PermanentError when it cannot be posted."""
        message = delivery.message
        text = (message.text or "").strip()
        if not text:
            raise PermanentError("reply text is empty")
        parent: Message | None = message.in_reply_to if message.in_reply_to_id else None
        in_reply_to = message.in_reply_to_external_id or (parent.external_id if parent is not None else "") or ""
        if not in_reply_to:
            raise PermanentError("reply answers no Mastodon status (in_reply_to_external_id is empty)")
        parent_status = status_of(parent.raw) if parent is not None else {}
        account = parent_status.get("account")
        acct = str(account.get("acct") or "") if isinstance(account, Mapping) else ""
        if not acct and parent is not None and parent.author_contact_id:
            acct = parent.author_contact.handle
        acct = acct.lstrip("@")
        first_word = text.split(maxsplit=1)[0].lower()
        if acct and first_word != f"@{acct.lower()}":
            text = f"@{acct} {text}"
        if not message.is_public:
            visibility = "direct"
        elif parent_status.get("visibility") in ("unlisted", "private"):
            visibility = str(parent_status["visibility"])
        else:
            visibility = self.config.public_reply_visibility
        body: dict[str, Any] = {"status": text, "in_reply_to_id": in_reply_to, "visibility": visibility}
        if message.language and _LANGUAGE.match(message.language):
            body["language"] = message.language
        return in_reply_to, body

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        _, body = self._reply_plan(delivery)
        status, _ = self._call(
            "POST", STATUSES, write=True, json=body,
            headers={"Idempotency-Key": str(delivery.idempotency_key)},
        )
        status_id = _id(status.get("id")) if isinstance(status, Mapping) else ""
        if not status_id:
            raise OutcomeUnknown(f"POST {STATUSES}: the answer has no status id")
        return SendResult(platform_id=status_id, raw=status)

    def find_reply(self, *, in_reply_to: str, text: str, since: datetime | None) -> SendResult | None:
        """The brand's reply to ``in_reply_to`` with ``text``, among the status's descendants."""
        brand = self.brand_account_id()
        context, _ = self._call("GET", f"{STATUSES}/{quote(in_reply_to, safe='')}/context")
        descendants = context.get("descendants") if isinstance(context, Mapping) else None
        wanted = comparable(text)
        for status in descendants if isinstance(descendants, list) else ():
            if not isinstance(status, Mapping):
                continue
            account = status.get("account")
            if not isinstance(account, Mapping) or _id(account.get("id")) != brand:
                continue
            if _id(status.get("in_reply_to_id")) != in_reply_to:
                continue
            posted = _parse_time(status.get("created_at"))
            if since is not None and posted is not None and posted < since - CLOCK_SKEW:
                continue
            if comparable(html_to_text(status.get("content") or "")) == wanted and _id(status.get("id")):
                return SendResult(platform_id=_id(status.get("id")), raw=status)
        return None

    # --- Profile ----------------------------------------------------------------------

    def update_profile_note(self, text: str) -> None:
        """Set the brand account's bio (``note``) with ``PATCH update_credentials``; the other
        profile fields are not sent, so they stay as they are. The instance checks the length
        (500 by default, links counting 23) and its refusal (422) is the PermanentError."""
        # Not a ``write``: setting the same note twice is harmless, so a lost answer is
        # simply retried rather than left "unknown".
        self._call("PATCH", UPDATE_CREDENTIALS, json={"note": text})

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        # Within about an hour a re-POST with the same Idempotency-Key (send_reply) returns
        # the same status anyway; the thread lookup also covers older attempts.
        try:
            in_reply_to, body = self._reply_plan(delivery)
            return self.find_reply(in_reply_to=in_reply_to, text=body["status"], since=delivery.created_at)
        except PermanentError:
            # Parent gone, token refused, nothing to send: send_reply meets the same error
            # and records it on the delivery.
            return None
