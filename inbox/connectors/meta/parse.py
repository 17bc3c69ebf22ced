"""Meta webhook bodies → InboundMessages (one source's part of a delivery).

* ``page`` + ``changes`` (field ``feed``, item ``comment``, verb ``add``): Facebook Page comments;
* ``page`` + ``messaging``: Messenger conversations;
* ``instagram`` + ``changes`` (field ``comments``) and ``messaging``: Instagram comments and DMs.

Comments thread by their top-level comment (Facebook and Instagram nest one level: a reply
to a reply is a reply to the top-level comment), so a customer's thread stays one ticket.
Private messages thread by the customer's id (PSID, IGSID). Things the desk skips on
purpose (reactions, edits, deletions, delivery and read receipts) are counted in
``ignored``; items that cannot be read become :class:`RejectedItem` with the reason.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from inbox.connectors.base import AuthorIdentity, InboundMessage, RejectedItem


class BadItem(ValueError):
    pass


def text_of(value: Any, key: str, *, required: bool = True, where: str = "") -> str:
    item = value.get(key) if isinstance(value, dict) else None
    name = f"{where}{key}"
    if item is None or item == "":
        if required:
            raise BadItem(f"{name} is missing")
        return ""
    if isinstance(item, int) and not isinstance(item, bool):
        return str(item)
    if not isinstance(item, str):
        raise BadItem(f"{name} must be a string, got {type(item).__name__}")
    return item


def moment(value: Any, what: str, *, milliseconds: bool | None = None) -> datetime:
    """A Meta timestamp: unix seconds (feed ``created_time``, entry ``time``), milliseconds
    (messaging ``timestamp``), or an ISO string ('2026-11-27T09:15:00+0000')."""
    if isinstance(value, str) and not value.isdigit():
        for pattern in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S.%f%z"):
            try:
                return datetime.strptime(value, pattern)
            except ValueError:
                pass
        raise BadItem(f"{what} is not a time: {value[:40]!r}")
    if isinstance(value, str):
        value = int(value)
    if value is None:
        raise BadItem(f"{what} is missing")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise BadItem(f"{what} must be a unix time, got {str(value)[:40]!r}")
    if milliseconds is None:
        milliseconds = value > 10**11  # seconds will not reach 10**11 before the year 5000
    try:
        return datetime.fromtimestamp(value / 1000 if milliseconds else value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise BadItem(f"{what} is out of range: {value!r}") from None


class Notes:
    """Counts of what was skipped on purpose, said once per kind."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, what: str) -> None:
        self.counts[what] += 1

    def lines(self) -> list[str]:
        return [f"{what} ({count}×)" if count > 1 else what for what, count in self.counts.items()]


class EntryReader:
    """Collects what one source's part of a delivery holds: messages, rejects, skipped things."""

    def __init__(self, *, platform: str, account_id: str) -> None:
        self.platform = platform
        self.account_id = account_id
        self.messages: list[InboundMessage] = []
        self.rejected: list[RejectedItem] = []
        self.notes = Notes()

    def reject(self, where: str, exc: Exception, raw: Any, external_id: str = "") -> None:
        self.rejected.append(RejectedItem(reason=f"{where}: {exc}", raw=raw, external_id=external_id[:200]))

    # --- Comments --------------------------------------------------------------------

    def facebook_change(self, change: dict[str, Any], entry_time: Any) -> None:
        value = change.get("value")
        if not isinstance(value, dict):
            raise BadItem("value must be an object")
        item, verb = value.get("item"), value.get("verb")
        if item != "comment" or verb != "add":
            self.notes.add(f"page {self.account_id}: feed {str(item)[:30]} {str(verb)[:30]} not ingested")
            return
        comment_id = text_of(value, "comment_id")
        author = value.get("from")
        if not isinstance(author, dict):
            raise BadItem(
                "from is missing (Meta leaves it out when the app may not see the author)"
                if author is None
                else "from must be an object"
            )
        author_id = text_of(author, "id", where="from.")
        post_id = text_of(value, "post_id", required=False)
        parent_id = text_of(value, "parent_id", required=False)
        answers_comment = bool(parent_id) and parent_id != post_id
        created = value.get("created_time", entry_time)
        self.messages.append(
            InboundMessage(
                external_id=comment_id,
                author=AuthorIdentity(
                    external_id=author_id, display_name=text_of(author, "name", required=False, where="from.")
                ),
                text=_comment_text(value, "message"),
                created_at=moment(created, "created_time", milliseconds=False),
                is_public=True,
                in_reply_to_external_id=parent_id if answers_comment else "",
                conversation_id=parent_id if answers_comment else comment_id,
                author_is_brand=author_id == self.account_id,
                raw=change,
            )
        )

    def instagram_change(self, change: dict[str, Any], entry_time: Any) -> None:
        value = change.get("value")
        if not isinstance(value, dict):
            raise BadItem("value must be an object")
        comment_id = text_of(value, "id")
        author = value.get("from")
        if not isinstance(author, dict):
            raise BadItem("from is missing" if author is None else "from must be an object")
        author_id = text_of(author, "id", where="from.")
        parent_id = text_of(value, "parent_id", required=False)
        media = value.get("media")
        if media is not None and not isinstance(media, dict):
            raise BadItem("media must be an object")
        self.messages.append(
            InboundMessage(
                external_id=comment_id,
                author=AuthorIdentity(
                    external_id=author_id, handle=text_of(author, "username", required=False, where="from.")
                ),
                text=_comment_text(value, "text"),
                created_at=moment(entry_time, "entry time"),
                is_public=True,
                in_reply_to_external_id=parent_id,
                conversation_id=parent_id or comment_id,
                author_is_brand=author_id == self.account_id,
                raw=change,
            )
        )

    # --- Private messages -------------------------------------------------------------

    def messaging_event(self, event: dict[str, Any]) -> None:
        message = event.get("message")
        if message is None:
            kind = next(
                (
                    k
                    for k in (
                        "delivery",
                        "read",
                        "reaction",
                        "postback",
                        "referral",
                        "optin",
                        "message_edit",
                        "account_linking",
                        "policy_enforcement",
                    )
                    if k in event
                ),
                "unknown",
            )
            self.notes.add(f"{self.platform} {self.account_id}: {kind} events not ingested")
            return
        if not isinstance(message, dict):
            raise BadItem("message must be an object")
        if message.get("is_deleted") or message.get("is_unsupported"):
            what = "deleted (unsent)" if message.get("is_deleted") else "unsupported"
            self.notes.add(f"{self.platform} {self.account_id}: {what} messages not ingested")
            return
        mid = text_of(message, "mid", where="message.")
        sender_id = text_of(event.get("sender"), "id", where="sender.")
        recipient_id = text_of(event.get("recipient"), "id", where="recipient.")
        echo = message.get("is_echo") is True or sender_id == self.account_id
        customer = recipient_id if echo else sender_id
        text = message.get("text")
        if text is not None and not isinstance(text, str):
            raise BadItem(f"message.text must be a string, got {type(text).__name__}")
        if not text:
            text = _attachments_text(message.get("attachments"))
        reply_to = message.get("reply_to")
        in_reply_to = (
            text_of(reply_to, "mid", required=False, where="message.reply_to.")
            if isinstance(reply_to, dict)
            else ""
        )
        self.messages.append(
            InboundMessage(
                external_id=mid,
                author=AuthorIdentity(external_id=sender_id),
                text=text,
                created_at=moment(event.get("timestamp"), "timestamp", milliseconds=True),
                is_public=False,
                in_reply_to_external_id=in_reply_to,
                conversation_id=customer,
                author_is_brand=echo,
                raw=event,
            )
        )


def _comment_text(value: dict[str, Any], key: str) -> str:
    text = value.get(key)
    if text is not None and not isinstance(text, str):
        raise BadItem(f"{key} must be a string, got {type(text).__name__}")
    if text:
        return text
    # A comment that is only a photo, a video or a sticker.
    for kind in ("photo", "video"):
        url = value.get(kind)
        if isinstance(url, str) and url:
            return f"[{kind}] {url}"
    raise BadItem(f"{key} is missing and the comment has no photo or video")


def _attachments_text(attachments: Any) -> str:
    if attachments is None or attachments == []:
        raise BadItem("message has neither text nor attachments")
    if not isinstance(attachments, list):
        raise BadItem("message.attachments must be a list")
    lines = []
    for attachment in attachments:
        if not isinstance(attachment, dict):
            raise BadItem("message.attachments holds something that is not an object")
        kind = attachment.get("type") if isinstance(attachment.get("type"), str) else "attachment"
        payload = attachment.get("payload") if isinstance(attachment.get("payload"), dict) else {}
        url = payload.get("url") if isinstance(payload.get("url"), str) else ""
        title = attachment.get("title") if isinstance(attachment.get("title"), str) else ""
        lines.append(" ".join(part for part in (f"[{kind}]", title, url) if part))
    return "\n".join(lines)
