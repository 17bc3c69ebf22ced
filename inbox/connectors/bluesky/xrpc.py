"""XRPC over :class:`PlatformHTTP`: the PDS session, token refresh, and XRPC error reasons.

XRPC errors are JSON ``{"error": "<Code>", "message": "<text>"}``; the code decides what
to do (``ExpiredToken``: refresh; ``RecordNotFound``: nothing there) and is read from the
answer every error carries (``ConnectorError.response``, :func:`xrpc_error_code`); the
error's text (``error_text``: ``"<status> <Code>: <message>"``) is what the agent reads.

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from inbox.connectors.base import AuthenticationFailed, ConnectorError, PermanentError, RetryableError
from inbox.connectors.http import PlatformHTTP, error_text

#: XRPC error codes that mean "the access token is no good any more": refresh, then retry.
_TOKEN_ERRORS = frozenset({"ExpiredToken", "InvalidToken"})


def xrpc_error_code(exc: ConnectorError) -> str:
    """The XRPC ``error`` code of the answer behind ``exc`` ("" when there is none)."""
    response = exc.response
    if response is None:
        return ""
    try:
        body = response.json()
    except ValueError:
        return ""
    code = body.get("error") if isinstance(body, Mapping) else None
    return code if isinstance(code, str) else ""


def _reason(exc: ConnectorError) -> str:
    return error_text(exc.response) if exc.response is not None else str(exc)


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
        self._http = PlatformHTTP(
            service_url.rstrip("/"),
            reset_header="RateLimit-Reset",
            timeout=timeout,
            transport=transport,
        )
        self._identifier = identifier
        self._password = app_password
        digest = hashlib.sha256(app_password.encode()).hexdigest()
        self._key = (session_key, service_url, identifier, digest)

    def close(self) -> None:
        """Close the connection pool; later calls fail. Safe to call twice."""
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
            reason = _reason(exc)
            # 401 AuthenticationRequired is a wrong password; 400 AccountTakedown and the
            # like also mean the brand must log in again with other credentials.
            refused = AuthenticationFailed(
                f"Bluesky refused the app password for {self._identifier}: {reason}"
            )
            refused.response = exc.response
            raise refused from exc
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
                status = exc.response.status_code if exc.response is not None else None
                if attempt == 0 and (xrpc_error_code(exc) in _TOKEN_ERRORS or status == 401):
                    session = self._renew(session)
                    continue
                if isinstance(exc, AuthenticationFailed):
                    refused = AuthenticationFailed(f"Bluesky refused the session token: {_reason(exc)}")
                    refused.response = exc.response
                    raise refused from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover
