"""The Meta app's one webhook endpoint: handshake, signature, and routing to sources.

Meta sends every subscribed Page and Instagram account of the app to one URL:

* ``GET ?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...``: the subscription
  handshake; the challenge is echoed when the verify token is ours;
* ``POST`` with ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`` and
  a body ``{"object": "page" | "instagram", "entry": [{"id", "time", "changes" | "messaging"}]}``.

``route`` splits a verified body into one part per (platform, account): a Page's ``changes``
go to its ``facebook`` source, its ``messaging`` to its ``messenger`` source, an Instagram
account's ``changes`` and ``messaging`` to its ``instagram`` source. Each part is a body in
Meta's own format holding only that account's entries, read by the source's connector.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

from django.conf import settings

from inbox.connectors.base import (
    InvalidWebhook,
    RoutedDelivery,
    SignatureRefused,
    WebhookApp,
    WebhookPart,
    webhook_json,
)
from inbox.connectors.registry import register_webhook_app

SIGNATURE_HEADER = "X-Hub-Signature-256"
#: Meta's challenges are short numbers; anything this long is not a handshake.
MAX_CHALLENGE_LENGTH = 200
OBJECTS = ("page", "instagram")
#: The ``changes`` fields each object's connector ingests; the rest is said in ``ignored``.
INGESTED_FIELDS = {"page": frozenset({"feed"}), "instagram": frozenset({"comments"})}


def signature_for(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _setting(name: str) -> str:
    value = settings.WEBCARE.get(name) or ""
    return value if isinstance(value, str) else ""


def read_document(body: bytes) -> dict[str, Any]:
    """The JSON object of a Meta delivery; ``InvalidWebhook`` when it is not one."""
    document = webhook_json(body)
    if not isinstance(document, dict):
        raise InvalidWebhook(f"body must be a JSON object, got {type(document).__name__}")
    kind = document.get("object")
    if kind not in OBJECTS:
        shown = str(kind)[:50] if isinstance(kind, (str, int)) else type(kind).__name__
        raise InvalidWebhook(f"unknown object type {shown!r} (known: {', '.join(OBJECTS)})")
    if not isinstance(document.get("entry"), list):
        entry = document.get("entry")
        raise InvalidWebhook(
            'no "entry" list in the body'
            if entry is None
            else f'"entry" must be a list, got {type(entry).__name__}'
        )
    return document


def entry_id(entry: Any) -> str:
    """The account id of an entry ('' when it has none)."""
    if not isinstance(entry, dict):
        return ""
    value = entry.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if isinstance(value, str) else ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


@register_webhook_app
class MetaWebhookApp(WebhookApp):
    name: ClassVar[str] = "meta"
    platforms: ClassVar[tuple[str, ...]] = ("facebook", "instagram", "messenger")

    def configured(self) -> bool:
        return bool(_setting("META_APP_SECRET") and _setting("META_VERIFY_TOKEN"))

    def verify_subscription(self, params: Mapping[str, str]) -> str:
        expected = _setting("META_VERIFY_TOKEN")
        if not expected:
            raise SignatureRefused("META_VERIFY_TOKEN is not set: the desk cannot confirm a subscription")
        mode = params.get("hub.mode")
        if mode != "subscribe":
            raise SignatureRefused(
                f"hub.mode must be 'subscribe', got {str(mode)[:30]!r}" if mode else "hub.mode is missing"
            )
        token = params.get("hub.verify_token") or ""
        if not token:
            raise SignatureRefused("hub.verify_token is missing")
        if not hmac.compare_digest(token.encode(), expected.encode()):
            raise SignatureRefused("hub.verify_token does not match META_VERIFY_TOKEN")
        challenge = params.get("hub.challenge") or ""
        if not challenge:
            raise SignatureRefused("hub.challenge is missing")
        if len(challenge) > MAX_CHALLENGE_LENGTH or not challenge.isprintable():
            raise SignatureRefused(
                f"hub.challenge is not a handshake challenge (over {MAX_CHALLENGE_LENGTH} characters "
                "or not printable)"
            )
        return challenge

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        secret = _setting("META_APP_SECRET")
        if not secret:
            raise SignatureRefused("META_APP_SECRET is not set: no delivery can be verified")
        header = headers.get(SIGNATURE_HEADER)
        if not header:
            raise SignatureRefused(f"{SIGNATURE_HEADER} header is missing")
        header = header.strip()
        scheme, _, digest = header.partition("=")
        if scheme != "sha256" or len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise SignatureRefused(f"{SIGNATURE_HEADER} is malformed: expected sha256=<64 hex digits>")
        if not hmac.compare_digest(signature_for(secret, body), f"sha256={digest.lower()}"):
            raise SignatureRefused(f"{SIGNATURE_HEADER} does not match the body signed with META_APP_SECRET")

    def route(self, body: bytes) -> RoutedDelivery:
        document = read_document(body)
        kind = document["object"]
        ingested = INGESTED_FIELDS[kind]
        # (platform, account) → entries for that part, in delivery order.
        parts: dict[tuple[str, str], list[dict[str, Any]]] = {}
        ignored: list[str] = []
        for index, entry in enumerate(document["entry"]):
            account = entry_id(entry)
            if not isinstance(entry, dict):
                ignored.append(f"entry[{index}]: not an object (malformed), left out")
                continue
            if not account:
                ignored.append(f"entry[{index}]: no id (malformed), left out")
                continue
            head = {key: entry[key] for key in ("id", "time") if key in entry}
            label = f"{kind} {account}"
            changes = entry.get("changes")
            if changes is not None:
                if not isinstance(changes, list):
                    ignored.append(f"{label}: changes is not a list (malformed), left out")
                else:
                    kept: list[Any] = []
                    skipped: Counter[str] = Counter()
                    for change in changes:
                        field = change.get("field") if isinstance(change, dict) else None
                        if isinstance(field, str) and field not in ingested:
                            skipped[field] += 1
                        else:
                            kept.append(change)  # malformed changes are the connector's to reject
                    for field, count in sorted(skipped.items()):
                        ignored.append(
                            f"{label}: field {field[:50]!r} is not ingested"
                            + (f" ({count} changes)" if count > 1 else "")
                        )
                    if kept:
                        platform = "facebook" if kind == "page" else "instagram"
                        parts.setdefault((platform, account), []).append({**head, "changes": kept})
            messaging = entry.get("messaging")
            if messaging is not None:
                if not isinstance(messaging, list):
                    ignored.append(f"{label}: messaging is not a list (malformed), left out")
                elif messaging:
                    platform = "messenger" if kind == "page" else "instagram"
                    parts.setdefault((platform, account), []).append({**head, "messaging": messaging})
            for other in sorted(set(entry) - {"id", "time", "changes", "messaging"}):
                what = "events for another app of the handover protocol" if other == "standby" else "events"
                ignored.append(f"{label}: {other[:50]!r} {what} are not ingested")
        return RoutedDelivery(
            parts=[
                WebhookPart(
                    platform=platform,
                    account_id=account,
                    body=json.dumps({"object": kind, "entry": entries}, ensure_ascii=False).encode(),
                    summary=_summary(kind, account, entries),
                )
                for (platform, account), entries in parts.items()
            ],
            ignored=ignored,
        )


def _summary(kind: str, account: str, entries: list[dict[str, Any]]) -> str:
    changes = sum(len(e.get("changes", [])) for e in entries)
    events = sum(len(e.get("messaging", [])) for e in entries)
    said = []
    if changes:
        said.append(_plural(changes, "feed change" if kind == "page" else "comment change"))
    if events:
        said.append(_plural(events, "messaging event"))
    return f"{kind} {account}: {', '.join(said)}"
