"""Pure checks and clean-ups applied to inbound items before they touch the database."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inbox.connectors.base import AuthorIdentity, InboundMessage

REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
_ID_MAX = 200
_NAME_MAX = 300


class InvalidItem(ValueError):
    """The item cannot be ingested; the message says precisely why."""


def clean_text(value: str) -> str:
    """Make text storable everywhere without losing it.

    PostgreSQL refuses NUL in text and JSON, and UTF-8 cannot encode lone
    surrogates; both become U+FFFD. Everything else (emoji, RTL marks,
    zero-width joiners, HTML) is kept exactly as written.
    """
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub(REPLACEMENT, value)
    return value


def clean_json(value: Any) -> Any:
    """Deep copy of a JSON-like value with every string passed through clean_text."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, Mapping):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    # Anything else (datetimes, decimals) is kept as its text form.
    return clean_text(str(value))


def dump_for_operator(value: Any) -> str:
    """JSON text of a rejected item; never fails, whatever the item is."""
    try:
        return json.dumps(value, ensure_ascii=True, default=repr)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _identifier(value: Any, field: str, *, required: bool) -> str:
    if value is None or value == "":
        if required:
            raise InvalidItem(f"{field} is missing")
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise InvalidItem(f"{field} must be a string, got {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise InvalidItem(f"{field} is blank")
    if len(value) > _ID_MAX:
        raise InvalidItem(f"{field} is {len(value)} characters long (at most {_ID_MAX})")
    if "\x00" in value or any(ch.isspace() for ch in value):
        raise InvalidItem(f"{field} contains whitespace or NUL: {value!r}")
    return value


def _name(value: Any, field: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidItem(f"{field} must be a string, got {type(value).__name__}")
    value = clean_text(value).strip()
    # A name is a label, not content: an absurdly long one is cut, not rejected.
    return value[: _NAME_MAX - 1] + "…" if len(value) > _NAME_MAX else value


@dataclass(slots=True)
class CleanItem:
    external_id: str
    author: AuthorIdentity
    text: str
    created_at: datetime
    is_public: bool
    in_reply_to_external_id: str
    conversation_id: str
    author_is_brand: bool
    language: str
    raw: dict
    # Set by ingest (language detection and sentiment run on customer messages only).
    sentiment: float | None = None


def clean_item(item: Any, *, max_text_length: int) -> CleanItem:
    """Validate one InboundMessage; raise InvalidItem with the reason when it is unusable."""
    if not isinstance(item, InboundMessage):
        raise InvalidItem(f"expected an InboundMessage, got {type(item).__name__}")
    external_id = _identifier(item.external_id, "external_id", required=True)
    author = item.author
    if not isinstance(author, AuthorIdentity):
        raise InvalidItem("author is missing or not an AuthorIdentity")
    author_id = _identifier(author.external_id, "author.external_id", required=True)
    followers = author.followers_count
    if followers is not None and (
        isinstance(followers, bool) or not isinstance(followers, int) or followers < 0
    ):
        raise InvalidItem(f"author.followers_count must be a non-negative integer, got {followers!r}")
    if not isinstance(item.text, str):
        raise InvalidItem(f"text must be a string, got {type(item.text).__name__}")
    text = clean_text(item.text)
    if len(text) > max_text_length:
        raise InvalidItem(f"text is {len(text)} characters long (at most {max_text_length})")
    created_at = item.created_at
    if not isinstance(created_at, datetime):
        raise InvalidItem(f"created_at must be a datetime, got {type(created_at).__name__}")
    if created_at.tzinfo is None or created_at.utcoffset() is None:
        raise InvalidItem("created_at has no time zone")
    in_reply_to = _identifier(item.in_reply_to_external_id, "in_reply_to_external_id", required=False)
    if in_reply_to == external_id:
        in_reply_to = ""
    language = item.language or author.language or ""
    if not isinstance(language, str) or len(language) > 10:
        raise InvalidItem(f"language must be a short code, got {language!r}")
    raw = item.raw if item.raw is not None else {}
    if not isinstance(raw, Mapping):
        raise InvalidItem(f"raw must be a mapping, got {type(raw).__name__}")
    return CleanItem(
        external_id=external_id,
        author=AuthorIdentity(
            external_id=author_id,
            handle=_name(author.handle, "author.handle"),
            display_name=_name(author.display_name, "author.display_name"),
            followers_count=followers,
            verified=bool(author.verified),
            language=language,
        ),
        text=text,
        created_at=created_at,
        is_public=bool(item.is_public),
        in_reply_to_external_id=in_reply_to,
        conversation_id=_identifier(item.conversation_id, "conversation_id", required=False),
        author_is_brand=bool(item.author_is_brand),
        language=language.lower(),
        raw=clean_json(raw),
    )
