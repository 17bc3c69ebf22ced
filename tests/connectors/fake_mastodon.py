"""A Mastodon instance on loopback, speaking the REST API v1 wire format the connector uses.

Implemented (as documented at docs.joinmastodon.org, methods/notifications, methods/statuses,
api/guidelines#pagination, api/rate-limits):

* ``GET /api/v1/notifications`` with ``types[]``, ``limit`` (default 40, at most 80),
  ``max_id``, ``since_id`` and ``min_id``; newest first; a ``Link`` header with ``rel="next"``
  (``max_id``) and ``rel="prev"`` (``min_id``) URLs;
* ``GET /api/v1/statuses/:id/context`` (``ancestors`` oldest first, ``descendants``);
* ``POST /api/v1/statuses`` (JSON or form body) with ``Idempotency-Key``: a repeated key
  returns the status made the first time; a missing ``in_reply_to_id`` status is 404;
  over 500 characters counted as Mastodon counts (``countable_length``) is 422;
* ``GET /api/v1/accounts/verify_credentials`` (the brand with ``source``);
  ``PATCH /api/v1/accounts/update_credentials`` (``note``, ``display_name``, ``locked``,
  ``bot``; only what is given changes; a note over 500 is 422); ``GET /api/v1/timelines/tag/:hashtag``;
* ``Authorization: Bearer`` checked on every call (401 ``The access token is invalid``);
* ``X-RateLimit-Limit/Remaining/Reset`` (reset as ISO 8601) on every answer.

Length (``StatusLengthValidator``, ``NoteLengthValidator``): grapheme clusters of the
content warning plus the text, where every URL counts 23 (``URL_PLACEHOLDER``) and a
remote mention ``@user@domain`` counts as ``@user``.

Ids are strings of digits; they start at 99990 so a burst crosses from five to six digits,
where comparing them as plain text would go wrong.

Failure injection: ``fail(kind, path=..., method=..., times=...)`` queues a fault for the
next matching requests (after ``skip`` of them): ``"429"`` (with reset header), ``"500"``, ``"503"``,
``"401"``, ``"slow"`` (answers after ``slow_seconds``), ``"malformed"`` (200 with a broken JSON body) and
``"post-then-slow"`` (the status is created, the answer comes too late).
``duplicate_boundary`` repeats the ``min_id`` item at the end of the next page, as a
server with a shifting window would. Every request is recorded in ``requests``.
"""

from __future__ import annotations

import html
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import regex

TOKEN = "fake-mastodon-token"
BRAND_ID = "1"
MAX_LIMIT = 80
REPLY_NOT_FOUND = "The status you are trying to reply to does not appear to exist."
#: Mastodon's defaults: ``StatusLengthValidator::MAX_CHARS``, ``Account::NOTE_LENGTH_LIMIT``.
MAX_CHARS = 500
MAX_NOTE_LENGTH = 500
URL_PLACEHOLDER = "x" * 23
#: Links as Mastodon's extractor finds them: a scheme, then up to white space, without
#: trailing punctuation.
_COUNTED_URL = regex.compile(r"https?://[^\s<>\"]*[^\s<>\".,;:!?')\]]", regex.IGNORECASE)
#: ``Account::MENTION_RE``: ``@user`` optionally followed by ``@domain``.
_COUNTED_MENTION = regex.compile(
    r"(?<![=/\w])@([a-z0-9_]+(?:[.-]+[a-z0-9_]+)*)(?:@[\w.\-]+\w)?", regex.IGNORECASE
)
_URL = re.compile(r"https?://[^\s<]+")
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_]+(?:@[A-Za-z0-9.\-]+)?)")
_HASHTAG = re.compile(r"(?<![\w#])#(\w+)")


def countable_length(text: str) -> int:
    """A status's (or note's) length as Mastodon counts it: links 23, ``@user@domain`` as
    ``@user``, then grapheme clusters."""
    text = _COUNTED_URL.sub(URL_PLACEHOLDER, text)
    text = _COUNTED_MENTION.sub(lambda match: f"@{match.group(1)}", text)
    return len(regex.findall(r"\X", text))


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class Fault:
    kind: str
    path: str
    method: str
    times: int
    #: Matching requests answered normally before the fault hits.
    skip: int = 0


@dataclass
class FakeMastodon:
    """State of the fake instance; the HTTP handler reads and changes it under ``lock``."""

    url: str = ""
    token: str = TOKEN
    brand: dict[str, Any] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    idempotency: dict[str, str] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    slow_seconds: float = 2.0
    rate_limit_remaining: int = 299
    reset_in_seconds: float = 30.0
    duplicate_boundary: bool = False
    next_id: int = 99_990
    lock: threading.Lock = field(default_factory=threading.Lock)

    #: The brand's ``source`` (plain-text note and fields, as the owner typed them).
    brand_source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.brand = self.account("skyblueair", account_id=BRAND_ID, display_name="SkyBlue Air")
        fields = [{"name": "Web", "value": "https://skyblue.example"}]
        self.brand.update(
            note="<p>Flying since 1999</p>", fields=[{**f, "verified_at": None} for f in fields]
        )
        self.brand_source = {
            "note": "Flying since 1999",
            "fields": fields,
            "privacy": "public",
            "sensitive": False,
            "language": "en",
        }

    # --- test helpers -------------------------------------------------------------

    def new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def account(self, acct: str, *, account_id: str | None = None, display_name: str = "",
                followers: int = 12) -> dict[str, Any]:
        username = acct.split("@")[0]
        account = {
            "id": account_id or self.new_id(),
            "username": username,
            "acct": acct,
            "display_name": display_name or username.title(),
            "locked": False,
            "bot": False,
            "followers_count": followers,
            "following_count": 3,
            "statuses_count": 40,
            "url": f"https://{acct.split('@')[1] if '@' in acct else 'fake.example'}/@{username}",
        }
        self.accounts[account["id"]] = account
        return account

    def status(self, author: dict[str, Any], text: str = "", *, visibility: str = "public",
               in_reply_to: str | None = None, content: str | None = None, language: str | None = "en",
               spoiler_text: str = "", at: datetime | None = None) -> dict[str, Any]:
        """A status on the instance (no notification)."""
        status_id = self.new_id()
        parent = self.statuses.get(in_reply_to) if in_reply_to else None
        status = {
            "id": status_id,
            "uri": f"https://fake.example/users/{author['username']}/statuses/{status_id}",
            "url": f"https://fake.example/@{author['username']}/{status_id}",
            "created_at": _iso(at or datetime.now(UTC)),
            "account": author,
            "content": content if content is not None else render(text, self),
            "visibility": visibility,
            "sensitive": bool(spoiler_text),
            "spoiler_text": spoiler_text,
            "in_reply_to_id": in_reply_to,
            "in_reply_to_account_id": parent["account"]["id"] if parent else None,
            "language": language,
            "mentions": [
                {"id": a["id"], "username": a["username"], "acct": a["acct"], "url": a["url"]}
                for a in self.accounts.values() if f"@{a['acct']}" in text
            ],
            "media_attachments": [],
            "tags": [
                {"name": tag.lower(), "url": f"https://fake.example/tags/{tag.lower()}"}
                for tag in dict.fromkeys(_HASHTAG.findall(text))
            ],
            "reblog": None,
        }
        self.statuses[status_id] = status
        return status

    def mention(self, author: dict[str, Any] | None = None, text: str = "", **kwargs: Any) -> dict[str, Any]:
        """A customer's status mentioning the brand, and the brand's notification of it."""
        author = author or self.account(f"customer{self.next_id}")
        if not text.startswith("@"):
            text = f"@{self.brand['acct']} {text}"
        status = self.status(author, text, **kwargs)
        return self.notify(status)

    def notify(self, status: dict[str, Any], *, kind: str = "mention") -> dict[str, Any]:
        notification = {
            "id": self.new_id(),
            "type": kind,
            "created_at": status["created_at"],
            "account": status["account"],
            "status": status,
        }
        self.notifications.append(notification)
        return notification

    def add_raw_notification(self, raw: Any) -> None:
        """Any JSON value as a notification (malformed items), placed after the others."""
        self.notifications.append({"id": self.new_id(), "__raw__": raw})

    def fail(self, kind: str, *, path: str = "/", method: str = "", times: int = 1, skip: int = 0) -> None:
        self.faults.append(Fault(kind, path, method.upper(), times, skip))

    def brand_posts(self) -> list[dict[str, Any]]:
        return [s for s in self.statuses.values() if s["account"]["id"] == BRAND_ID]

    def calls(self, method: str, path_prefix: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # --- the API ------------------------------------------------------------------

    def take_fault(self, method: str, path: str) -> str | None:
        for fault in self.faults:
            if path.startswith(fault.path) and (not fault.method or fault.method == method):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault.kind
        return None

    def list_notifications(self, query: dict[str, list[str]]) -> tuple[list[Any], str]:
        types = query.get("types[]", [])
        items = [n for n in self.notifications if not types or "__raw__" in n or n.get("type") in types]
        page, link = self.paginate(items, query, "/api/v1/notifications", default_limit=40, max_limit=MAX_LIMIT,
                                   keep=[("types[]", t) for t in types])
        return [n["__raw__"] if "__raw__" in n else n for n in page], link

    def tag_timeline(self, tag: str, query: dict[str, list[str]]) -> tuple[list[Any], str]:
        items = [s for s in self.statuses.values() if tag.lower() in {t["name"] for t in s["tags"]}
                 and s["visibility"] == "public"]
        return self.paginate(items, query, f"/api/v1/timelines/tag/{tag}", default_limit=20, max_limit=40, keep=[])

    def paginate(self, items: list[dict[str, Any]], query: dict[str, list[str]], path: str, *,
                 default_limit: int, max_limit: int, keep: list[tuple[str, str]]) -> tuple[list[Any], str]:
        """Mastodon's paging (api/guidelines#pagination): newest first; ``max_id`` and
        ``since_id`` cut the newest-first list, ``min_id`` takes the page right after it."""
        try:
            limit = min(int(query.get("limit", [str(default_limit)])[0]), max_limit)
        except ValueError:
            limit = default_limit

        def key(n: dict[str, Any]) -> int:
            return int(n["id"])

        items = sorted(items, key=key)
        min_id = query.get("min_id", [""])[0]
        max_id = query.get("max_id", [""])[0]
        since_id = query.get("since_id", [""])[0]
        if max_id:
            items = [n for n in items if key(n) < int(max_id)]
        if min_id:
            # Oldest first in the database, newest first in the answer.
            page = [n for n in items if key(n) > int(min_id)][:limit][::-1]
            if self.duplicate_boundary:
                page += [n for n in items if key(n) == int(min_id)]
        else:
            if since_id:
                items = [n for n in items if key(n) > int(since_id)]
            page = items[::-1][:limit]
        link = ""
        if page:
            base = f"{self.url}{path}"
            keep = [*keep, ("limit", str(limit))]
            link = (
                f"<{base}?{urlencode(keep + [('max_id', str(key(page[-1])))])}>; rel=\"next\", "
                f"<{base}?{urlencode(keep + [('min_id', str(key(page[0])))])}>; rel=\"prev\""
            )
        return page, link

    def thread(self, status_id: str) -> dict[str, Any]:
        ancestors = []
        parent_id = self.statuses[status_id]["in_reply_to_id"]
        while parent_id and parent_id in self.statuses:
            ancestors.insert(0, self.statuses[parent_id])
            parent_id = self.statuses[parent_id]["in_reply_to_id"]
        descendants = []
        for candidate in sorted(self.statuses.values(), key=lambda s: int(s["id"])):
            parent_id = candidate["in_reply_to_id"]
            while parent_id:
                if parent_id == status_id:
                    descendants.append(candidate)
                    break
                parent_id = self.statuses.get(parent_id, {}).get("in_reply_to_id")
        return {"ancestors": ancestors, "descendants": descendants}

    def post_status(self, body: dict[str, Any], key: str) -> tuple[int, Any]:
        if key and key in self.idempotency and self.idempotency[key] in self.statuses:
            return 200, self.statuses[self.idempotency[key]]
        text = str(body.get("status") or "")
        in_reply_to = body.get("in_reply_to_id") or None
        if in_reply_to and in_reply_to not in self.statuses:
            return 404, {"error": REPLY_NOT_FOUND}
        if not text.strip():
            return 422, {"error": "Validation failed: Text can't be blank"}
        if countable_length(str(body.get("spoiler_text") or "") + text) > MAX_CHARS:
            return 422, {"error": f"Validation failed: Text character limit of {MAX_CHARS} exceeded"}
        visibility = body.get("visibility") or "public"
        if visibility not in ("public", "unlisted", "private", "direct"):
            return 422, {"error": f"Validation failed: Visibility '{visibility}' is not a valid visibility"}
        status = self.status(self.brand, text, visibility=visibility, in_reply_to=in_reply_to,
                             language=body.get("language"))
        if key:
            self.idempotency[key] = status["id"]
        return 200, status

    def credentials(self) -> dict[str, Any]:
        """``CredentialAccount``: the brand's account and its ``source``."""
        return {**self.brand, "source": dict(self.brand_source)}

    def update_credentials(self, body: dict[str, Any]) -> tuple[int, Any]:
        """``PATCH /api/v1/accounts/update_credentials``: only the attributes given change."""
        note = body.get("note")
        if note is not None:
            if not isinstance(note, str):
                return 422, {"error": "Validation failed: Note is invalid"}
            if countable_length(note) > MAX_NOTE_LENGTH:
                reason = f"character limit of {MAX_NOTE_LENGTH} exceeded"
                return 422, {
                    "error": f"Validation failed: Note {reason}",
                    "details": {"note": [{"error": "ERR_TOO_LONG", "description": reason}]},
                }
            self.brand_source["note"] = note
            self.brand["note"] = render(note, self) if note else ""
        if isinstance(body.get("display_name"), str):
            self.brand["display_name"] = body["display_name"]
        for flag in ("locked", "bot"):
            if flag in body:
                self.brand[flag] = body[flag] in (True, "true", "1")
        return 200, self.credentials()


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def render(text: str, fake: FakeMastodon | None = None) -> str:
    """Mastodon's HTML for a plain-text status: paragraphs, <br />, mention and link markup."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        out: list[str] = []
        position = 0
        matches = [*_URL.finditer(block), *_MENTION.finditer(block), *_HASHTAG.finditer(block)]
        for match in sorted(matches, key=lambda m: m.start()):
            if match.start() < position:
                continue
            out.append(html.escape(block[position:match.start()]))
            token = match.group(0)
            if token.startswith("#"):
                tag = html.escape(token[1:])
                out.append(f'<a href="https://fake.example/tags/{tag.lower()}" class="mention hashtag" '
                           f'rel="tag">#<span>{tag}</span></a>')
            elif token.startswith("@"):
                username = token[1:].split("@")[0]
                out.append(f'<span class="h-card" translate="no"><a href="https://fake.example/@{username}" '
                           f'class="u-url mention">@<span>{html.escape(username)}</span></a></span>')
            else:
                scheme, rest = token.split("://", 1)
                shown, hidden = rest[:30], rest[30:]
                out.append(f'<a href="{html.escape(token)}" target="_blank" rel="nofollow noopener noreferrer" '
                           f'translate="no"><span class="invisible">{scheme}://</span>'
                           f'<span class="{"ellipsis" if hidden else ""}">{html.escape(shown)}</span>'
                           f'<span class="invisible">{html.escape(hidden)}</span></a>')
            position = match.end()
        out.append(html.escape(block[position:]))
        paragraphs.append("<p>" + "".join(out).replace("\n", "<br />") + "</p>")
    return "".join(paragraphs)


class _Handler(BaseHTTPRequestHandler):
    server_version = "Mastodon-fake/4.3"
    fake: FakeMastodon  # set on the subclass made per server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def _send(self, status: int, body: Any, *, headers: dict[str, str] | None = None, raw: bytes | None = None,
              remaining: int | None = None) -> None:
        fake = self.fake
        data = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        reset = datetime.now(UTC) + timedelta(seconds=fake.reset_in_seconds)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-RateLimit-Limit", "300")
        self.send_header("X-RateLimit-Remaining",
                         str(fake.rate_limit_remaining if remaining is None else remaining))
        self.send_header("X-RateLimit-Reset", _iso(reset))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        body: Any = None
        if raw_body:
            if (self.headers.get("Content-Type") or "").startswith("application/json"):
                try:
                    body = json.loads(raw_body)
                except ValueError:
                    body = None
            else:
                body = {k: v[0] for k, v in parse_qs(raw_body.decode()).items()}
        with fake.lock:
            fake.requests.append(Recorded(method, parts.path, query, dict(self.headers.items()), body))
            fault = fake.take_fault(method, parts.path)
        if fault == "slow":
            time.sleep(fake.slow_seconds)
        if self.headers.get("Authorization") != f"Bearer {fake.token}" or fault == "401":
            self._send(401, {"error": "The access token is invalid"})
            return
        if fault == "429":
            self._send(429, {"error": "Too many requests"}, remaining=0)
            return
        if fault in ("500", "503"):
            self._send(int(fault), {"error": "We're sorry, but something went wrong on our end."})
            return
        if fault == "malformed":
            self._send(200, None, raw=b'[{"id": "1", "type": "mention", "status": {')
            return
        with fake.lock:
            status, answer, headers = self._route(method, parts.path, query, body)
        if fault == "post-then-slow":
            time.sleep(fake.slow_seconds)
        self._send(status, answer, headers=headers)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any
               ) -> tuple[int, Any, dict[str, str]]:
        fake = self.fake
        if method == "GET" and path == "/api/v1/notifications":
            page, link = fake.list_notifications(query)
            return 200, page, {"Link": link} if link else {}
        if method == "GET" and path == "/api/v1/accounts/verify_credentials":
            return 200, fake.credentials(), {}
        if method == "PATCH" and path == "/api/v1/accounts/update_credentials":
            status, answer = fake.update_credentials(body or {})
            return status, answer, {}
        match = re.fullmatch(r"/api/v1/statuses/([^/]+)/context", path)
        if method == "GET" and match:
            if match.group(1) not in fake.statuses:
                return 404, {"error": "Record not found"}, {}
            return 200, fake.thread(match.group(1)), {}
        match = re.fullmatch(r"/api/v1/timelines/tag/([^/]+)", path)
        if method == "GET" and match:
            page, link = fake.tag_timeline(match.group(1), query)
            return 200, page, {"Link": link} if link else {}
        if method == "POST" and path == "/api/v1/statuses":
            status, answer = fake.post_status(body or {}, self.headers.get("Idempotency-Key") or "")
            return status, answer, {}
        return 404, {"error": "Record not found"}, {}


class FakeMastodonServer:
    """Runs a FakeMastodon on 127.0.0.1 on a free port, in a thread."""

    def __init__(self) -> None:
        self.fake = FakeMastodon()
        handler = type("Handler", (_Handler,), {"fake": self.fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        self.fake.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-mastodon", daemon=True)

    def __enter__(self) -> FakeMastodon:
        self.thread.start()
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
