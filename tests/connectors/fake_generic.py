"""A local receiver for generic-source replies, as docs/connectors/generic.md describes it.

``POST <reply_url>`` with a signed JSON reply and an ``Idempotency-Key``; answers
``201 {"id": ...}``, the same id again for a key it has seen. Knobs: ``status`` (answer every
post with that status and a JSON error), ``delay`` (seconds before answering, to force a
client timeout; the post is still recorded, as a real receiver would have stored it).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


class FakeReceiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.posts: dict[str, str] = {}  # idempotency key -> id
        self.status = 201
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status, answer = receiver.handle(self.path, dict(self.headers.items()), body)
                payload = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out first

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/replies"

    def start(self) -> FakeReceiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict]:
        with self._lock:
            self.requests.append(Received(path, headers, body))
            status, delay = self.status, self.delay
            if status < 300:
                key = headers.get("Idempotency-Key", "")
                post_id = self.posts.get(key) or f"r-{len(self.posts) + 1}"
                self.posts[key] = post_id
        if delay:
            time.sleep(delay)
        if status >= 300:
            return status, {"error": "parent conversation is closed" if status < 500 else "upstream down"}
        return status, {"id": post_id}
