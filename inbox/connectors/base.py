"""The connector interface every platform implements, and the types it speaks.

A connector translates between one platform's wire format and the desk:
``fetch`` turns a page of platform data into normalised :class:`InboundMessage`
objects (anything it cannot parse becomes a :class:`RejectedItem`), and
``send_reply`` posts one outbound delivery. Errors are typed so callers can tell
"try again later" from "this will never work".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

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


@dataclass(frozen=True, slots=True)
class SendResult:
    platform_id: str
    raw: Mapping[str, Any] = field(default_factory=dict)


class ConnectorError(Exception):
    """Base class of every error a connector raises."""


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


class Connector:
    """Interface of a platform connector. Subclasses set ``platform`` and implement the verbs."""

    platform: ClassVar[str]
    #: Connectors that only receive webhooks do not poll.
    supports_polling: ClassVar[bool] = True

    def __init__(self, source: Source) -> None:
        self.source = source

    def fetch(self, cursor: Any) -> FetchResult:
        """Return the messages after ``cursor`` and the cursor to store once they committed."""
        raise NotImplementedError

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        """Post one reply. Raise RetryableError, OutcomeUnknown or PermanentError on failure."""
        raise NotImplementedError

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        """After an unknown outcome: the post made for this delivery, if the platform has it."""
        return None
