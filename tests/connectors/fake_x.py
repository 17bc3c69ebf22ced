"""A local X API v2 on loopback, for the X connector's tests.

Speaks the documented wire format of the endpoints the connector uses:

* ``GET /2/users/:id/mentions`` and ``GET /2/users/:id/tweets``: newest first, ``since_id``,
  ``max_results`` (5..100), ``pagination_token`` → ``meta.next_token``; ``meta`` carries
  ``result_count``, ``newest_id``, ``oldest_id``; ``expansions=author_id`` fills
  ``includes.users``; an empty result is ``{"meta": {"result_count": 0}}``.
* ``POST /2/tweets`` with ``{"text", "reply": {"in_reply_to_tweet_id"}}`` → 201
  ``{"data": {"id", "text", "edit_history_tweet_ids"}}``; the stored text starts with the
  handle answered, as X does for replies. A deleted parent, or a conversation that does
  not allow the reply, is a 403 problem body (``title: Forbidden``, ``detail``).
* Bearer token check: a wrong token is 401 ``{"title": "Unauthorized", ...}``.
* Every answer has ``x-rate-limit-limit/-remaining/-reset`` headers.

Knobs (``fail``): the next matching request answers 429 (with reset), 5xx, a slow answer
(client timeout), 401, a malformed JSON body, or, for posts, "store then be slow" (the
post lands but the client times out). ``corrupt`` replaces one stored tweet's JSON with
whatever the test wants (a malformed single item); ``duplicate_across_pages`` repeats the
last item of each page at the top of the next one. Every request is recorded.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BRAND_ID = "1500000000000000001"
BRAND_HANDLE = "SkyBlueAir"
TOKEN = "test-access-token"
FIRST_TWEET_ID = 1_860_000_000_000_000_000
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
RATE_LIMIT = 450


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
    kind: str  # "429", "500", "503", "slow", "401", "unsupported-authentication", "malformed", "post-then-slow"
    method: str = ""
    path_contains: str = ""
    reset_in: int = 60
    #: Matching requests let through before this one fails.
    after: int = 0


@dataclass
class FakeX:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: id → tweet as X stores it (v2 fields); newest first is by numeric id.
    tweets: dict[str, dict[str, Any]] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)
    #: Tweets whose authors restrict replies (reply_settings): a reply is 403.
    reply_restricted: set[str] = field(default_factory=set)
    #: id → replacement JSON value for that tweet in timelines (malformed items).
    corrupt: dict[str, Any] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    duplicate_across_pages: bool = False
    slow_seconds: float = 1.0
    token: str = TOKEN
    _ids: itertools.count = field(default_factory=lambda: itertools.count(FIRST_TWEET_ID))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.add_user(BRAND_ID, BRAND_HANDLE, "SkyBlue Air", followers=120_000, verified=True)

    # --- Seeding ---------------------------------------------------------------------

    def add_user(
        self, user_id: str, username: str, name: str, *, followers: int = 10, verified: bool = False
    ) -> dict[str, Any]:
        user = {
            "id": user_id,
            "username": username,
            "name": name,
            "verified": verified,
            "public_metrics": {
                "followers_count": followers,
                "following_count": 5,
                "tweet_count": 100,
                "listed_count": 0,
                "like_count": 3,
            },
        }
        self.users[user_id] = user
        return user

    def next_id(self) -> str:
        return str(next(self._ids))

    def tweet(
        self, author_id: str, text: str, *, reply_to: str = "", lang: str = "en", mentions_brand: bool = True
    ) -> dict[str, Any]:
        """A tweet posted now on the platform (a mention of the brand unless told otherwise)."""
        tweet_id = self.next_id()
        parent = self.tweets.get(reply_to) if reply_to else None
        tweet: dict[str, Any] = {
            "id": tweet_id,
            "text": text,
            "author_id": author_id,
            "created_at": (T0 + timedelta(seconds=len(self.tweets))).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "conversation_id": parent["conversation_id"] if parent else tweet_id,
            "lang": lang,
            "edit_history_tweet_ids": [tweet_id],
            "_mentions_brand": mentions_brand,
        }
        if reply_to:
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": reply_to}]
            tweet["in_reply_to_user_id"] = parent["author_id"] if parent else BRAND_ID
        self.tweets[tweet_id] = tweet
        return tweet

    def fail(
        self, kind: str, *, method: str = "", path_contains: str = "", reset_in: int = 60, after: int = 0
    ) -> None:
        self.failures.append(Failure(kind, method, path_contains, reset_in, after))

    # --- Views ---------------------------------------------------------------------------

    def public(self, tweet: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in tweet.items() if not key.startswith("_")}

    def brand_posts(self) -> list[dict[str, Any]]:
        return [self.public(t) for t in self.tweets.values() if t["author_id"] == BRAND_ID]

    def requests_to(self, method: str, path_contains: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and path_contains in r.path]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    # --- Plumbing ------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: Any = None,
        *,
        raw: bytes | None = None,
        reset_in: int = 900,
        remaining: int = RATE_LIMIT - 1,
    ) -> None:
        data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-rate-limit-limit", str(RATE_LIMIT))
            self.send_header("x-rate-limit-remaining", str(remaining))
            self.send_header("x-rate-limit-reset", str(int(time.time()) + reset_in))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def _problem(self, status: int, title: str, detail: str, type_: str = "about:blank") -> None:
        self._send(status, {"title": title, "detail": detail, "type": type_, "status": status})

    def _handle(self, method: str) -> None:
        fake = self.server.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw_body) if raw_body else None
        except ValueError:
            body = raw_body.decode(errors="replace")
        request = Request(
            method, parts.path, parse_qs(parts.query), {k.lower(): v for k, v in self.headers.items()}, body
        )
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
            if failure is not None and failure.after > 0:
                failure.after -= 1
                failure = None
            elif failure is not None:
                fake.failures.remove(failure)
        if self.headers.get("authorization") != f"Bearer {fake.token}":
            return self._problem(401, "Unauthorized", "Unauthorized")
        if failure is not None and failure.kind != "post-then-slow":
            return self._inject(failure)
        if method == "GET" and parts.path.endswith("/mentions"):
            return self._timeline(request, mentions=True)
        if method == "GET" and parts.path.endswith("/tweets") and parts.path.startswith("/2/users/"):
            return self._timeline(request, mentions=False)
        if method == "POST" and parts.path == "/2/tweets":
            return self._post(request, slow=failure is not None)
        return self._problem(404, "Not Found Error", f"no route {method} {parts.path}")

    def _inject(self, failure: Failure) -> None:
        kind = failure.kind
        if kind == "429":
            return self._send(
                429,
                {
                    "title": "Too Many Requests",
                    "detail": "Too Many Requests",
                    "type": "about:blank",
                    "status": 429,
                },
                reset_in=failure.reset_in,
                remaining=0,
            )
        if kind in ("500", "503"):
            return self._send(
                int(kind),
                {
                    "title": "Service Unavailable",
                    "detail": "Service Unavailable",
                    "type": "about:blank",
                    "status": int(kind),
                },
            )
        if kind == "401":
            return self._problem(401, "Unauthorized", "Unauthorized")
        if kind == "unsupported-authentication":
            # An app-only bearer token where a user context is required (X's problem type).
            return self._problem(
                403, "Unsupported Authentication",
                "Authenticating with OAuth 2.0 Application-Only is forbidden for this endpoint.  "
                "Supported authentication types are [OAuth 1.0a User Context, OAuth 2.0 User Context].",
                "https://api.twitter.com/2/problems/unsupported-authentication",
            )
        if kind == "malformed":
            return self._send(200, raw=b'{"data": [{"id": "1", "text": "trunc')
        if kind == "slow":
            time.sleep(self.server.fake.slow_seconds)
            return self._send(503, {"title": "late"})
        raise AssertionError(f"unknown failure kind {kind!r}")

    # --- Endpoints -----------------------------------------------------------------------

    def _timeline(self, request: Request, *, mentions: bool) -> None:
        fake = self.server.fake
        user_id = request.path.split("/")[3]
        if user_id not in fake.users:
            return self._problem(
                404,
                "Not Found Error",
                f"Could not find user with id: [{user_id}].",
                "https://api.twitter.com/2/problems/resource-not-found",
            )
        max_results = int(request.param("max_results") or 10)
        since_id = request.param("since_id")
        if not 5 <= max_results <= 100 or (since_id is not None and not since_id.isdigit()):
            return self._send(
                400,
                {
                    "errors": [
                        {
                            "parameters": {"max_results": [str(max_results)]},
                            "message": f"The `max_results` query parameter value [{max_results}] is not between 5 and 100",
                        }
                    ],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                },
            )
        with fake.lock:
            if mentions:
                items = [t for t in fake.tweets.values() if t.get("_mentions_brand")]
            else:
                items = [t for t in fake.tweets.values() if t["author_id"] == user_id]
            items = [t for t in items if t["id"] not in fake.deleted]
            if since_id:
                items = [t for t in items if int(t["id"]) > int(since_id)]
            items.sort(key=lambda t: int(t["id"]), reverse=True)
            token = request.param("pagination_token")
            # Tokens point below the last tweet of the page before: stable while new tweets arrive.
            before: int | None = None
            if token:
                if not (token.startswith("pt") and token[2:].isdigit()):
                    return self._send(
                        400,
                        {
                            "errors": [
                                {
                                    "parameters": {"pagination_token": [token]},
                                    "message": f"The `pagination_token` query parameter value [{token}] is not valid",
                                }
                            ],
                            "title": "Invalid Request",
                            "detail": "One or more parameters to your request was invalid.",
                            "type": "https://api.twitter.com/2/problems/invalid-request",
                        },
                    )
                before = int(token[2:])
            rest = [t for t in items if before is None or int(t["id"]) < before]
            page = rest[:max_results]
            has_next = len(rest) > max_results
            if fake.duplicate_across_pages and before is not None:
                page = [fake.tweets[str(before)], *page]
            data = [fake.corrupt.get(t["id"], fake.public(t)) for t in page]
        if not page:
            return self._send(200, {"meta": {"result_count": 0}})
        meta: dict[str, Any] = {
            "result_count": len(page),
            "newest_id": page[0]["id"],
            "oldest_id": page[-1]["id"],
        }
        if has_next:
            meta["next_token"] = f"pt{page[-1]['id']}"
        body: dict[str, Any] = {"data": data, "meta": meta}
        if "author_id" in (request.param("expansions") or ""):
            authors = list(dict.fromkeys(t["author_id"] for t in page))
            body["includes"] = {"users": [fake.users[a] for a in authors if a in fake.users]}
        self._send(200, body)

    def _post(self, request: Request, *, slow: bool) -> None:
        fake = self.server.fake
        body = request.body if isinstance(request.body, dict) else {}
        text = body.get("text")
        reply_to = (body.get("reply") or {}).get("in_reply_to_tweet_id")
        if not isinstance(text, str) or not text:
            return self._send(
                400,
                {
                    "errors": [{"message": "$.text: is missing but it is required"}],
                    "title": "Invalid Request",
                    "detail": "One or more parameters to your request was invalid.",
                    "type": "https://api.twitter.com/2/problems/invalid-request",
                },
            )
        with fake.lock:
            parent = fake.tweets.get(reply_to) if reply_to else None
            if reply_to and (parent is None or reply_to in fake.deleted):
                detail = "You attempted to reply to a Tweet that is deleted or not visible to you."
                return self._problem(403, "Forbidden", detail)
            if reply_to in fake.reply_restricted:
                return self._problem(
                    403,
                    "Forbidden",
                    (
                        "Reply to this conversation is not allowed because you have not been mentioned "
                        "or otherwise engaged by the author of the post you are replying to."
                    ),
                )
            if any(
                t["author_id"] == BRAND_ID
                and t["text"].endswith(text)
                and t.get("referenced_tweets") == [{"type": "replied_to", "id": reply_to}]
                for t in fake.tweets.values()
            ):
                return self._problem(
                    403, "Forbidden", "You are not allowed to create a Tweet with duplicate content."
                )
            prefix = f"@{fake.users[parent['author_id']]['username']} " if parent else ""
            tweet = fake.tweet(BRAND_ID, prefix + text, reply_to=reply_to or "", mentions_brand=False)
        if slow:
            time.sleep(fake.slow_seconds)
        self._send(
            201, {"data": {"id": tweet["id"], "text": tweet["text"], "edit_history_tweet_ids": [tweet["id"]]}}
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeX


class FakeXServer:
    """Start with ``with FakeXServer() as server:``; ``server.url`` is the api_base."""

    def __init__(self, fake: FakeX | None = None) -> None:
        self.fake = fake or FakeX()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self.fake
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeXServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
