"""HTTP for connectors: one client per connector, platform answers mapped to typed errors.

Every platform connector talks to its API through :class:`PlatformHTTP`, so timeouts,
rate limits, 5xx and refused credentials mean the same everywhere:

* a timeout or connection error: :class:`RetryableError`; for a write (``write=True``)
  :class:`OutcomeUnknown`, since the platform may have posted before the answer was lost;
* 429: :class:`RateLimited` with ``retry_after`` from the platform's reset header;
* 5xx: :class:`RetryableError` (with ``Retry-After`` when given);
* 401 (and 403 when the platform uses it for bad tokens, ``auth_statuses``): :class:`AuthenticationFailed`;
* any other 4xx: :class:`PermanentError` carrying the platform's own error text;
* a 2xx body that is not the JSON it should be: :class:`RetryableError` (a proxy's error page
  or a truncated answer; the next poll asks again), :class:`OutcomeUnknown` after a write.

Platforms that put the meaning in the body rather than the status (Meta answers 400 with
``error.code`` 190 for a dead token and 4/17/32/613 for rate limits) pass ``classify``,
which sees every non-2xx answer first. Every error raised for an answer carries it as
``response``.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import httpx

from inbox.connectors.base import (
    AuthenticationFailed,
    ConnectorError,
    OutcomeUnknown,
    PermanentError,
    RateLimited,
    RetryableError,
)

#: Seconds: connect, read, write, pool. Longer than this and the poll or send is retried.
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
#: The platform's error text kept for the agent is cut to this many characters.
ERROR_TEXT_LIMIT = 500


def seconds_until(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds from now until a reset given as epoch seconds, an ISO 8601 time, an HTTP date,
    or (small numbers) already a number of seconds. None when absent or unreadable."""
    if not value:
        return None
    now = time.time() if now is None else now
    value = value.strip()
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        # Epoch seconds are large; a delay (Retry-After) is small.
        return max(0.0, number - now) if number > 10**9 else max(0.0, number)
    for parse in (_iso, _http_date):
        moment = parse(value)
        if moment is not None:
            return max(0.0, moment - now)
    return None


def _iso(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _http_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.timestamp() if parsed is not None else None


def error_text(response: httpx.Response) -> str:
    """``<status> <reason>`` as the platform wrote it, cut to :data:`ERROR_TEXT_LIMIT`.

    Error bodies carry a short generic label (X's problem ``title``, an XRPC or OAuth
    ``error`` code, Mastodon's ``error`` sentence) and a specific reason (X's
    ``errors[].message``, XRPC ``message``, OAuth ``error_description``, Meta's
    ``error.error_user_msg`` and ``error.message``). The result is ``<label>: <specific>``,
    then a generic ``detail`` where it says more, so the reason the agent needs comes first
    and survives the cut; what repeats something already said is left out:

    * ``{"title": "Forbidden", "detail": "You attempted to reply …"}``
      → ``403 Forbidden: You attempted to reply …``
    * ``{"title": "Invalid Request", "detail": "One or more parameters …", "errors": [{"message": "m"}]}``
      → ``400 Invalid Request: m; One or more parameters …``
    * ``{"title": "Unauthorized", "detail": "Unauthorized"}`` → ``401 Unauthorized``
    * ``{"error": "ExpiredToken", "message": "Token has expired"}``
      → ``400 ExpiredToken: Token has expired``
    * ``{"error": "invalid_grant", "error_description": "Token revoked"}``
      → ``400 invalid_grant: Token revoked``
    * ``{"error": "The access token is invalid"}`` → ``401 The access token is invalid``
    * ``{"error": {"message": "Invalid parameter", "code": 100}}`` → ``400 Invalid parameter``

    A body that is not JSON, or names none of these, is given as text.
    """

    def text(value: Any) -> str:
        return value.strip() if isinstance(value, str) else ""

    try:
        body = response.json()
    except ValueError:
        body = None
    reason = ""
    if isinstance(body, Mapping):
        labels = [text(body.get("title")), text(body.get("error"))]
        specific: list[str] = []
        errors = body.get("errors")
        for error in errors if isinstance(errors, list) else ():
            if isinstance(error, Mapping):
                specific.append(
                    text(error.get("message")) or text(error.get("detail")) or text(error.get("title"))
                )
        specific += [text(body.get("error_description")), text(body.get("message"))]
        nested = body.get("error")
        if isinstance(nested, Mapping):
            specific += [text(nested.get("error_user_msg")), text(nested.get("message"))]
        specific.append(text(body.get("detail")))
        label: list[str] = []
        rest: list[str] = []
        for part, is_label in [*((p, True) for p in labels), *((p, False) for p in specific)]:
            folded = part.casefold()
            if not part or any(folded in kept.casefold() for kept in label + rest):
                continue  # empty, or already said (X repeats its title as the detail)
            # A reason that spells out its own code ("ExpiredToken: …") makes the label redundant.
            label = [kept for kept in label if kept.casefold() not in folded]
            (label if is_label else rest).append(part)
        if label and rest:
            reason = f"{': '.join(label)}: {'; '.join(rest)}"
        else:
            reason = ": ".join(label) or "; ".join(rest)
    if not reason:
        reason = response.text.strip() or response.reason_phrase
    return f"{response.status_code} {reason}"[:ERROR_TEXT_LIMIT]


class PlatformHTTP:
    """A small httpx wrapper that turns platform answers into the connector error types.

    ``reset_header``: the platform's rate-limit reset header (e.g. ``X-RateLimit-Reset``);
    ``Retry-After`` is always honoured too. ``auth_statuses``: statuses that mean the token
    is refused. ``headers`` is called per request (tokens can be refreshed in between).
    ``classify``: called with every non-2xx answer (and whether it was a write); the error
    it returns is raised, None leaves the answer to the generic mapping.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Callable[[], Mapping[str, str]] | None = None,
        reset_header: str = "",
        auth_statuses: frozenset[int] = frozenset({401}),
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        classify: Callable[[httpx.Response, bool], ConnectorError | None] | None = None,
    ) -> None:
        self._client = httpx.Client(base_url=base_url, timeout=timeout, transport=transport,
                                    follow_redirects=False)
        self._headers = headers or (lambda: {})
        self.reset_header = reset_header
        self.auth_statuses = auth_statuses
        self.classify = classify
        #: The last response's headers (rate-limit bookkeeping for callers).
        self.last_headers: httpx.Headers | None = None

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, url: str, *, write: bool = False, **kwargs: Any) -> httpx.Response:
        """Send; return the 2xx response or raise the matching connector error."""
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        try:
            response = self._client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            if write:
                raise OutcomeUnknown(f"{method} {url}: timed out ({exc.__class__.__name__})") from exc
            raise RetryableError(f"{method} {url}: timed out ({exc.__class__.__name__})") from exc
        except httpx.TransportError as exc:
            if write and not isinstance(exc, httpx.ConnectError):
                raise OutcomeUnknown(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
            raise RetryableError(f"{method} {url}: {exc.__class__.__name__}: {exc}") from exc
        self.last_headers = response.headers
        status = response.status_code
        if 200 <= status < 300:
            return response
        raise self._error(response, write=write)

    def _error(self, response: httpx.Response, *, write: bool) -> ConnectorError:
        error = self.classify(response, write) if self.classify is not None else None
        if error is None:
            error = self._generic_error(response)
        error.response = response
        return error

    def _generic_error(self, response: httpx.Response) -> ConnectorError:
        status = response.status_code
        reason = error_text(response)
        retry_after = seconds_until(response.headers.get("Retry-After"))
        if retry_after is None and self.reset_header:
            retry_after = seconds_until(response.headers.get(self.reset_header))
        if status == 429:
            return RateLimited(f"rate limited: {reason}", retry_after=retry_after)
        if status >= 500:
            return RetryableError(f"platform error: {reason}", retry_after=retry_after)
        if status in self.auth_statuses:
            return AuthenticationFailed(f"credentials refused: {reason}")
        return PermanentError(reason)

    def json(self, method: str, url: str, *, write: bool = False, **kwargs: Any) -> Any:
        """``request`` and its JSON body. A 2xx answer that is not JSON is retryable; after a
        write it leaves the outcome unknown (the platform took the request)."""
        response = self.request(method, url, write=write, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            problem = f"{method} {url}: answer is not JSON: {response.text[:200]!r}"
            if write:
                raise OutcomeUnknown(problem) from exc
            raise RetryableError(problem) from exc
