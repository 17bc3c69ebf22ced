"""Generic webhook connector: messages arrive signed by POST, replies leave signed by POST.

Inbound (``parse_webhook``): ``{"messages": [{"id", "author": {"id", "handle", "name"}, "text",
"created_at", "in_reply_to"?, "conversation_id"?, "private"?}]}``. An item that does not fit
becomes a RejectedItem with the reason; the rest of the delivery is ingested. A body that is
not JSON, or not that shape, raises :class:`InvalidWebhook` and nothing of it is ingested.

Outbound (``send_reply``): the reply is POSTed as JSON to ``Source.config["reply_url"]``,
signed like inbound deliveries and with an ``Idempotency-Key`` header; the receiver answers
``{"id": ...}`` and must answer a repeated key with the same id (so a retry after a timeout
posts once, which is why ``find_sent`` need not look anything up).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from inbox.connectors.base import (
    AuthorIdentity,
    Connector,
    FetchResult,
    InboundMessage,
    InvalidWebhook,
    OutcomeUnknown,
    PermanentError,
    RejectedItem,
    SendResult,
    webhook_json,
)
from inbox.connectors.generic import signature
from inbox.connectors.http import PlatformHTTP
from inbox.connectors.registry import register

if TYPE_CHECKING:
    from inbox.models import OutboundDelivery

#: The only event type so far; a body may name it in ``"type"`` (or leave it out).
EVENT_TYPES = ("messages",)


class _BadItem(ValueError):
    pass


def _string(item: Mapping[str, Any], key: str, *, required: bool, where: str = "") -> str:
    value = item.get(key)
    name = f"{where}{key}"
    if value is None or value == "":
        if required:
            raise _BadItem(f"{name} is missing")
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _BadItem(f"{name} must be a string, got {type(value).__name__}")
    return value


def _created_at(value: Any) -> datetime:
    if not isinstance(value, str) or not value:
        raise _BadItem(
            "created_at is missing"
            if value in (None, "")
            else f"created_at must be an ISO 8601 string, got {type(value).__name__}"
        )
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _BadItem(f"created_at is not ISO 8601: {value[:50]!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise _BadItem(f"created_at has no time zone offset (add Z or +00:00): {value[:50]!r}")
    return moment


@register
class GenericConnector(Connector):
    platform: ClassVar[str] = "generic"
    supports_polling: ClassVar[bool] = False
    supports_webhooks: ClassVar[bool] = True

    # --- Configuration -------------------------------------------------------------

    @property
    def secret(self) -> str:
        value = (self.source.secrets or {}).get("webhook_secret", "")
        return value if isinstance(value, str) else ""

    @cached_property
    def reply_url(self) -> str:
        url = (self.source.config or {}).get("reply_url") or ""
        if not url:
            raise PermanentError("this source takes no replies (no reply_url in its config)")
        if (
            not isinstance(url, str)
            or urlsplit(url).scheme not in ("http", "https")
            or not urlsplit(url).netloc
        ):
            raise PermanentError(f"generic source config: reply_url must be an http(s) URL, got {url!r}")
        return url

    @property
    def require_timestamp(self) -> bool:
        return bool((self.source.config or {}).get("require_timestamp", False))

    # --- Inbound -------------------------------------------------------------------

    def fetch(self, cursor: Any) -> FetchResult:
        raise PermanentError("generic sources receive webhooks; they are never polled")

    def verify_webhook(self, body: bytes, headers: Mapping[str, str], *, now: float | None = None) -> None:
        """Raise ``SignatureRefused`` unless the request is signed with our secret."""
        signature.verify(
            self.secret,
            body,
            signature=headers.get(signature.SIGNATURE_HEADER),
            timestamp=headers.get(signature.TIMESTAMP_HEADER),
            now=time.time() if now is None else now,
            require_timestamp=self.require_timestamp,
        )

    def parse_webhook(self, body: bytes) -> FetchResult:
        """The messages of one delivery, and the items that could not be read."""
        document = webhook_json(body)
        if not isinstance(document, dict):
            raise InvalidWebhook(
                f"unknown event shape: expected a JSON object, got {type(document).__name__}"
            )
        event_type = document.get("type", "messages")
        if event_type not in EVENT_TYPES:
            raise InvalidWebhook(
                f"unknown event type {str(event_type)[:50]!r} (known: {', '.join(EVENT_TYPES)})"
            )
        items = document.get("messages")
        if not isinstance(items, list):
            keys = ", ".join(sorted(str(k)[:30] for k in document)[:10]) or "none"
            raise InvalidWebhook(
                f'unknown event shape: expected a "messages" list, got keys: {keys}'
                if items is None
                else f'unknown event shape: "messages" must be a list, got {type(items).__name__}'
            )
        messages: list[InboundMessage] = []
        rejected: list[RejectedItem] = []
        for index, item in enumerate(items):
            try:
                messages.append(self._message(item))
            except _BadItem as exc:
                external_id = item.get("id", "") if isinstance(item, dict) else ""
                rejected.append(
                    RejectedItem(
                        reason=f"messages[{index}]: {exc}",
                        raw=item,
                        external_id=str(external_id) if isinstance(external_id, (str, int)) else "",
                    )
                )
        return FetchResult(messages=messages, next_cursor=None, rejected=rejected)

    def _message(self, item: Any) -> InboundMessage:
        if not isinstance(item, dict):
            raise _BadItem(f"item must be an object, got {type(item).__name__}")
        external_id = _string(item, "id", required=True)
        author = item.get("author")
        if not isinstance(author, dict):
            raise _BadItem(
                "author is missing"
                if author is None
                else f"author must be an object, got {type(author).__name__}"
            )
        author_id = _string(author, "id", required=True, where="author.")
        text = item.get("text")
        if not isinstance(text, str):
            raise _BadItem(
                "text is missing" if text is None else f"text must be a string, got {type(text).__name__}"
            )
        private = item.get("private", False)
        if not isinstance(private, bool):
            raise _BadItem(f"private must be true or false, got {private!r}"[:200])
        conversation_id = _string(item, "conversation_id", required=False)
        if private and not conversation_id:
            # One private thread per customer, so their messages stay one ticket.
            conversation_id = f"private:{author_id}"
        return InboundMessage(
            external_id=external_id,
            author=AuthorIdentity(
                external_id=author_id,
                handle=_string(author, "handle", required=False, where="author."),
                display_name=_string(author, "name", required=False, where="author."),
            ),
            text=text,
            created_at=_created_at(item.get("created_at")),
            is_public=not private,
            in_reply_to_external_id=_string(item, "in_reply_to", required=False),
            conversation_id=conversation_id,
            author_is_brand=bool(self.source.account_id) and author_id == self.source.account_id,
            raw=item,
        )

    # --- Outbound ------------------------------------------------------------------

    def _http(self) -> PlatformHTTP:
        seconds = (self.source.config or {}).get("timeout_seconds") or settings.WEBCARE[
            "HTTP_TIMEOUT_SECONDS"
        ]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise PermanentError(
                f"generic source config: timeout_seconds must be a positive number, got {seconds!r}"
            )
        return PlatformHTTP("", timeout=httpx.Timeout(seconds, connect=min(seconds, 5.0)))

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        url = self.reply_url
        if not self.secret:
            raise PermanentError("generic source has no webhook_secret to sign replies with")
        message = delivery.message
        parent = message.in_reply_to if message.in_reply_to_id else None
        payload = {
            "id": str(delivery.idempotency_key),
            "text": message.text,
            "in_reply_to": message.in_reply_to_external_id or (parent.external_id if parent else ""),
            "conversation_id": message.conversation_id or (parent.conversation_id if parent else ""),
            "private": not message.is_public,
            "created_at": message.created_at.isoformat() if message.created_at else None,
        }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": str(delivery.idempotency_key),
            signature.TIMESTAMP_HEADER: timestamp,
            signature.SIGNATURE_HEADER: signature.sign(self.secret, body, timestamp),
        }
        http = self._http()
        try:
            answer = http.json("POST", url, write=True, content=body, headers=headers)
        finally:
            http.close()
        platform_id = answer.get("id") if isinstance(answer, dict) else None
        if isinstance(platform_id, int) and not isinstance(platform_id, bool):
            platform_id = str(platform_id)
        if not isinstance(platform_id, str) or not platform_id:
            # The receiver took the request but said nothing we can keep: the post may exist.
            raise OutcomeUnknown(f"reply_url answered without an id: {str(answer)[:200]!r}")
        return SendResult(platform_id=platform_id, raw=answer)

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        # The receiver dedupes on Idempotency-Key: posting again returns the first post's id.
        return None
