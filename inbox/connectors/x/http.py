"""PlatformHTTP with X's error bodies read to the precise reason.

X answers errors as problem JSON: ``{"title": "Forbidden", "detail": "...", "status": 403}``.
For "Invalid Request" (400) the ``detail`` is generic ("One or more parameters to your
request was invalid.") and the reason the agent needs is in ``errors[].message``; this
class puts both in the PermanentError so the platform's reason is kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from inbox.connectors.base import AuthenticationFailed, PermanentError
from inbox.connectors.http import ERROR_TEXT_LIMIT, PlatformHTTP


def x_error_text(response: httpx.Response) -> str:
    """``<status> <title>: <detail>[; <errors[].message> ...]`` from an X error body."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, Mapping):
        return f"{response.status_code} {response.text.strip() or response.reason_phrase}"[:ERROR_TEXT_LIMIT]
    parts = [
        str(body.get(key)) for key in ("title", "detail") if isinstance(body.get(key), str) and body.get(key)
    ]
    reason = ": ".join(parts)
    errors = body.get("errors")
    if isinstance(errors, list):
        messages = [
            str(error.get("message") or error.get("detail"))
            for error in errors
            if isinstance(error, Mapping) and (error.get("message") or error.get("detail"))
        ]
        if messages:
            reason = f"{reason}; {'; '.join(messages)}" if reason else "; ".join(messages)
    return f"{response.status_code} {reason or response.reason_phrase}"[:ERROR_TEXT_LIMIT]


class XHTTP(PlatformHTTP):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_response: httpx.Response | None = None
        self._client.event_hooks["response"].append(self._keep)

    def _keep(self, response: httpx.Response) -> None:
        self.last_response = response

    def request(self, method: str, url: str, *, write: bool = False, **kwargs: Any) -> httpx.Response:
        self.last_response = None
        try:
            return super().request(method, url, write=write, **kwargs)
        except AuthenticationFailed:
            raise
        except PermanentError as exc:
            response = self.last_response
            if response is None or not 400 <= response.status_code < 500:
                raise
            response.read()
            raise PermanentError(x_error_text(response)) from exc
