"""The connector interface every platform implements, and the types it speaks.

A connector translates between one platform's wire format and the desk:
``fetch`` turns a page of platform data into normalised :class:`InboundMessage`
objects (anything it cannot parse becomes a :class:`RejectedItem`), and
``send_reply`` posts one outbound delivery. Errors are typed so callers can tell
"try again later" from "this will never work".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self

if TYPE_CHECKING:
    from inbox.models import OutboundDelivery, Source


@dataclass(frozen=True, slots=True)
class AuthorIdentity:
    """Who wrote a message, as the platform describes them."""

    external_id: str
    handle: str = ""
    display_name: str = ""
    followers_count: int | None = None
    verified: bool = False
    language: str = ""


@dataclass(slots=True)
class InboundMessage:
    """One platform message, normalised. The source it came from is given beside the batch."""

    external_id: str
    author: AuthorIdentity
    text: str
    created_at: datetime
    is_public: bool = True
    in_reply_to_external_id: str = ""
    # Conversation or private-thread id where the platform has one.
    conversation_id: str = ""
    # Written by the brand's own account (an echo of our reply, or history).
    author_is_brand: bool = False
    language: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RejectedItem:
    """A platform item the connector could not turn into an InboundMessage."""

    reason: str
    raw: Any
    external_id: str = ""


@dataclass(slots=True)
class FetchResult:
    messages: list[InboundMessage]
    next_cursor: Any
    rejected: list[RejectedItem] = field(default_factory=list)
    # True when the platform has more right now (the poller fetches again at once).
    has_more: bool = False
    # What the connector skipped on purpose, in words (reactions, edits, deletions): no
    # message, no dead letter, but said on the webhook delivery so nothing vanishes unseen.
    ignored: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SendResult:
    platform_id: str
    raw: Mapping[str, Any] = field(default_factory=dict)


class ConnectorError(Exception):
    """Base class of every error a connector raises.

    ``response`` is the platform's HTTP answer that caused it, when there was one
    (``inbox.connectors.http.PlatformHTTP`` sets it), for a connector that must read
    platform-specific error codes.
    """

    response: Any = None


class RetryableError(ConnectorError):
    """Transient: timeouts, 5xx, 429. ``retry_after`` is seconds from now, when known."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """The platform said 429 (or an equivalent); ``retry_after`` holds its reset time."""


class OutcomeUnknown(RetryableError):
    """A write timed out: the platform may or may not have posted it."""


class PermanentError(ConnectorError):
    """Will fail again the same way (validation, not found, window closed)."""


class AuthenticationFailed(PermanentError):
    """The credentials were refused: the source needs re-authorization."""


class NotSupported(PermanentError):
    """The platform (or this connector) cannot do what was asked, e.g. no profile note."""


class InvalidWebhook(PermanentError):
    """A whole webhook delivery cannot be read (not JSON, unknown object or event type).
    Nothing of it is ingested; the delivery is kept, rejected, with this reason."""


def webhook_json(body: bytes) -> Any:
    """The JSON value of a webhook body; :class:`InvalidWebhook` when it is not UTF-8 JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidWebhook(f"body is not UTF-8: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidWebhook(f"body is not valid JSON: {exc}") from None


class SignatureRefused(PermanentError):
    """A webhook request is not signed with our secret (or its verify token is wrong)."""


class Connector:
    """Interface of a platform connector. Subclasses set ``platform`` and implement the verbs.

    A connector may hold an HTTP client: use it as a context manager (or call ``close``)
    so the connection pool is closed when the poll or the send is done.
    """

    platform: ClassVar[str]
    #: Connectors that only receive webhooks do not poll.
    supports_polling: ClassVar[bool] = True
    #: Connectors whose messages arrive as webhook deliveries implement ``parse_webhook``.
    supports_webhooks: ClassVar[bool] = False

    def __init__(self, source: Source) -> None:
        self.source = source

    def close(self) -> None:
        """Release what the connector holds (HTTP connection pools). Safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def fetch(self, cursor: Any) -> FetchResult:
        """Return the messages after ``cursor`` and the cursor to store once they committed."""
        raise NotImplementedError

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        """Post one reply. Raise RetryableError, OutcomeUnknown or PermanentError on failure."""
        raise NotImplementedError

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        """After an unknown outcome: the post made for this delivery, if the platform has it."""
        return None

    def verify_webhook(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`SignatureRefused` unless ``body`` is signed by the platform for this
        source. Only for sources with their own endpoint (generic); app-level endpoints
        (Meta) verify with their :class:`WebhookApp`."""
        raise NotSupported(f"{self.platform} sources take no webhooks")

    def parse_webhook(self, body: bytes) -> FetchResult:
        """The messages of one verified delivery (or of this source's part of it), the items
        that could not be read (``rejected``) and what was skipped on purpose (``ignored``).
        Raise :class:`InvalidWebhook` when the body as a whole cannot be read."""
        raise NotSupported(f"{self.platform} sources take no webhooks")

    def update_profile_note(self, text: str) -> None:
        """Show ``text`` on the brand's profile (e.g. "we answer within 12 minutes"), where the
        platform has such a field. Raise :class:`NotSupported` where it has none."""
        raise NotSupported(f"{self.platform} has no profile note the desk can set")


@dataclass(frozen=True, slots=True)
class WebhookPart:
    """The part of an app-level delivery that belongs to one account (one source)."""

    platform: str
    account_id: str
    #: A body in the platform's own format holding only this account's part; the source's
    #: connector reads it with ``parse_webhook``.
    body: bytes
    #: In words, for the delivery's note: e.g. "page 123: 2 feed changes".
    summary: str = ""


@dataclass(slots=True)
class RoutedDelivery:
    parts: list[WebhookPart]
    #: What the app skipped on purpose (fields the desk does not ingest), in words.
    ignored: list[str] = field(default_factory=list)


class WebhookApp:
    """One webhook endpoint serving many sources (Meta: every Page and Instagram account of
    one app). It checks the subscription handshake and the app-level signature, and splits
    a delivery into the parts each source's connector reads."""

    #: Stored as ``WebhookDelivery.platform`` for deliveries that arrive before routing.
    name: ClassVar[str]
    #: The source platforms this app's deliveries are routed to.
    platforms: ClassVar[tuple[str, ...]]

    def configured(self) -> bool:
        """Whether the deployment has the app's secret and verify token."""
        raise NotImplementedError

    def verify_subscription(self, params: Mapping[str, str]) -> str:
        """The handshake (``GET`` with the verify token): return the challenge to echo, or
        raise :class:`SignatureRefused`."""
        raise NotImplementedError

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Raise :class:`SignatureRefused` unless ``body`` is signed with the app secret."""
        raise NotImplementedError

    def route(self, body: bytes) -> RoutedDelivery:
        """Split a verified body by account. Raise :class:`InvalidWebhook` when it cannot be read."""
        raise NotImplementedError
