"""XRPC over :class:`PlatformHTTP`: the PDS session, token refresh, and XRPC error reasons.

XRPC errors are JSON ``{"error": "<Code>", "message": "<text>"}``; the code decides what
to do (``ExpiredToken``: refresh; ``RecordNotFound``: nothing there) and the message is
what the agent needs to read. ``PlatformHTTP`` keeps only one of the two, so the
transport below remembers both of the last failed answer.

Sessions: ``com.atproto.server.createSession`` (identifier + app password) gives an
access and a refresh token. The PDS answers 400 ``ExpiredToken`` once the access token
(about two hours) has expired: we call ``refreshSession`` with the refresh token and, if
that is refused too, create a new session. The tokens live in this process's memory
only (never in the database, Redis or logs), shared by the connector instances of one
source, because ``createSession`` is rate limited per account (30 per 5 minutes, 300
per day) and a fresh connector is built for every poll and every reply.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any

import httpx

from inbox.connectors.base import AuthenticationFailed, ConnectorError, PermanentError, RetryableError
from inbox.connectors.http import ERROR_TEXT_LIMIT, PlatformHTTP

#: XRPC error codes that mean "the access token is no good any more": refresh, then retry.
_TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})


@dataclass(frozen=True, slots=True)
class XrpcError:
    status: int
    code: str
    message: str

    def reason(self) -> str:
        text = f"{self.status} {self.code}" if self.code else str(self.status)
        if self.message:
            text = f"{text}: {self.message}"
        return text[:ERROR_TEXT_LIMIT]


class _RememberErrors(httpx.BaseTransport):
    """Passes requests on; keeps the XRPC error of the last non-2xx answer."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.last_error: XrpcError | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        self.last_error = None
        if response.status_code >= 400:
            response.read()
            code = message = ""
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                code = body.get("error") if isinstance(body.get("error"), str) else ""
                message = body.get("message") if isinstance(body.get("message"), str) else ""
            self.last_error = XrpcError(response.status_code, code, message)
        return response

    def close(self) -> None:
        self.inner.close()


@dataclass(slots=True)
class Session:
    access_jwt: str
    refresh_jwt: str
    did: str
    handle: str


# (source id, service URL, identifier, password digest) -> session. Changing the
# credentials of a source changes the key, so stale tokens are never reused.
_SESSIONS: dict[tuple[Any, ...], Session] = {}
_SESSIONS_LOCK = threading.Lock()


def forget_sessions() -> None:
    """Drop every cached session (tests; a worker that must log in again)."""
    with _SESSIONS_LOCK:
        _SESSIONS.clear()


class XrpcClient:
    """Calls ``/xrpc/<nsid>`` on one PDS as one account, keeping the session fresh."""

    def __init__(
        self,
        *,
        service_url: str,
        identifier: str,
        app_password: str,
        timeout: httpx.Timeout,
        session_key: Any,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._transport = _RememberErrors(transport or httpx.HTTPTransport())
        self._http = PlatformHTTP(
            service_url.rstrip("/"),
            reset_header="RateLimit-Reset",
            timeout=timeout,
            transport=self._transport,
        )
        self._identifier = identifier
        self._password = app_password
        digest = hashlib.sha256(app_password.encode()).hexdigest()
        self._key = (session_key, service_url, identifier, digest)

    def close(self) -> None:
        self._http.close()

    # --- Session ------------------------------------------------------------------

    @property
    def session(self) -> Session:
        with _SESSIONS_LOCK:
            session = _SESSIONS.get(self._key)
        if session is None:
            session = self._create_session()
        return session

    def _store(self, body: Any) -> Session:
        if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) and body.get(k) for k in ("accessJwt", "refreshJwt", "did")
        ):
            raise RetryableError("Bluesky session answer lacks accessJwt, refreshJwt or did")
        session = Session(body["accessJwt"], body["refreshJwt"], body["did"], str(body.get("handle") or ""))
        with _SESSIONS_LOCK:
            _SESSIONS[self._key] = session
        return session

    def _create_session(self) -> Session:
        try:
            body = self._http.json(
                "POST",
                "/xrpc/com.atproto.server.createSession",
                json={"identifier": self._identifier, "password": self._password},
            )
        except PermanentError as exc:
            error = self._transport.last_error
            reason = error.reason() if error else str(exc)
            # 401 AuthenticationRequired is a wrong password; 400 AccountTakedown and the
            # like also mean the brand must log in again with other credentials.
            raise AuthenticationFailed(
                f"Bluesky refused the app password for {self._identifier}: {reason}"
            ) from exc
        return self._store(body)

    def _renew(self, stale: Session) -> Session:
        with _SESSIONS_LOCK:
            current = _SESSIONS.get(self._key)
        if current is not None and current.access_jwt != stale.access_jwt:
            return current  # another connector of this source refreshed already
        try:
            body = self._http.json(
                "POST",
                "/xrpc/com.atproto.server.refreshSession",
                headers={"Authorization": f"Bearer {stale.refresh_jwt}"},
            )
        except PermanentError:
            # The refresh token expired or was revoked: log in again.
            with _SESSIONS_LOCK:
                _SESSIONS.pop(self._key, None)
            return self._create_session()
        return self._store(body)

    # --- Calls --------------------------------------------------------------------

    def call(self, method: str, nsid: str, *, write: bool = False, **kwargs: Any) -> Any:
        """The JSON answer of one authenticated XRPC call; errors carry the XRPC reason.

        An expired or invalid access token is renewed once and the call repeated: the PDS
        refused it before doing anything, so even a write is safe to send again."""
        session = self.session
        for attempt in range(2):
            try:
                return self._http.json(
                    method,
                    f"/xrpc/{nsid}",
                    write=write,
                    headers={"Authorization": f"Bearer {session.access_jwt}"},
                    **kwargs,
                )
            except PermanentError as exc:
                error = self._transport.last_error
                if (
                    attempt == 0
                    and error is not None
                    and (error.code in _TOKEN_ERRORS or error.status == 401)
                ):
                    session = self._renew(session)
                    continue
                raise _with_reason(exc, error) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def last_error(self) -> XrpcError | None:
        return self._transport.last_error


def _with_reason(exc: PermanentError, error: XrpcError | None) -> ConnectorError:
    if error is None:
        return exc
    if isinstance(exc, AuthenticationFailed):
        return AuthenticationFailed(f"Bluesky refused the session token: {error.reason()}")
    return PermanentError(error.reason())
