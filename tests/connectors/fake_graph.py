"""A local Meta Graph API on loopback, for the Meta connectors' tests.

Speaks the documented wire format of the calls the connectors make (``/{version}/...``):

* ``POST /{comment-id}/comments`` (Facebook) and ``POST /{ig-comment-id}/replies`` (Instagram)
  with ``message`` (JSON or form body) → ``{"id": ...}``. A reply to a reply lands under the
  top-level comment, as Graph nests one level. A missing or deleted comment is 400 code 100
  subcode 33 ("Unsupported post request. Object with ID ... does not exist ...").
* ``POST /{page-id}/messages`` and ``POST /me/messages`` (``me`` = the Page of the token) with
  ``recipient.id`` (PSID / IGSID, ``messaging_type`` RESPONSE or MESSAGE_TAG + ``tag``) or
  ``recipient.comment_id`` (private reply: once per comment, within 7 days) →
  ``{"recipient_id", "message_id"}``. Messages outside the window are 400 code 10 subcode
  2018278 ("This message is sent outside of allowed window.").
* ``GET /{comment-id}/comments`` (``order=reverse_chronological``) and
  ``GET /{ig-comment-id}/replies``: ``{"data": [...], "paging": {...}}``;
  ``GET /{page-id}/conversations?user_id=...`` (``platform=instagram`` for Instagram, ``me``
  allowed): ``{"data": [{"id", "messages": {"data": [{"id", "message", "from", "created_time"}]}}]}``.
* Every request must carry ``access_token`` (else 400 code 190, OAuthException) and, when
  ``app_secret`` is set, a matching ``appsecret_proof`` (else 400 code 100).

Knobs (``fail``): the next matching request answers a rate limit (403 with code, and the
``X-Business-Use-Case-Usage`` header's ``estimated_time_to_regain_access`` in minutes), a
transient error (500, code 2, ``is_transient``), an expired token (400 code 190/463), an
HTML 502, a malformed 200 body, a slow answer (client timeout, nothing stored) or "post then
slow" (stored, then the answer is late). Every request is recorded.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PAGE_ID = "104857600000001"
PAGE_NAME = "SkyBlue Air"
IG_ID = "17841400000000001"
IG_USERNAME = "skyblueair"
TOKEN = "EAAG-test-page-token"
VERSION = "v23.0"
STANDARD_WINDOW = timedelta(hours=24)
TAGGED_WINDOW = timedelta(days=7)
PRIVATE_REPLY_WINDOW = timedelta(days=7)


def graph_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Failure:
    # "rate", "transient", "expired", "html502", "malformed", "slow", "post-then-slow"
    kind: str
    method: str = ""
    path_contains: str = ""
    code: int = 80001
    regain_minutes: int = 5


@dataclass
class FakeGraph:
    #: id → comment as Graph stores it, plus "_platform", "_parent" (top-level id or "").
    comments: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    #: (platform, user id) → messages of that conversation, oldest first.
    conversations: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    #: (platform, user id) → when the customer last wrote (the window counts from it).
    customer_wrote: dict[tuple[str, str], datetime] = field(default_factory=dict)
    #: Comments that got their one private reply.
    private_replied: set[str] = field(default_factory=set)
    failures: list[Failure] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    token: str = TOKEN
    #: When set, every call must carry appsecret_proof = HMAC-SHA256(app_secret, token).
    app_secret: str = ""
    slow_seconds: float = 1.0
    _ids: itertools.count = field(default_factory=lambda: itertools.count(900001))
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- Seeding ---------------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def comment(
        self,
        comment_id: str,
        *,
        platform: str = "facebook",
        parent: str = "",
        text: str = "hello",
        author: tuple[str, str] = ("5550001", "Jan Jansen"),
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """A comment that exists on the platform (what a webhook told the desk about)."""
        at = at or datetime.now(UTC)
        if platform == "facebook":
            stored = {
                "id": comment_id,
                "message": text,
                "from": {"id": author[0], "name": author[1]},
                "created_time": graph_time(at),
            }
        else:
            stored = {
                "id": comment_id,
                "text": text,
                "from": {"id": author[0], "username": author[1]},
                "timestamp": graph_time(at),
            }
        stored.update({"_platform": platform, "_parent": parent, "_at": at})
        self.comments[comment_id] = stored
        return stored

    def customer_message(self, platform: str, user_id: str, at: datetime) -> None:
        """The customer wrote at ``at`` (opens the messaging windows)."""
        self.customer_wrote[(platform, user_id)] = at

    def fail(
        self,
        kind: str,
        *,
        method: str = "",
        path_contains: str = "",
        code: int = 80001,
        regain_minutes: int = 5,
    ) -> None:
        self.failures.append(Failure(kind, method, path_contains, code, regain_minutes))

    # --- Views -----------------------------------------------------------------------

    @staticmethod
    def public(item: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in item.items() if not k.startswith("_")}

    def replies_to(self, comment_id: str) -> list[dict[str, Any]]:
        return [self.public(c) for c in self.comments.values() if c["_parent"] == comment_id]

    def sent_messages(self, platform: str = "") -> list[dict[str, Any]]:
        return [
            m
            for (p, _), messages in self.conversations.items()
            if not platform or p == platform
            for m in messages
        ]

    def requests_to(self, method: str, path_contains: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]


def _graph_error(
    message: str,
    *,
    code: int,
    type_: str = "OAuthException",
    subcode: int | None = None,
    transient: bool = False,
) -> dict[str, Any]:
    error: dict[str, Any] = {
        "message": message,
        "type": type_,
        "code": code,
        "is_transient": transient,
        "fbtrace_id": "AbCdEfGh123",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def _missing(object_id: str) -> dict[str, Any]:
    return _graph_error(
        f"Unsupported post request. Object with ID '{object_id}' does not exist, cannot be loaded due "
        "to missing permissions, or does not support this operation. Please read the Graph API "
        "documentation at https://developers.facebook.com/docs/graph-api",
        code=100,
        subcode=33,
        type_="GraphMethodException",
    )


_OUTSIDE_WINDOW = _graph_error(
    "(#10) This message is sent outside of allowed window.", code=10, subcode=2018278
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def _send(
        self,
        status: int,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", f"{content_type}; charset=UTF-8")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-fb-trace-id", "AbCdEfGh123")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        content_type = self.headers.get("content-type") or ""
        if "json" in content_type:
            try:
                body: Any = json.loads(raw_body)
            except ValueError:
                body = raw_body.decode(errors="replace")
        else:
            body = {k: v[0] for k, v in parse_qs(raw_body.decode()).items()} if raw_body else None
        query = parse_qs(parts.query)
        request = Request(method, parts.path, query, {k.lower(): v for k, v in self.headers.items()}, body)
        with fake.lock:
            fake.requests.append(request)
            failure = next(
                (
                    f
                    for f in fake.failures
                    if (not f.method or f.method == method) and f.path_contains in parts.path
                ),
                None,
            )
            if failure is not None:
                fake.failures.remove(failure)
        token = request.param("access_token")
        if token != fake.token:
            return self._send(
                400, _graph_error("Invalid OAuth access token - Cannot parse access token", code=190)
            )
        if fake.app_secret:
            proof = request.param("appsecret_proof")
            expected = hmac.new(fake.app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()
            if not proof:
                return self._send(
                    400,
                    _graph_error(
                        "API calls from the server require an appsecret_proof argument",
                        code=100,
                        type_="GraphMethodException",
                    ),
                )
            if not hmac.compare_digest(proof, expected):
                return self._send(
                    400,
                    _graph_error(
                        "Invalid appsecret_proof provided in the API argument",
                        code=100,
                        type_="GraphMethodException",
                    ),
                )
        if failure is not None and failure.kind != "post-then-slow":
            return self._inject(failure)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 3 or segments[0] != VERSION:
            return self._send(400, _graph_error(f"Unknown path components: {parts.path}", code=2500))
        _, object_id, edge = segments
        slow = failure is not None
        if method == "POST" and edge in ("comments", "replies"):
            return self._post_comment(object_id, edge, request, slow=slow)
        if method == "POST" and edge == "messages" and object_id in ("me", PAGE_ID):
            return self._post_message(request, slow=slow)
        if method == "GET" and edge in ("comments", "replies"):
            return self._list_comments(object_id, edge, request)
        if method == "GET" and edge == "conversations" and object_id in ("me", PAGE_ID):
            return self._conversations(request)
        return self._send(400, _graph_error(f"(#100) Unknown edge or method {method} {edge}", code=100))

    def _inject(self, failure: Failure) -> None:
        kind = failure.kind
        if kind == "rate":
            usage = {
                PAGE_ID: [
                    {
                        "type": "pages",
                        "call_count": 100,
                        "total_cputime": 40,
                        "total_time": 60,
                        "estimated_time_to_regain_access": failure.regain_minutes,
                    }
                ]
            }
            return self._send(
                403,
                _graph_error(
                    "(#80001) There have been too many calls to this Page account. Wait a bit and try again.",
                    code=failure.code,
                ),
                headers={
                    "X-Business-Use-Case-Usage": json.dumps(usage),
                    "X-App-Usage": json.dumps({"call_count": 12, "total_time": 8, "total_cputime": 3}),
                },
            )
        if kind == "transient":
            return self._send(
                500,
                _graph_error(
                    "An unexpected error has occurred. Please retry your request later.",
                    code=2,
                    transient=True,
                ),
            )
        if kind == "expired":
            return self._send(
                400,
                _graph_error(
                    "Error validating access token: Session has expired on Friday, 27-Nov-26 09:00:00 PST.",
                    code=190,
                    subcode=463,
                ),
            )
        if kind == "html502":
            return self._send(502, raw=b"<html><body>Bad Gateway</body></html>", content_type="text/html")
        if kind == "malformed":
            return self._send(200, raw=b'{"data": [{"id": "1", "message": "trunc')
        if kind == "slow":
            time.sleep(self.server.fake.slow_seconds)
            return self._send(503, _graph_error("late", code=2, transient=True))
        raise AssertionError(f"unknown failure kind {kind!r}")

    # --- Endpoints -------------------------------------------------------------------

    def _post_comment(self, object_id: str, edge: str, request: Request, *, slow: bool) -> None:
        fake = self.server.fake
        body = request.body if isinstance(request.body, dict) else {}
        text = body.get("message")
        platform = "facebook" if edge == "comments" else "instagram"
        if not isinstance(text, str) or not text:
            return self._send(400, _graph_error("(#100) The parameter message is required", code=100))
        with fake.lock:
            target = fake.comments.get(object_id)
            if target is None or object_id in fake.deleted or target["_platform"] != platform:
                return self._send(400, _missing(object_id))
            top = target["_parent"] or object_id
            if platform == "facebook":
                new_id = f"{object_id.split('_')[0]}_{fake.next_id()}"
                author = (PAGE_ID, PAGE_NAME)
            else:
                new_id = str(17900000000000000 + fake.next_id())
                author = (IG_ID, IG_USERNAME)
            fake.comment(new_id, platform=platform, parent=top, text=text, author=author)
        if slow:
            time.sleep(fake.slow_seconds)
        self._send(200, {"id": new_id})

    def _post_message(self, request: Request, *, slow: bool) -> None:
        fake = self.server.fake
        body = request.body if isinstance(request.body, dict) else {}
        recipient = body.get("recipient") if isinstance(body.get("recipient"), dict) else {}
        message = body.get("message") if isinstance(body.get("message"), dict) else {}
        text = message.get("text")
        if not isinstance(text, str) or not text:
            return self._send(
                400,
                _graph_error("(#100) Param message[text] must be non-empty UTF-8 encoded string", code=100),
            )
        now = datetime.now(UTC)
        with fake.lock:
            if "comment_id" in recipient:
                comment_id = str(recipient["comment_id"])
                comment = fake.comments.get(comment_id)
                if comment is None or comment_id in fake.deleted:
                    return self._send(400, _missing(comment_id))
                if comment_id in fake.private_replied:
                    return self._send(400, _graph_error("(#10900) Activity already replied to", code=10900))
                if now - comment["_at"] > PRIVATE_REPLY_WINDOW:
                    return self._send(400, _OUTSIDE_WINDOW)
                fake.private_replied.add(comment_id)
                # The private reply opens a conversation in the Page's (or account's) inbox.
                platform = "instagram" if comment["_platform"] == "instagram" else "messenger"
                user = comment["from"]["id"]
            elif "id" in recipient:
                user = str(recipient["id"])
                platform = "instagram" if ("instagram", user) in fake.customer_wrote else "messenger"
                wrote = fake.customer_wrote.get((platform, user))
                if wrote is None:
                    return self._send(
                        400, _graph_error("(#100) No matching user found", code=100, subcode=2018001)
                    )
                kind = body.get("messaging_type")
                if kind == "RESPONSE":
                    if now - wrote > STANDARD_WINDOW:
                        return self._send(400, _OUTSIDE_WINDOW)
                elif kind == "MESSAGE_TAG" and body.get("tag") == "HUMAN_AGENT":
                    if now - wrote > TAGGED_WINDOW:
                        return self._send(400, _OUTSIDE_WINDOW)
                else:
                    return self._send(400, _graph_error(f"(#100) Invalid messaging_type {kind!r}", code=100))
            else:
                return self._send(400, _graph_error("(#100) The parameter recipient is required", code=100))
            mid = f"m_{fake.next_id()}"
            brand = (IG_ID, IG_USERNAME) if platform == "instagram" else (PAGE_ID, PAGE_NAME)
            fake.conversations.setdefault((platform, user), []).append(
                {
                    "id": mid,
                    "message": text,
                    "created_time": graph_time(now),
                    "from": {"id": brand[0], "name": brand[1]},
                }
            )
        if slow:
            time.sleep(fake.slow_seconds)
        self._send(200, {"recipient_id": user, "message_id": mid})

    def _list_comments(self, object_id: str, edge: str, request: Request) -> None:
        fake = self.server.fake
        with fake.lock:
            target = fake.comments.get(object_id)
            if target is None or object_id in fake.deleted:
                return self._send(400, _missing(object_id))
            replies = [
                c for c in fake.comments.values() if c["_parent"] == object_id and c["id"] not in fake.deleted
            ]
            replies.sort(
                key=lambda c: c["_at"],
                reverse=edge == "replies" or request.param("order") == "reverse_chronological",
            )
            limit = int(request.param("limit") or 25)
            data = [fake.public(c) for c in replies[:limit]]
        self._send(200, {"data": data, "paging": {"cursors": {"before": "QVFIUa", "after": "QVFIUb"}}})

    def _conversations(self, request: Request) -> None:
        fake = self.server.fake
        user = request.param("user_id")
        if not user:
            return self._send(400, _graph_error("(#100) user_id is required for this request", code=100))
        platform = "instagram" if request.param("platform") == "instagram" else "messenger"
        with fake.lock:
            messages = list(reversed(fake.conversations.get((platform, user), [])))
        if not messages:
            return self._send(200, {"data": []})
        self._send(200, {"data": [{"id": f"t_{user}", "messages": {"data": messages[:25]}}]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGraph


class FakeGraphServer:
    """Start with ``with FakeGraphServer() as server:``; ``server.url`` is the graph_url."""

    def __init__(self, fake: FakeGraph | None = None) -> None:
        self.fake = fake or FakeGraph()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self.fake
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeGraphServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
