"""A small Graph API client for the Meta connectors, on :class:`PlatformHTTP`.

Every call goes to ``{graph_url}/{version}/{path}`` with the Page access token as the
``access_token`` query parameter and, when ``META_APP_SECRET`` is set, ``appsecret_proof``
(HMAC-SHA256 of the token with the app secret, hex), which Meta requires once "Require
App Secret" is on in the app's advanced settings.

Graph puts the meaning of an error in the body, not the status (``classify_graph_error``):

* code 190 or 102 (token invalid, expired, revoked, password changed): ``AuthenticationFailed``;
* codes 4, 17, 32, 613 and 80001–80014 (app, user, page and business-use-case rate limits):
  ``RateLimited``; ``retry_after`` is the largest ``estimated_time_to_regain_access``
  (minutes) found in ``X-Business-Use-Case-Usage``, ``X-App-Usage`` or ``X-Page-Usage``;
* ``is_transient: true``, codes 1 and 2 (unknown error, service unavailable) and any 5xx:
  ``RetryableError`` for a read; for a write ``OutcomeUnknown``, because Graph has been seen
  to answer an error after the comment or message was in fact posted: the outbox then
  looks the post up (``find_sent``) before posting again, which costs one read;
* code 100 with subcode 33 (the object is gone: a deleted comment or post): ``PermanentError``
  with Meta's message;
* code 10 with subcode 2018278, or 2018065 (outside the allowed messaging window), and code
  551 (this person is not available): ``PermanentError`` with a reason an agent understands;
* anything else: ``PermanentError`` with Meta's message, code and trace id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from inbox.connectors.base import (
    AuthenticationFailed,
    ConnectorError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RetryableError,
)
from inbox.connectors.http import ERROR_TEXT_LIMIT, PlatformHTTP

if TYPE_CHECKING:
    from inbox.models import Source

AUTH_CODES = frozenset({190, 102})
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80001, 80015)})
TRANSIENT_CODES = frozenset({1, 2})
USAGE_HEADERS = ("X-Business-Use-Case-Usage", "X-App-Usage", "X-Page-Usage")
#: Subcodes Meta uses for "this message is sent outside of allowed window".
WINDOW_SUBCODES = frozenset({2018278, 2018065})


def appsecret_proof(app_secret: str, access_token: str) -> str:
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


def usage_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds until access is regained, from Meta's usage headers (minutes there)."""
    minutes: list[float] = []
    for name in USAGE_HEADERS:
        value = headers.get(name)
        if not value:
            continue
        try:
            usage = json.loads(value)
        except ValueError:
            continue
        minutes.extend(_regain_minutes(usage))
    return max(minutes) * 60.0 if minutes else None


def _regain_minutes(value: Any) -> list[float]:
    # X-Business-Use-Case-Usage: {"<business id>": [{"type", "call_count", ...,
    # "estimated_time_to_regain_access": 12}]}; the app and page headers are flat objects.
    found: list[float] = []
    if isinstance(value, Mapping):
        regain = value.get("estimated_time_to_regain_access")
        if isinstance(regain, (int, float)) and not isinstance(regain, bool) and regain >= 0:
            found.append(float(regain))
        for nested in value.values():
            if isinstance(nested, (list, Mapping)):
                found.extend(_regain_minutes(nested))
    elif isinstance(value, list):
        for nested in value:
            found.extend(_regain_minutes(nested))
    return found


def graph_error(response: httpx.Response) -> Mapping[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, Mapping) else None
    return error if isinstance(error, Mapping) else None


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def describe(error: Mapping[str, Any], status: int) -> str:
    """Meta's message with its code, subcode and trace id (what support asks for)."""
    message = error.get("message")
    message = message if isinstance(message, str) and message else f"HTTP {status}"
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    tags = [f"code {code}" + (f"/{subcode}" if subcode is not None else "")] if code is not None else []
    trace = error.get("fbtrace_id")
    if isinstance(trace, str) and trace:
        tags.append(f"fbtrace_id {trace}")
    user_message = error.get("error_user_msg")
    if isinstance(user_message, str) and user_message and user_message not in message:
        message = f"{message} ({user_message})"
    text = f"{message} [{', '.join(tags)}]" if tags else message
    return text[:ERROR_TEXT_LIMIT]


def classify_graph_error(response: httpx.Response, write: bool) -> ConnectorError | None:
    """``PlatformHTTP`` ``classify`` for Graph (see the module docstring)."""
    status = response.status_code
    error = graph_error(response)
    if error is None:
        if status >= 500 and write:
            return OutcomeUnknown(f"Meta answered HTTP {status} to a write: it may have posted")
        return None  # the generic mapping (5xx retryable, 429, other 4xx permanent)
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    text = describe(error, status)
    if code in AUTH_CODES:
        return AuthenticationFailed(f"Meta refused the Page access token: {text}")
    if code in RATE_LIMIT_CODES or status == 429:
        return RateLimited(f"Meta rate limit: {text}", retry_after=usage_retry_after(response.headers))
    if error.get("is_transient") is True or code in TRANSIENT_CODES or status >= 500:
        if write:
            return OutcomeUnknown(f"Meta had a temporary problem; the post may exist: {text}")
        return RetryableError(f"Meta had a temporary problem: {text}")
    if code == 100 and subcode == 33:
        return PermanentError(f"the comment or message answered no longer exists on Meta: {text}")
    if (code == 10 and subcode in WINDOW_SUBCODES) or subcode in WINDOW_SUBCODES:
        return PermanentError(
            "Meta refused the message: it is outside the allowed reply window (24 hours after the "
            "customer's last message, 7 days with the human agent tag, 7 days for a private reply "
            f"to a comment); the customer must write again: {text}"
        )
    if code == 551:
        return PermanentError(f"Meta says this person is not available to receive messages: {text}")
    return PermanentError(f"Meta refused the request: {text}")


class GraphClient:
    """Graph calls of one source, authenticated with its Page access token."""

    def __init__(self, source: Source, *, transport: httpx.BaseTransport | None = None) -> None:
        config = source.config or {}
        if not isinstance(config, Mapping):
            raise PermanentError(f"{source.platform} source config must be an object")
        webcare = settings.WEBCARE
        graph_url = config.get("graph_url") or webcare.get("META_GRAPH_URL") or "https://graph.facebook.com"
        parts = urlsplit(graph_url) if isinstance(graph_url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise PermanentError(
                f"{source.platform} source config: graph_url must be an http(s) URL, got {graph_url!r}"
            )
        version = config.get("api_version") or webcare.get("META_GRAPH_VERSION") or "v23.0"
        if not isinstance(version, str) or not version.startswith("v") or "/" in version:
            raise PermanentError(
                f"{source.platform} source config: api_version must look like 'v23.0', got {version!r}"
            )
        seconds = config.get("timeout_seconds") or webcare.get("HTTP_TIMEOUT_SECONDS", 10.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds <= 120:
            raise PermanentError(
                f"{source.platform} source config: timeout_seconds must be a number "
                f"above 0 and at most 120, got {seconds!r}"
            )
        secrets = source.secrets or {}
        token = secrets.get("page_access_token") if isinstance(secrets, Mapping) else None
        if not isinstance(token, str) or not token.strip():
            raise PermanentError(
                f"{source.platform} source {source.name!r} has no page_access_token in its secrets"
                + (
                    " (the token of the Page the Instagram account is linked to)"
                    if source.platform == "instagram"
                    else ""
                )
            )
        self.access_token = token.strip()
        app_secret = webcare.get("META_APP_SECRET") or ""
        self.proof = appsecret_proof(app_secret, self.access_token) if app_secret else ""
        self.base = f"{graph_url.rstrip('/')}/{version}"
        self.http = PlatformHTTP(
            self.base,
            classify=classify_graph_error,
            timeout=httpx.Timeout(float(seconds), connect=min(5.0, float(seconds))),
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def _auth(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        query = dict(params or {})
        query["access_token"] = self.access_token
        if self.proof:
            query["appsecret_proof"] = self.proof
        return query

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return self.http.json("GET", path, params=self._auth(params))

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        """A write: a lost answer is ``OutcomeUnknown``."""
        return self.http.json("POST", path, write=True, params=self._auth(None), json=dict(body))
