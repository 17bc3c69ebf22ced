"""The Bluesky connector: notifications in, threaded replies out.

Inbound: ``app.bsky.notification.listNotifications`` (reasons mention, reply and quote)
returns the newest first and pages towards older ones with ``cursor``. A poll reads from
the top down to the watermark (``indexedAt`` + ``uri`` of the newest notification of the
previous complete poll) and only then moves the watermark to the newest item it saw. A
burst longer than ``max_pages`` pages is returned in parts: the cursor then keeps the old
watermark, the page cursor to resume at and the newest item seen, with ``has_more``.
Brand keywords (``config.keywords``) are read the same way from ``app.bsky.feed.searchPosts``
(``sort=latest``), each with its own watermark under ``cursor["search"]``, one stream at a
time: a keyword is read only once the streams before it are complete.

Outbound: ``com.atproto.repo.createRecord`` of an ``app.bsky.feed.post`` with reply refs
(parent = the post answered, root = that post's thread root) and a record key derived
from the delivery (``tid.tid_for``), so a second attempt cannot make a second post and
``find_sent`` is a ``com.atproto.repo.getRecord`` of that key.

Profile: ``update_profile_note`` reads the ``app.bsky.actor.profile`` record ``self``,
replaces only its ``description`` and writes it back with ``com.atproto.repo.putRecord``
and ``swapRecord`` = the cid it read (null when there was none: create it), so an edit
made in between (the brand changing its avatar in the app) is read again, not overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import regex

from inbox.connectors.base import (
    AuthenticationFailed,
    AuthorIdentity,
    Connector,
    FetchResult,
    InboundMessage,
    OutcomeUnknown,
    PermanentError,
    RejectedItem,
    RetryableError,
    SendResult,
)
from inbox.connectors.bluesky.tid import tid_for
from inbox.connectors.bluesky.xrpc import XrpcClient, xrpc_error_code
from inbox.connectors.registry import register

if TYPE_CHECKING:
    from inbox.models import OutboundDelivery, Source

POST_COLLECTION = "app.bsky.feed.post"
PROFILE_COLLECTION = "app.bsky.actor.profile"
PROFILE_RKEY = "self"
#: ``app.bsky.actor.profile#description``: 256 graphemes, 2560 bytes of UTF-8.
MAX_DESCRIPTION_GRAPHEMES = 256
MAX_DESCRIPTION_BYTES = 2560
#: Read-modify-write rounds before a profile that keeps changing is left for a retry.
PROFILE_WRITE_ATTEMPTS = 3
#: Notification reasons that are a customer talking to or about the brand.
REASONS = ("mention", "reply", "quote")
#: Bluesky's limit on a post's text, in graphemes.
MAX_GRAPHEMES = 300
_GRAPHEME = regex.compile(r"\X")


def _config_error(text: str) -> PermanentError:
    return PermanentError(f"bluesky source config: {text}")


@dataclass(frozen=True, slots=True)
class BlueskyConfig:
    """``Source.config`` (non-secret) and ``Source.secrets`` of a Bluesky source."""

    service_url: str
    identifier: str
    app_password: str
    timeout_seconds: float = 10.0
    #: Notifications per page (the API allows 1..100).
    page_size: int = 50
    #: Pages one ``fetch`` reads before returning with ``has_more``.
    max_pages: int = 5
    #: Pages read on the very first poll (no watermark yet): older history is not imported.
    initial_pages: int = 1
    #: ``langs`` of a reply whose ticket has no language.
    default_language: str = "en"
    #: Brand keywords tracked with ``app.bsky.feed.searchPosts`` (posts that do not tag the brand).
    keywords: tuple[str, ...] = ()

    @classmethod
    def from_source(cls, source: Source) -> BlueskyConfig:
        config = source.config or {}
        secrets = source.secrets or {}
        if not isinstance(config, Mapping):
            raise _config_error(f"config must be an object, got {type(config).__name__}")
        if not isinstance(secrets, Mapping):
            raise PermanentError("bluesky source secrets must be an object")
        service_url = config.get("service_url")
        if not isinstance(service_url, str) or not service_url.strip():
            raise _config_error("service_url (the PDS base URL, e.g. https://bsky.social) is missing")
        service_url = service_url.strip()
        if not service_url.startswith(("https://", "http://")):
            raise _config_error(f"service_url must start with https://, got {service_url!r}")
        # Secret values never appear in messages: only which one is missing.
        identifier = secrets.get("identifier")
        if not isinstance(identifier, str) or not identifier.strip():
            raise PermanentError("bluesky source secrets: identifier (handle or DID of the brand) is missing")
        password = secrets.get("app_password")
        if not isinstance(password, str) or not password:
            raise PermanentError("bluesky source secrets: app_password is missing")
        default = cls("", "", "")
        return cls(
            service_url=service_url,
            identifier=identifier.strip(),
            app_password=password,
            timeout_seconds=_number(config, "timeout_seconds", default.timeout_seconds),
            page_size=_integer(config, "page_size", default.page_size, 1, 100),
            max_pages=_integer(config, "max_pages", default.max_pages, 1, 100),
            initial_pages=_integer(config, "initial_pages", default.initial_pages, 1, 100),
            default_language=_text(config, "default_language", default.default_language),
            keywords=_keywords(config),
        )


def _number(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise _config_error(f"{key} must be a number above 0, got {value!r}")
    return float(value)


def _integer(config: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _config_error(f"{key} must be an integer between {low} and {high}, got {value!r}")
    return value


def _keywords(config: Mapping[str, Any]) -> tuple[str, ...]:
    value = config.get("keywords", [])
    if not isinstance(value, list) or not all(isinstance(k, str) and k.strip() for k in value):
        raise _config_error(f"keywords must be a list of non-empty strings, got {value!r}")
    if len(value) > 10:
        raise _config_error(f"keywords: at most 10 are tracked, got {len(value)}")
    return tuple(dict.fromkeys(k.strip() for k in value))


def _text(config: Mapping[str, Any], key: str, default: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str):
        raise _config_error(f"{key} must be a string, got {value!r}")
    return value


# --- Cursor ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    """A position in the notification list: the newest item of a poll."""

    indexed_at: datetime
    uri: str

    def dump(self) -> dict[str, str]:
        return {"indexed_at": self.indexed_at.isoformat(), "uri": self.uri}

    @classmethod
    def load(cls, value: Any) -> Mark | None:
        if value is None:
            return None
        return cls(_parse_time(value["indexed_at"]), str(value["uri"]))

    def reached_by(self, indexed_at: datetime, uri: str) -> bool:
        """True when an item at (indexed_at, uri) is this mark or older: seen before."""
        return indexed_at < self.indexed_at or (indexed_at == self.indexed_at and uri == self.uri)


@dataclass(frozen=True, slots=True)
class BlueskyCursor:
    watermark: Mark | None
    # Set while a burst is read in parts: where to go on, and the newest item of the burst.
    page: str | None = None
    newest: Mark | None = None

    @classmethod
    def load(cls, value: Any) -> BlueskyCursor:
        if value is None:
            return cls(None)
        try:
            cursor = cls(
                watermark=Mark.load(value.get("watermark")),
                page=value.get("page"),
                newest=Mark.load(value.get("newest")),
            )
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise PermanentError(f"bluesky cursor is malformed ({exc!r}): {value!r}") from exc
        if cursor.page is not None and not isinstance(cursor.page, str):
            raise PermanentError(f"bluesky cursor is malformed: {value!r}")
        return cursor

    def dump(self) -> dict[str, Any]:
        return {
            "watermark": self.watermark.dump() if self.watermark else None,
            "page": self.page,
            "newest": self.newest.dump() if self.newest else None,
        }


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise ValueError(f"not a timestamp: {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without time zone: {value!r}")
    return moment


@dataclass(slots=True)
class _Read:
    """What one fetch has read so far, across streams."""

    brand: frozenset[str]
    messages: list[InboundMessage] = field(default_factory=list)
    rejected: list[RejectedItem] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    pages: int = 0


def _load_searches(value: Any) -> dict[str, BlueskyCursor]:
    if not isinstance(value, Mapping) or value.get("search") is None:
        return {}
    searches = value["search"]
    if not isinstance(searches, Mapping):
        raise PermanentError(f"bluesky cursor is malformed: {value!r}")
    return {str(keyword): BlueskyCursor.load(state) for keyword, state in searches.items()}


def _iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _strong_ref(value: Any) -> dict[str, str] | None:
    if isinstance(value, Mapping) and isinstance(value.get("uri"), str) and isinstance(value.get("cid"), str):
        return {"uri": value["uri"], "cid": value["cid"]}
    return None


# --- The connector ---------------------------------------------------------------------


@register
class BlueskyConnector(Connector):
    platform: ClassVar[str] = "bluesky"

    def __init__(self, source: Source, *, transport: httpx.BaseTransport | None = None) -> None:
        super().__init__(source)
        self._transport = transport

    @cached_property
    def config(self) -> BlueskyConfig:
        return BlueskyConfig.from_source(self.source)

    @cached_property
    def xrpc(self) -> XrpcClient:
        config = self.config
        return XrpcClient(
            service_url=config.service_url,
            identifier=config.identifier,
            app_password=config.app_password,
            timeout=httpx.Timeout(config.timeout_seconds, connect=min(5.0, config.timeout_seconds)),
            session_key=self.source.pk,
            transport=self._transport,
        )

    def close(self) -> None:
        # Only a client that was made: building one now would read the config for nothing.
        xrpc = self.__dict__.get("xrpc")
        if xrpc is not None:
            xrpc.close()

    @property
    def brand_ids(self) -> frozenset[str]:
        """The brand's DIDs: ``Source.account_id`` and the logged-in account's."""
        session = self.xrpc.session
        return frozenset(filter(None, (self.source.account_id, session.did)))

    # --- Inbound ------------------------------------------------------------------

    def fetch(self, cursor: Any) -> FetchResult:
        config = self.config
        notifications = BlueskyCursor.load(cursor)
        searches = _load_searches(cursor)
        read = _Read(brand=self.brand_ids)
        notifications, has_more = self._read_stream(
            "app.bsky.notification.listNotifications",
            "notifications",
            [("reasons", reason) for reason in REASONS],
            notifications,
            read,
            reason=None,
        )
        next_searches: dict[str, BlueskyCursor] = {}
        for keyword in config.keywords:
            state = searches.get(keyword, BlueskyCursor(None))
            if not has_more:
                # One stream at a time: the next keyword waits until this burst is read.
                params: list[tuple[str, str | int]] = [("q", keyword), ("sort", "latest")]
                if state.watermark is not None and state.page is None:
                    params.append(("since", _iso_z(state.watermark.indexed_at)))
                state, has_more = self._read_stream(
                    "app.bsky.feed.searchPosts",
                    "posts",
                    params,
                    state,
                    read,
                    reason=f"search {keyword}",
                )
            next_searches[keyword] = state
        next_cursor = notifications.dump()
        if next_searches:
            next_cursor["search"] = {keyword: state.dump() for keyword, state in next_searches.items()}
        return FetchResult(read.messages, next_cursor, read.rejected, has_more=has_more)

    def _read_stream(
        self,
        nsid: str,
        list_key: str,
        extra: list[tuple[str, str | int]],
        state: BlueskyCursor,
        read: _Read,
        *,
        reason: str | None,
    ) -> tuple[BlueskyCursor, bool]:
        """Read one newest-first list down to its watermark: (its next state, has_more).

        ``reason`` None: notifications (their own ``reason`` says what they are); else the
        label of a keyword search whose items are plain posts."""
        config = self.config
        page_limit = config.max_pages if state.watermark is not None else config.initial_pages
        newest = state.newest
        page = state.page
        for _ in range(page_limit):
            params: list[tuple[str, str | int]] = [("limit", config.page_size), *extra]
            if page:
                params.append(("cursor", page))
            try:
                body = self.xrpc.call("GET", nsid, params=params)
            except RetryableError:
                if read.pages == 0:
                    raise  # nothing read yet: the poller backs off and asks again
                # Keep what was read; the next fetch resumes at the page that failed.
                return BlueskyCursor(watermark=state.watermark, page=page, newest=newest), True
            if not isinstance(body, Mapping) or not isinstance(body.get(list_key), list):
                problem = f"{nsid} answer has no {list_key} list: {str(body)[:200]!r}"
                if read.pages == 0:
                    raise RetryableError(problem)
                return BlueskyCursor(watermark=state.watermark, page=page, newest=newest), True
            read.pages += 1
            reached = False
            for item in body[list_key]:
                position = _position(item)
                if position is None:
                    read.rejected.append(
                        RejectedItem(
                            reason=f"{reason or 'notification'}: item without a valid uri and indexedAt",
                            raw=item,
                            external_id=str(item.get("uri", "")) if isinstance(item, Mapping) else "",
                        )
                    )
                    continue
                if state.watermark is not None and state.watermark.reached_by(*position):
                    reached = True
                    break
                if newest is None:
                    newest = Mark(*position)
                if position[1] in read.seen:
                    continue  # the same item on two pages (or in two streams)
                read.seen.add(position[1])
                if reason is None and item.get("reason") not in REASONS:
                    continue  # likes, follows, reposts: not customer messages
                parsed = _message(item, read.brand, reason=reason or item.get("reason"))
                if isinstance(parsed, RejectedItem):
                    read.rejected.append(parsed)
                else:
                    read.messages.append(parsed)
            next_page = body.get("cursor")
            if reached or not isinstance(next_page, str) or not next_page or not body[list_key]:
                return BlueskyCursor(watermark=newest or state.watermark), False
            page = next_page
        if state.watermark is None:
            # First poll: history beyond initial_pages is not imported.
            return BlueskyCursor(watermark=newest), False
        return BlueskyCursor(watermark=state.watermark, page=page, newest=newest), True

    # --- Outbound -----------------------------------------------------------------

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        message = delivery.message
        text = message.text or ""
        if not text.strip():
            raise PermanentError("the reply text is empty")
        if not message.is_public:
            raise PermanentError(
                "Bluesky private replies (chat) are not supported by this connector: send a public reply"
            )
        length = len(_GRAPHEME.findall(text))
        if length > MAX_GRAPHEMES:
            raise PermanentError(
                f"the reply is {length} graphemes long; Bluesky allows {MAX_GRAPHEMES} per post"
            )
        parent, root = self._reply_refs(delivery)
        rkey = self._rkey(delivery)
        record: dict[str, Any] = {
            "$type": POST_COLLECTION,
            "text": text,
            "createdAt": _now_iso(),
            "langs": [self._language(delivery)],
            "reply": {"root": root, "parent": parent},
        }
        repo = self.xrpc.session.did
        try:
            body = self.xrpc.call(
                "POST",
                "com.atproto.repo.createRecord",
                write=True,
                json={"repo": repo, "collection": POST_COLLECTION, "rkey": rkey, "record": record},
            )
        except (OutcomeUnknown, AuthenticationFailed):
            # A timeout stays unknown until find_sent looks.
            raise
        except (PermanentError, RetryableError):
            # A record with this key exists already (today's PDS answers 500, newer ones a
            # conflict error): an earlier attempt posted it.
            existing = self._get_own_post(rkey)
            if existing is None:
                raise
            if not _same_text(existing, text):
                raise PermanentError(
                    f"record key {rkey} already holds another post of the brand: {existing.platform_id}"
                ) from None
            return existing
        if not isinstance(body, Mapping) or not isinstance(body.get("uri"), str):
            raise RetryableError(f"createRecord answer has no uri: {str(body)[:200]!r}")
        return SendResult(
            platform_id=body["uri"],
            raw={"uri": body["uri"], "cid": body.get("cid", ""), "rkey": rkey, "record": record},
        )

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        found = self._get_own_post(self._rkey(delivery))
        # Another delivery stored in the same microsecond with the same 10-bit hash would
        # have the same key: only a post with this reply's text is this reply.
        if found is None or not _same_text(found, delivery.message.text or ""):
            return None
        return found

    def _rkey(self, delivery: OutboundDelivery) -> str:
        stored_at = delivery.created_at or getattr(delivery.message, "created_at", None)
        return tid_for(delivery.idempotency_key, stored_at)

    def _get_own_post(self, rkey: str) -> SendResult | None:
        try:
            body = self.xrpc.call(
                "GET",
                "com.atproto.repo.getRecord",
                params={"repo": self.xrpc.session.did, "collection": POST_COLLECTION, "rkey": rkey},
            )
        except PermanentError as exc:
            if xrpc_error_code(exc) == "RecordNotFound":
                return None
            raise
        if not isinstance(body, Mapping) or not isinstance(body.get("uri"), str):
            raise RetryableError(f"getRecord answer has no uri: {str(body)[:200]!r}")
        return SendResult(
            platform_id=body["uri"],
            raw={"uri": body["uri"], "cid": body.get("cid", ""), "rkey": rkey, "record": body.get("value")},
        )

    # --- Profile ------------------------------------------------------------------

    def update_profile_note(self, text: str) -> None:
        length = len(_GRAPHEME.findall(text))
        size = len(text.encode("utf-8"))
        if length > MAX_DESCRIPTION_GRAPHEMES or size > MAX_DESCRIPTION_BYTES:
            raise PermanentError(
                f"the profile note is {length} graphemes ({size} bytes) long; Bluesky allows "
                f"{MAX_DESCRIPTION_GRAPHEMES} graphemes and {MAX_DESCRIPTION_BYTES} bytes "
                "in a profile description"
            )
        repo = self.xrpc.session.did
        for _ in range(PROFILE_WRITE_ATTEMPTS):
            record, cid = self._get_profile(repo)
            record = {**(record or {}), "$type": PROFILE_COLLECTION, "description": text}
            try:
                # Not a ``write``: writing the same description again is harmless, so a lost
                # answer is retried rather than left "unknown".
                self.xrpc.call(
                    "POST",
                    "com.atproto.repo.putRecord",
                    json={
                        "repo": repo,
                        "collection": PROFILE_COLLECTION,
                        "rkey": PROFILE_RKEY,
                        "record": record,
                        # The cid read, or null ("there is none yet"): the PDS refuses the
                        # write (InvalidSwap) if the profile changed since it was read.
                        "swapRecord": cid,
                    },
                )
            except PermanentError as exc:
                if xrpc_error_code(exc) == "InvalidSwap":
                    continue  # edited meanwhile: read it again, keep that edit
                raise
            return
        raise RetryableError(
            f"the Bluesky profile changed while the note was written, {PROFILE_WRITE_ATTEMPTS} times in a row"
        )

    def _get_profile(self, repo: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the profile record, its cid), or (None, None) when the account has none yet."""
        try:
            body = self.xrpc.call(
                "GET",
                "com.atproto.repo.getRecord",
                params={"repo": repo, "collection": PROFILE_COLLECTION, "rkey": PROFILE_RKEY},
            )
        except PermanentError as exc:
            if xrpc_error_code(exc) == "RecordNotFound":
                return None, None
            raise
        if (
            not isinstance(body, Mapping)
            or not isinstance(body.get("value"), Mapping)
            or not isinstance(body.get("cid"), str)
            or not body["cid"]
        ):
            raise RetryableError(f"getRecord of the profile has no value and cid: {str(body)[:200]!r}")
        return dict(body["value"]), body["cid"]

    def _reply_refs(self, delivery: OutboundDelivery) -> tuple[dict[str, str], dict[str, str]]:
        """(parent, root) strong refs of the post answered, checked to still exist."""
        message = delivery.message
        answered = message.in_reply_to if message.in_reply_to_id else None
        raw = answered.raw if answered is not None and isinstance(answered.raw, Mapping) else {}
        parent_uri = raw.get("uri") or message.in_reply_to_external_id
        if not parent_uri:
            raise PermanentError("the reply answers no Bluesky post: there is nothing to reply to")
        # The post may have been deleted since it was ingested: a reply to it would be an orphan.
        body = self.xrpc.call("GET", "app.bsky.feed.getPosts", params=[("uris", parent_uri)])
        posts = body.get("posts") if isinstance(body, Mapping) else None
        if not isinstance(posts, list):
            raise RetryableError(f"getPosts answer has no posts list: {str(body)[:200]!r}")
        current = next((p for p in posts if isinstance(p, Mapping) and p.get("uri") == parent_uri), None)
        if current is None:
            raise PermanentError(f"the post being answered was deleted or is not visible: {parent_uri}")
        parent = _strong_ref(current) or _strong_ref(raw)
        if parent is None:
            raise PermanentError(f"the post being answered has no cid: {parent_uri}")
        record = current.get("record") if isinstance(current.get("record"), Mapping) else {}
        reply = record.get("reply") if isinstance(record.get("reply"), Mapping) else {}
        root = _strong_ref(raw.get("root")) or _strong_ref(reply.get("root")) or parent
        return parent, root

    def _language(self, delivery: OutboundDelivery) -> str:
        message = delivery.message
        if message.language:
            return message.language
        answered = message.in_reply_to if message.in_reply_to_id else None
        if answered is not None and answered.language:
            return answered.language
        return self.config.default_language


def _same_text(result: SendResult, text: str) -> bool:
    record = result.raw.get("record")
    return isinstance(record, Mapping) and record.get("text") == text


def _position(item: Any) -> tuple[datetime, str] | None:
    if not isinstance(item, Mapping) or not isinstance(item.get("uri"), str) or not item["uri"]:
        return None
    try:
        return _parse_time(item.get("indexedAt")), item["uri"]
    except ValueError:
        return None


def _message(
    item: Mapping[str, Any], brand_ids: frozenset[str], *, reason: Any
) -> InboundMessage | RejectedItem:
    uri = item["uri"]

    def reject(problem: str) -> RejectedItem:
        return RejectedItem(reason=f"{reason} {uri}: {problem}", raw=dict(item), external_id=uri)

    cid = item.get("cid")
    if not isinstance(cid, str) or not cid:
        return reject("no cid")
    author = item.get("author")
    if not isinstance(author, Mapping) or not isinstance(author.get("did"), str) or not author["did"]:
        return reject("author has no did")
    record = item.get("record")
    if not isinstance(record, Mapping) or record.get("$type", POST_COLLECTION) != POST_COLLECTION:
        return reject(f"record is not an {POST_COLLECTION}")
    text = record.get("text")
    if not isinstance(text, str):
        return reject("record has no text")
    try:
        created_at = _parse_time(record.get("createdAt"))
    except ValueError as exc:
        return reject(f"record createdAt is unreadable: {exc}")
    reply = record.get("reply")
    parent = root = None
    if reply is not None:
        parent = _strong_ref(reply.get("parent")) if isinstance(reply, Mapping) else None
        root = _strong_ref(reply.get("root")) if isinstance(reply, Mapping) else None
        if parent is None or root is None:
            return reject("record reply lacks parent or root uri and cid")
    langs = record.get("langs")
    language = langs[0] if isinstance(langs, list) and langs and isinstance(langs[0], str) else ""
    did = author["did"]
    return InboundMessage(
        external_id=uri,
        author=AuthorIdentity(
            external_id=did,
            handle=str(author.get("handle") or ""),
            display_name=str(author.get("displayName") or ""),
        ),
        text=text,
        created_at=created_at,
        is_public=True,
        in_reply_to_external_id=parent["uri"] if parent else "",
        author_is_brand=did in brand_ids,
        language=language,
        raw={
            "uri": uri,
            "cid": cid,
            # A post that is no reply is the root of its own thread.
            "root": root or {"uri": uri, "cid": cid},
            "parent": parent,
            "reason": reason,
            "reason_subject": item.get("reasonSubject"),
            "indexed_at": item.get("indexedAt"),
            "record": dict(record),
        },
    )
