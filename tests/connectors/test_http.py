"""PlatformHTTP against a real local HTTP server: every kind of answer becomes the right error."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from inbox.connectors.base import (
    AuthenticationFailed,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RetryableError,
)
from inbox.connectors.http import PlatformHTTP, error_text, seconds_until

NOW = 1_800_000_000.0

# path -> (status, headers, body bytes, delay seconds)
ANSWERS: dict[str, tuple[int, dict[str, str], bytes, float]] = {
    "/ok": (200, {"Content-Type": "application/json"}, b'{"id": "1", "text": "\xf0\x9f\x9b\xab ok"}', 0),
    "/html": (200, {"Content-Type": "text/html"}, b"<html>proxy error</html>", 0),
    "/limited": (429, {"X-RateLimit-Reset": "2027-01-15T08:00:30Z"}, b'{"error": "Too many requests"}', 0),
    "/retry-after": (429, {"Retry-After": "12"}, b"", 0),
    "/down": (503, {}, b"upstream unavailable", 0),
    "/token": (401, {}, b'{"error": "The access token is invalid"}', 0),
    "/gone": (404, {}, b'{"errors": [{"message": "Record not found"}]}', 0),
    "/slow": (200, {}, b"{}", 2.0),
}


class _Handler(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, dict[str, str]]] = []

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, dict(self.headers)))
        status, headers, body, delay = ANSWERS[self.path]
        time.sleep(delay)
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            return  # the client timed out first: what the slow answers are for

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def client(server) -> Iterator[PlatformHTTP]:
    http = PlatformHTTP(server, headers=lambda: {"Authorization": "Bearer secret"},
                        reset_header="X-RateLimit-Reset", timeout=httpx.Timeout(0.5))
    yield http
    http.close()


def test_a_good_answer_is_its_json_and_the_headers_are_sent(client):
    assert client.json("GET", "/ok") == {"id": "1", "text": "🛫 ok"}
    method, path, headers = _Handler.seen[-1]
    assert (method, path, headers["Authorization"]) == ("GET", "/ok", "Bearer secret")


def test_429_is_rate_limited_until_the_platforms_reset(client, monkeypatch):
    monkeypatch.setattr(time, "time", lambda: NOW)
    with pytest.raises(RateLimited) as caught:
        client.request("GET", "/limited")
    # NOW is 2027-01-15T08:00:00Z; the platform resets 30 s later.
    assert caught.value.retry_after == pytest.approx(30.0)
    assert "Too many requests" in str(caught.value)
    with pytest.raises(RateLimited) as caught:
        client.request("GET", "/retry-after")
    assert caught.value.retry_after == 12.0


def test_5xx_and_timeouts_are_retryable(client):
    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/down")
    assert not isinstance(caught.value, RateLimited)
    assert str(caught.value) == "platform error: 503 upstream unavailable"
    with pytest.raises(RetryableError) as caught:
        client.request("GET", "/slow")
    assert not isinstance(caught.value, OutcomeUnknown)


def test_a_write_that_times_out_has_an_unknown_outcome(client):
    with pytest.raises(OutcomeUnknown):
        client.request("POST", "/slow", write=True, json={"status": "hi"})


def test_refused_credentials_and_other_4xx_are_permanent_with_the_platforms_reason(client):
    with pytest.raises(AuthenticationFailed) as caught:
        client.request("GET", "/token")
    assert str(caught.value) == "credentials refused: 401 The access token is invalid"
    assert "secret" not in str(caught.value)
    with pytest.raises(PermanentError) as caught:
        client.request("GET", "/gone")
    assert not isinstance(caught.value, AuthenticationFailed)
    assert str(caught.value) == "404 Record not found"


def test_a_body_that_is_not_json_is_retryable_or_unknown_after_a_write(client):
    with pytest.raises(RetryableError) as caught:
        client.json("GET", "/html")
    assert "answer is not JSON" in str(caught.value) and not isinstance(caught.value, OutcomeUnknown)
    with pytest.raises(OutcomeUnknown):
        client.json("POST", "/html", write=True)


def test_a_refused_connection_is_retryable_even_for_a_write():
    http = PlatformHTTP("http://127.0.0.1:9", timeout=httpx.Timeout(0.5))
    with pytest.raises(RetryableError) as caught:
        http.request("POST", "/statuses", write=True)
    assert not isinstance(caught.value, OutcomeUnknown)  # never reached the platform
    http.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("12", 12.0),
        (str(int(NOW) + 90), 90.0),
        ("2027-01-15T08:01:00Z", 60.0),
        ("2027-01-15T08:01:00.000+00:00", 60.0),
        ("Fri, 15 Jan 2027 08:02:00 GMT", 120.0),
        ("soon", None),
        (str(int(NOW) - 5), 0.0),
    ],
)
def test_reset_headers_in_every_format(value, expected):
    assert seconds_until(value, now=NOW) == expected


def test_error_text_is_cut_and_prefers_the_platforms_message():
    long = httpx.Response(400, text="x" * 2000)
    assert len(error_text(long)) == 500
    nested = httpx.Response(400, content=json.dumps({"error": {"message": "Invalid parameter"}}).encode())
    assert error_text(nested) == "400 Invalid parameter"


def _answer(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode())


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        # X problem JSON: the title labels, the detail is the reason.
        (
            403,
            {"title": "Forbidden", "detail": "You attempted to reply to a Tweet that is deleted.",
             "type": "about:blank", "status": 403},
            "403 Forbidden: You attempted to reply to a Tweet that is deleted.",
        ),
        # X "Invalid Request": the parameter that was wrong comes before the generic detail.
        (
            400,
            {"title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
             "errors": [
                 {"parameters": {"max_results": ["3"]}, "message": "max_results [3] is not between 5 and 100"},
                 {"message": "since_id [x] is not a number"},
             ],
             "type": "https://api.twitter.com/2/problems/invalid-request"},
            "400 Invalid Request: max_results [3] is not between 5 and 100; since_id [x] is not a number; "
            "One or more parameters to your request was invalid.",
        ),
        # X repeats its title as the detail: said once.
        (401, {"title": "Unauthorized", "detail": "Unauthorized", "status": 401}, "401 Unauthorized"),
        # XRPC: the code, then the message.
        (400, {"error": "ExpiredToken", "message": "Token has expired"},
         "400 ExpiredToken: Token has expired"),
        # A message that repeats its code does not get it twice.
        (400, {"error": "InvalidRequest", "message": "InvalidRequest: bad langs"},
         "400 InvalidRequest: bad langs"),
        # OAuth 2.0 token endpoint.
        (400, {"error": "invalid_grant", "error_description": "The refresh token was revoked"},
         "400 invalid_grant: The refresh token was revoked"),
        # Mastodon: one sentence.
        (422, {"error": "Validation failed: Text character limit of 500 exceeded"},
         "422 Validation failed: Text character limit of 500 exceeded"),
        # Meta Graph API: the nested message; the text meant for people first when there is one.
        (400, {"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}},
         "400 (#100) Invalid parameter"),
        (400, {"error": {"message": "(#100) Invalid parameter", "code": 100, "error_user_title": "Too long",
                         "error_user_msg": "The comment is longer than 8000 characters"}},
         "400 The comment is longer than 8000 characters; (#100) Invalid parameter"),
        # JSON that names none of these, and no JSON at all: the body as it came.
        (404, ["not", "an", "object"], '404 ["not", "an", "object"]'),
        (409, {"status": 409}, '409 {"status": 409}'),
    ],
)
def test_error_text_puts_the_specific_reason_first_and_keeps_what_the_generic_one_adds(
    status, body, expected
):
    assert error_text(_answer(status, body)) == expected


def test_error_text_of_a_body_that_is_not_json_or_empty():
    page = httpx.Response(502, text="  <html>Bad gateway</html>\n")
    assert error_text(page) == "502 <html>Bad gateway</html>"
    assert error_text(httpx.Response(503)) == "503 Service Unavailable"


def test_error_text_cut_keeps_the_specific_reason():
    body = {"title": "Invalid Request", "detail": "d" * 600, "errors": [{"message": "text is missing"}]}
    text = error_text(_answer(400, body))
    assert len(text) == 500 and text.startswith("400 Invalid Request: text is missing; ddd")
