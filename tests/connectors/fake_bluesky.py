"""A local Bluesky PDS: the XRPC endpoints the connector uses, on 127.0.0.1.

It speaks the documented wire format: ``/xrpc/<nsid>``, JSON bodies, XRPC errors as
``{"error": "<Code>", "message": "..."}`` with the PDS's status codes (400 for most,
401 for a missing or bad token, 400 ``ExpiredToken`` for an expired one), notifications
newest first with an opaque ``cursor`` for the next (older) page, ``RateLimit-*``
headers. Records live in the brand's repository by record key, so a second
``createRecord`` with the same ``rkey`` fails (with a 500, as today's PDS does, or a
400 conflict: ``duplicate_rkey_status``). The brand's profile is the
``app.bsky.actor.profile`` record ``self`` (``profile``): ``getRecord`` reads it,
``putRecord`` writes it, compare-and-swap on ``swapRecord`` (a cid, or null for "there
is none"; another value is 400 ``InvalidSwap``), a description over 256 graphemes is 400
``InvalidRequest``. ``edit_profile_after_read`` changes the profile right after the next
read of it, as the brand editing it in the app at that moment would.

Failure injection: ``inject(nsid, ...)`` queues one answer for the next call of that
endpoint: a status with body and headers, a delay (longer than the client's timeout →
timeout), a raw non-JSON body, or ``after=True`` (do the real work, then delay: a post
that lands but whose answer is lost).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import regex

BRAND_DID = "did:plc:brandbrandbrandbrand01"
BRAND_HANDLE = "brand.bsky.social"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
_T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
PROFILE = "app.bsky.actor.profile"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cid_of(value: Any) -> str:
    return "bafyrei" + hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:40]


@dataclass
class Injected:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None
    # Do the real work first, then delay (the answer is lost to a short client timeout).
    after: bool = False


@dataclass
class Request:
    method: str
    nsid: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class FakeBluesky:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.notifications: list[dict[str, Any]] = []  # newest first
        self.posts: dict[str, dict[str, Any]] = {}  # uri -> post view (anyone's posts)
        self.deleted: set[str] = set()
        self.repo: dict[str, dict[str, Any]] = {}  # brand rkey -> {"uri", "cid", "value"}
        self.injected: dict[str, deque[Injected]] = {}
        self.duplicate_rkey_status = 500
        self.duplicate_page_items = 0  # repeat the last N items of a page on the next one
        self.access_tokens: set[str] = set()
        self.expired_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.refresh_refused = False
        self.app_password = APP_PASSWORD  # set another to revoke the brand's app password
        self.sessions_created = 0
        self.profile: dict[str, Any] | None = None  # {"uri", "cid", "value"} of the brand's profile
        self.edit_profile_after_read: dict[str, Any] | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- Lifecycle ----------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeBluesky:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- Test knobs ---------------------------------------------------------------

    def inject(self, nsid: str, **answer: Any) -> None:
        self.injected.setdefault(nsid, deque()).append(Injected(**answer))

    def expire_access_tokens(self) -> None:
        with self._lock:
            self.expired_tokens |= self.access_tokens
            self.access_tokens.clear()

    def calls(self, nsid: str) -> list[Request]:
        return [r for r in self.requests if r.nsid == nsid]

    def customer_post(
        self,
        text: str,
        *,
        author: str = "did:plc:customer00000000000001",
        handle: str = "traveller.bsky.social",
        reason: str = "mention",
        reply_to: str | None = None,
        minutes: float | None = None,
        langs: list[str] | None = None,
        record: dict[str, Any] | None = None,
        notify: bool = True,
    ) -> dict[str, Any]:
        """A post by someone else, and the brand's notification about it (newest first)."""
        n = next(self._ids)
        at = _T0 + timedelta(minutes=minutes if minutes is not None else n)
        uri = f"at://{author}/app.bsky.feed.post/3kpost{n:07d}"
        if record is None:
            record = {
                "$type": "app.bsky.feed.post",
                "text": text,
                "createdAt": iso(at),
                "langs": langs or ["en"],
            }
            if reply_to is not None:
                parent = self.posts[reply_to]
                parent_reply = parent["record"].get("reply")
                root = parent_reply["root"] if parent_reply else {"uri": parent["uri"], "cid": parent["cid"]}
                record["reply"] = {"root": root, "parent": {"uri": parent["uri"], "cid": parent["cid"]}}
        cid = cid_of(record)
        author_view = {"did": author, "handle": handle, "displayName": handle.split(".")[0].title()}
        self.posts[uri] = {
            "uri": uri,
            "cid": cid,
            "author": author_view,
            "record": record,
            "indexedAt": iso(at),
        }
        notification = {
            "uri": uri,
            "cid": cid,
            "author": author_view,
            "reason": reason,
            "record": record,
            "isRead": False,
            "indexedAt": iso(at),
            "labels": [],
        }
        if reason == "reply" and reply_to is not None:
            notification["reasonSubject"] = reply_to
        if not notify:  # a post that does not tag the brand: only search finds it
            return self.posts[uri]
        self.notifications.insert(0, notification)
        self.notifications.sort(key=lambda item: (item["indexedAt"], item["uri"]), reverse=True)
        return notification

    def brand_post(self, text: str) -> dict[str, Any]:
        """A top-level post by the brand (customers reply to it)."""
        rkey = f"3kbrand{next(self._ids):06d}"
        record = {"$type": "app.bsky.feed.post", "text": text, "createdAt": iso(_T0)}
        uri = f"at://{BRAND_DID}/app.bsky.feed.post/{rkey}"
        cid = cid_of(record)
        self.repo[rkey] = {"uri": uri, "cid": cid, "value": record}
        self.posts[uri] = {
            "uri": uri,
            "cid": cid,
            "record": record,
            "indexedAt": iso(_T0),
            "author": {"did": BRAND_DID, "handle": BRAND_HANDLE},
        }
        return self.posts[uri]

    def set_profile(self, record: dict[str, Any]) -> dict[str, Any]:
        """The brand's ``app.bsky.actor.profile`` record, as the brand saved it."""
        record = {"$type": PROFILE, **record}
        self.profile = {"uri": f"at://{BRAND_DID}/{PROFILE}/self", "cid": cid_of(record), "value": record}
        return self.profile

    # --- HTTP ---------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def _serve(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = None
                nsid = parts.path.removeprefix("/xrpc/")
                request = Request(method, nsid, parse_qs(parts.query), dict(self.headers), body)
                fake.requests.append(request)
                queued = fake.injected.get(nsid)
                injected = queued.popleft() if queued else None
                if injected is not None and not injected.after:
                    time.sleep(injected.delay)
                    if injected.raw is not None:
                        return self._send(injected.status, injected.raw, injected.headers, "text/html")
                    if injected.status != 200 or injected.body is not None:
                        return self._json(injected.status, injected.body or {}, injected.headers)
                status, answer, headers = fake.answer(request)
                if injected is not None and injected.after:
                    time.sleep(injected.delay)
                self._json(status, answer, headers)

            def _json(self, status: int, body: Any, headers: dict[str, str]) -> None:
                self._send(status, json.dumps(body).encode(), headers, "application/json")

            def _send(self, status: int, data: bytes, headers: dict[str, str], kind: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("RateLimit-Limit", "3000")
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

        return Handler

    # --- Endpoints ----------------------------------------------------------------

    def answer(self, request: Request) -> tuple[int, Any, dict[str, str]]:
        handler = {
            "com.atproto.server.createSession": self._create_session,
            "com.atproto.server.refreshSession": self._refresh_session,
            "app.bsky.notification.listNotifications": self._list_notifications,
            "app.bsky.feed.getPosts": self._get_posts,
            "app.bsky.feed.searchPosts": self._search_posts,
            "com.atproto.repo.createRecord": self._create_record,
            "com.atproto.repo.getRecord": self._get_record,
            "com.atproto.repo.putRecord": self._put_record,
        }.get(request.nsid)
        if handler is None:
            return 501, {"error": "MethodNotImplemented", "message": "Method Not Implemented"}, {}
        if (
            request.nsid != "com.atproto.server.createSession"
            and request.nsid != "com.atproto.server.refreshSession"
        ):
            refused = self._check_access(request)
            if refused is not None:
                return refused
        with self._lock:
            return handler(request)

    def _bearer(self, request: Request) -> str:
        value = request.headers.get("Authorization", "")
        return value.removeprefix("Bearer ") if value.startswith("Bearer ") else ""

    def _check_access(self, request: Request) -> tuple[int, Any, dict[str, str]] | None:
        token = self._bearer(request)
        if token in self.access_tokens:
            return None
        if token in self.expired_tokens:
            return 400, {"error": "ExpiredToken", "message": "Token has expired"}, {}
        if not token:
            return 401, {"error": "AuthenticationRequired", "message": "Authentication Required"}, {}
        return 401, {"error": "InvalidToken", "message": "Token could not be verified"}, {}

    def _tokens(self) -> dict[str, str]:
        n = next(self._ids)
        access, refresh = f"access-{n}", f"refresh-{n}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {
            "accessJwt": access,
            "refreshJwt": refresh,
            "handle": BRAND_HANDLE,
            "did": BRAND_DID,
            "active": True,
        }

    def _create_session(self, request: Request):
        body = request.body or {}
        if (
            body.get("identifier") not in (BRAND_HANDLE, BRAND_DID)
            or body.get("password") != self.app_password
        ):
            return 401, {"error": "AuthenticationRequired", "message": "Invalid identifier or password"}, {}
        self.sessions_created += 1
        return 200, self._tokens(), {}

    def _refresh_session(self, request: Request):
        token = self._bearer(request)
        if self.refresh_refused or token not in self.refresh_tokens:
            return 400, {"error": "ExpiredToken", "message": "Token has expired"}, {}
        self.refresh_tokens.discard(token)
        return 200, self._tokens(), {}

    def _list_notifications(self, request: Request):
        limit = int(request.query.get("limit", ["50"])[0])
        if not 1 <= limit <= 100:
            return 400, {"error": "InvalidRequest", "message": "limit must be between 1 and 100"}, {}
        reasons = set(request.query.get("reasons", []))
        items = [n for n in self.notifications if not reasons or n["reason"] in reasons]
        cursor = request.query.get("cursor", [None])[0]
        if cursor:
            after = tuple(json.loads(base64.urlsafe_b64decode(cursor)))
            start = next((i for i, n in enumerate(items) if (n["indexedAt"], n["uri"]) < after), len(items))
            start = max(0, start - self.duplicate_page_items)
        else:
            start = 0
        page = items[start : start + limit]
        answer: dict[str, Any] = {"notifications": page, "priority": False, "seenAt": iso(_T0)}
        if start + limit < len(items) and page:
            last = page[-1]
            answer["cursor"] = base64.urlsafe_b64encode(
                json.dumps([last["indexedAt"], last["uri"]]).encode()
            ).decode()
        return 200, answer, {}

    def _search_posts(self, request: Request):
        query = {k: v[0] for k, v in request.query.items()}
        if query.get("sort", "latest") != "latest":
            return 400, {"error": "InvalidRequest", "message": "only sort=latest is faked"}, {}
        words = query.get("q", "").lower()
        since = query.get("since", "")
        hits = sorted(
            (
                p
                for u, p in self.posts.items()
                if u not in self.deleted
                and words in p["record"].get("text", "").lower()
                and p["indexedAt"] >= since
            ),
            key=lambda p: (p["indexedAt"], p["uri"]),
            reverse=True,
        )
        limit = int(query.get("limit", "25"))
        start = 0
        if query.get("cursor"):
            after = tuple(json.loads(base64.urlsafe_b64decode(query["cursor"])))
            start = next((i for i, p in enumerate(hits) if (p["indexedAt"], p["uri"]) < after), len(hits))
        page = hits[start : start + limit]
        answer: dict[str, Any] = {"posts": page, "hitsTotal": len(hits)}
        if start + limit < len(hits) and page:
            answer["cursor"] = base64.urlsafe_b64encode(
                json.dumps([page[-1]["indexedAt"], page[-1]["uri"]]).encode()
            ).decode()
        return 200, answer, {}

    def _get_posts(self, request: Request):
        uris = request.query.get("uris", [])
        if len(uris) > 25:
            return 400, {"error": "InvalidRequest", "message": "uris must not have more than 25 elements"}, {}
        # Deleted (or blocked) posts are simply missing from the answer.
        return 200, {"posts": [self.posts[u] for u in uris if u in self.posts and u not in self.deleted]}, {}

    def _create_record(self, request: Request):
        body = request.body or {}
        if body.get("repo") not in (BRAND_DID, BRAND_HANDLE):
            return 401, {"error": "InvalidToken", "message": "Invalid did or handle for the session"}, {}
        record = body.get("record") or {}
        text = record.get("text", "")
        if len(regex.findall(r"\X", text)) > 300:
            return (
                400,
                {
                    "error": "InvalidRequest",
                    "message": "Invalid app.bsky.feed.post record: Record/text must not be longer than "
                    "300 graphemes",
                },
                {},
            )
        rkey = body.get("rkey") or f"3kauto{next(self._ids):07d}"
        if rkey in self.repo:
            if self.duplicate_rkey_status == 500:
                return 500, {"error": "InternalServerError", "message": "Internal Server Error"}, {}
            return 400, {"error": "RecordAlreadyExists", "message": f"Record already exists: {rkey}"}, {}
        uri = f"at://{BRAND_DID}/{body.get('collection')}/{rkey}"
        cid = cid_of(record)
        self.repo[rkey] = {"uri": uri, "cid": cid, "value": record}
        self.posts[uri] = {
            "uri": uri,
            "cid": cid,
            "record": record,
            "indexedAt": record.get("createdAt"),
            "author": {"did": BRAND_DID, "handle": BRAND_HANDLE},
        }
        return (
            200,
            {
                "uri": uri,
                "cid": cid,
                "commit": {"cid": cid_of(uri), "rev": "3kcommit"},
                "validationStatus": "valid",
            },
            {},
        )

    def _get_record(self, request: Request):
        query = {k: v[0] for k, v in request.query.items()}
        if query.get("collection") == PROFILE:
            return self._get_profile(query)
        entry = (
            self.repo.get(query.get("rkey", "")) if query.get("repo") in (BRAND_DID, BRAND_HANDLE) else None
        )
        if entry is None:
            uri = f"at://{query.get('repo')}/{query.get('collection')}/{query.get('rkey')}"
            return 400, {"error": "RecordNotFound", "message": f"Could not locate record: {uri}"}, {}
        return 200, entry, {}

    def _get_profile(self, query: dict[str, str]):
        mine = query.get("repo") in (BRAND_DID, BRAND_HANDLE) and query.get("rkey") == "self"
        entry = self.profile if mine else None
        if entry is None:
            uri = f"at://{query.get('repo')}/{PROFILE}/{query.get('rkey')}"
            return 400, {"error": "RecordNotFound", "message": f"Could not locate record: {uri}"}, {}
        if self.edit_profile_after_read is not None:
            edit, self.edit_profile_after_read = self.edit_profile_after_read, None
            self.set_profile({**entry["value"], **edit})
        return 200, entry, {}

    def _put_record(self, request: Request):
        body = request.body or {}
        if body.get("repo") not in (BRAND_DID, BRAND_HANDLE):
            return 401, {"error": "InvalidToken", "message": "Invalid did or handle for the session"}, {}
        if body.get("collection") != PROFILE or body.get("rkey") != "self":
            message = "the fake puts only the profile record self"
            return 400, {"error": "InvalidRequest", "message": message}, {}
        record = body.get("record")
        if not isinstance(record, dict) or record.get("$type") != PROFILE:
            message = f"Invalid {PROFILE} record: Record/$type must be {PROFILE}"
            return 400, {"error": "InvalidRequest", "message": message}, {}
        description = record.get("description", "")
        if len(regex.findall(r"\X", description)) > 256 or len(description.encode()) > 2560:
            message = f"Invalid {PROFILE} record: Record/description must not be longer than 256 graphemes"
            return 400, {"error": "InvalidRequest", "message": message}, {}
        current = self.profile["cid"] if self.profile is not None else None
        if "swapRecord" in body and body["swapRecord"] != current:
            return 400, {"error": "InvalidSwap", "message": f"Record was at {current or 'null'}"}, {}
        entry = self.set_profile(record)
        return 200, {"uri": entry["uri"], "cid": entry["cid"], "validationStatus": "valid"}, {}
