"""Facebook Page comments, Messenger and Instagram: webhooks in, Graph API replies out.

One connector class per platform (``facebook``, ``messenger``, ``instagram``), all fed by
the Meta app's webhook (``inbox.connectors.meta.webhook``); none is polled. Each reads
its part of a delivery with ``parse_webhook`` (``inbox.connectors.meta.parse``).

Replies (``{graph_url}/{version}/...``, the Page access token as ``access_token``):

* Facebook public: ``POST /{top-level comment}/comments`` ``{"message"}`` → ``{"id"}``
  (Graph nests one level, so a reply to a reply answers the top-level comment);
* Facebook private (a private reply to a comment, once, within 7 days):
  ``POST /{page-id}/messages`` ``{"recipient": {"comment_id"}, "message": {"text"}}``;
* Messenger: ``POST /{page-id}/messages`` ``{"recipient": {"id": psid}, "messaging_type":
  "RESPONSE", "message": {"text"}}``; 24 hours to 7 days after the customer's last message
  ``"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"``; later the reply fails with a
  reason the agent can act on, and nothing is posted;
* Instagram public: ``POST /{top-level comment}/replies`` ``{"message"}`` → ``{"id"}``;
* Instagram private: ``POST /me/messages`` (``me`` is the Page the account is linked to,
  whose token the source holds) to ``recipient.comment_id`` (private reply to a comment) or
  ``recipient.id`` = IGSID (a DM, with the same windows as Messenger).

Graph takes no idempotency key: after a timeout ``find_sent`` reads the thread (comments)
or the conversation (messages) for the brand's post with the same text made since the
first attempt, so a reply is posted once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from django.utils import timezone

from inbox.connectors.base import (
    Connector,
    FetchResult,
    InvalidWebhook,
    OutcomeUnknown,
    PermanentError,
    SendResult,
)
from inbox.connectors.limits import HUMAN_AGENT_TAG, WindowState
from inbox.connectors.meta.graph import GraphClient
from inbox.connectors.meta.parse import BadItem, EntryReader, moment
from inbox.connectors.meta.webhook import entry_id, read_document
from inbox.connectors.registry import register

if TYPE_CHECKING:
    from inbox.models import Message, OutboundDelivery

#: A post found after a timeout may carry a server time a little before our first attempt.
FIND_SENT_SLACK = timedelta(minutes=2)
#: Comments and conversation messages read when looking for a lost post.
FIND_SENT_LIMIT = 50


class MetaConnector(Connector):
    """What the three Meta platforms share: webhook parsing, the Graph client, find_sent."""

    supports_polling: ClassVar[bool] = False
    supports_webhooks: ClassVar[bool] = True
    #: The ``object`` of the deliveries this platform reads.
    webhook_object: ClassVar[str]
    #: Entry key this platform reads: "changes", "messaging", or both (Instagram).
    entry_keys: ClassVar[tuple[str, ...]]

    _graph: GraphClient | None = None

    # --- Plumbing --------------------------------------------------------------------

    @property
    def graph(self) -> GraphClient:
        if self._graph is None:
            self._graph = GraphClient(self.source)
        return self._graph

    def close(self) -> None:
        if self._graph is not None:
            self._graph.close()
            self._graph = None

    @property
    def account_id(self) -> str:
        account = (self.source.account_id or "").strip()
        if not account:
            what = "Instagram professional account id" if self.platform == "instagram" else "Page id"
            raise PermanentError(
                f"{self.platform} source {self.source.name!r} has no account id (the {what})"
            )
        return account

    def fetch(self, cursor: Any) -> FetchResult:
        raise PermanentError(f"{self.platform} sources receive Meta webhooks; they are never polled")

    # --- Inbound ---------------------------------------------------------------------

    def parse_webhook(self, body: bytes) -> FetchResult:
        document = read_document(body)
        if document["object"] != self.webhook_object:
            raise InvalidWebhook(
                f"{self.platform} sources read object {self.webhook_object!r}, got {document['object']!r}"
            )
        account = self.account_id
        reader = EntryReader(platform=self.platform, account_id=account)
        ignored: list[str] = []
        for index, entry in enumerate(document["entry"]):
            owner = entry_id(entry)
            if owner != account:
                ignored.append(
                    f"entry[{index}]: for account {owner[:50] or '(none)'!r}, not this source's ({account})"
                )
                continue
            for key in self.entry_keys:
                items = entry.get(key)
                if items is None:
                    continue
                if not isinstance(items, list):
                    reader.reject(f"entry[{index}].{key}", BadItem("must be a list"), items)
                    continue
                for position, item in enumerate(items):
                    where = f"entry[{index}].{key}[{position}]"
                    try:
                        if not isinstance(item, dict):
                            raise BadItem(f"must be an object, got {type(item).__name__}")
                        self._read(reader, key, item, entry.get("time"))
                    except BadItem as exc:
                        reader.reject(where, exc, item, _item_id(item))
        return FetchResult(
            messages=reader.messages,
            next_cursor=None,
            rejected=reader.rejected,
            ignored=ignored + reader.notes.lines(),
        )

    def _read(self, reader: EntryReader, key: str, item: dict[str, Any], entry_time: Any) -> None:
        raise NotImplementedError

    # --- Outbound --------------------------------------------------------------------

    def _answering(self, delivery: OutboundDelivery) -> Message:
        answering = delivery.message.in_reply_to
        if answering is None or not answering.external_id:
            raise PermanentError("this reply answers no customer message, so Meta has nowhere to post it")
        return answering

    @staticmethod
    def _customer_id(answering: Message) -> str:
        """The customer's id on the platform (PSID, IGSID or Facebook user id)."""
        return answering.author_contact.external_id if answering.author_contact_id else ""

    def _conversation_user(self, answering: Message) -> str:
        # The parse keeps the customer's PSID/IGSID as the conversation id (echoes included).
        return answering.conversation_id or self._customer_id(answering)

    @staticmethod
    def _top_level(answering: Message) -> str:
        # The parse keeps the top-level comment as the thread id.
        return answering.conversation_id or answering.external_id

    def _window(self, delivery: OutboundDelivery, answering: Message):
        from inbox.selectors.windows import window_for_reply

        window = window_for_reply(
            platform=self.platform,
            is_public=delivery.message.is_public,
            answering=answering,
            now=timezone.now(),
        )
        if window.state == WindowState.CLOSED:
            wrote = timezone.localtime(window.counted_from).strftime("%Y-%m-%d %H:%M %Z")
            if answering.is_public:
                raise PermanentError(
                    f"the private reply window is closed: the comment was written on {wrote}, and "
                    "Meta allows a private reply to a comment only within 7 days of it. Answer in "
                    "public, or wait until the customer writes to the brand in private."
                )
            raise PermanentError(
                f"the reply window is closed: the customer last wrote on {wrote}, and Meta allows "
                "replies only up to 7 days after the customer's last message (after 24 hours with "
                "the human agent tag). The customer must write again before the brand can answer."
            )
        return window

    def _comment_reply(self, path: str, text: str) -> SendResult:
        answer = self.graph.post(path, {"message": text})
        return SendResult(platform_id=_id_from(answer, "id"), raw=answer)

    def _message(self, path: str, recipient: dict[str, str], text: str, window) -> SendResult:
        body: dict[str, Any] = {"recipient": recipient}
        if "id" in recipient:
            if window.state == WindowState.TAGGED:
                body["messaging_type"] = "MESSAGE_TAG"
                body["tag"] = window.tag or HUMAN_AGENT_TAG
            else:
                body["messaging_type"] = "RESPONSE"
        body["message"] = {"text": text}
        answer = self.graph.post(path, body)
        return SendResult(platform_id=_id_from(answer, "message_id"), raw=answer)

    # --- find_sent -------------------------------------------------------------------

    def _since(self, delivery: OutboundDelivery) -> datetime:
        first = delivery.attempt_log.order_by("started_at").values_list("started_at", flat=True).first()
        return (first or delivery.created_at) - FIND_SENT_SLACK

    def _taken(self, delivery: OutboundDelivery, candidates: list[str]) -> set[str]:
        """Which of ``candidates`` other deliveries of this source already own (a reply with
        the same text sent earlier)."""
        from inbox.models import OutboundDelivery as Delivery

        return set(
            Delivery.objects.filter(source_id=delivery.source_id, platform_id__in=candidates)
            .exclude(pk=delivery.pk)
            .values_list("platform_id", flat=True)
        )

    def _match(
        self, delivery: OutboundDelivery, items: Any, *, text_key: str, time_key: str, brand_ids: set[str]
    ) -> SendResult | None:
        if not isinstance(items, list):
            return None
        candidates = [str(item.get("id")) for item in items if isinstance(item, dict) and item.get("id")]
        since, taken = self._since(delivery), self._taken(delivery, candidates)
        text = delivery.message.text.strip()
        for item in items:
            if not isinstance(item, dict):
                continue
            author = item.get("from")
            author_id = str(author.get("id", "")) if isinstance(author, dict) else ""
            found_id = str(item.get("id") or "")
            if not found_id or found_id in taken or author_id not in brand_ids:
                continue
            body = item.get(text_key)
            if not isinstance(body, str) or body.strip() != text:
                continue
            try:
                created = moment(item.get(time_key), time_key)
            except BadItem:
                continue
            if created >= since:
                return SendResult(platform_id=found_id, raw=item)
        return None

    def _find_comment(
        self, delivery: OutboundDelivery, edge: str, fields: str, text_key: str, time_key: str
    ) -> SendResult | None:
        target = self._top_level(self._answering(delivery))
        params: dict[str, Any] = {"fields": fields, "limit": FIND_SENT_LIMIT}
        if edge == "comments":
            params["order"] = "reverse_chronological"
        answer = self.graph.get(f"{target}/{edge}", params)
        items = answer.get("data") if isinstance(answer, dict) else None
        return self._match(delivery, items, text_key=text_key, time_key=time_key, brand_ids={self.account_id})

    def _find_message(
        self, delivery: OutboundDelivery, owner: str, user_id: str, brand_ids: set[str], **extra: str
    ) -> SendResult | None:
        answer = self.graph.get(
            f"{owner}/conversations",
            {
                "user_id": user_id,
                **extra,
                "fields": f"messages.limit({FIND_SENT_LIMIT}){{id,message,from,created_time}}",
            },
        )
        conversations = answer.get("data") if isinstance(answer, dict) else None
        for conversation in conversations if isinstance(conversations, list) else []:
            messages = conversation.get("messages") if isinstance(conversation, dict) else None
            items = messages.get("data") if isinstance(messages, dict) else None
            found = self._match(
                delivery, items, text_key="message", time_key="created_time", brand_ids=brand_ids
            )
            if found is not None:
                return found
        return None


def _item_id(item: Any) -> str:
    if not isinstance(item, dict):
        return ""
    value = item.get("value") if isinstance(item.get("value"), dict) else {}
    message = item.get("message") if isinstance(item.get("message"), dict) else {}
    for candidate in (value.get("comment_id"), value.get("id"), message.get("mid")):
        if isinstance(candidate, (str, int)) and not isinstance(candidate, bool) and candidate:
            return str(candidate)
    return ""


def _id_from(answer: Any, key: str) -> str:
    value = answer.get(key) if isinstance(answer, dict) else None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value:
        # Meta took the request but said nothing we can keep: the post may exist.
        raise OutcomeUnknown(f"Meta answered without {key!r}: {str(answer)[:200]!r}")
    return value


@register
class FacebookConnector(MetaConnector):
    """Comments on the Page's posts (``feed``), public replies and private replies."""

    platform: ClassVar[str] = "facebook"
    webhook_object: ClassVar[str] = "page"
    entry_keys: ClassVar[tuple[str, ...]] = ("changes",)

    def _read(self, reader: EntryReader, key: str, item: dict[str, Any], entry_time: Any) -> None:
        field = item.get("field")
        if field != "feed":
            reader.notes.add(f"page {reader.account_id}: field {str(field)[:50]!r} is not ingested")
            return
        reader.facebook_change(item, entry_time)

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        answering = self._answering(delivery)
        text = delivery.message.text
        if delivery.message.is_public:
            return self._comment_reply(f"{self._top_level(answering)}/comments", text)
        if not answering.is_public:
            raise PermanentError(
                "a Facebook source answers comments; private conversations belong "
                "to the Page's Messenger source"
            )
        window = self._window(delivery, answering)
        return self._message(
            f"{self.account_id}/messages", {"comment_id": answering.external_id}, text, window
        )

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        if delivery.message.is_public:
            return self._find_comment(
                delivery, "comments", "id,message,from,created_time", "message", "created_time"
            )
        answering = self._answering(delivery)
        author = self._customer_id(answering)
        if not author:
            return None
        return self._find_message(delivery, self.account_id, author, {self.account_id})


@register
class MessengerConnector(MetaConnector):
    """The Page's Messenger conversations (private only)."""

    platform: ClassVar[str] = "messenger"
    webhook_object: ClassVar[str] = "page"
    entry_keys: ClassVar[tuple[str, ...]] = ("messaging",)

    def _read(self, reader: EntryReader, key: str, item: dict[str, Any], entry_time: Any) -> None:
        reader.messaging_event(item)

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        if delivery.message.is_public:
            raise PermanentError("Messenger conversations are private: a public reply cannot be sent")
        answering = self._answering(delivery)
        psid = self._conversation_user(answering)
        if not psid:
            raise PermanentError("the customer's Messenger id (PSID) is unknown: nowhere to send")
        window = self._window(delivery, answering)
        return self._message(f"{self.account_id}/messages", {"id": psid}, delivery.message.text, window)

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        psid = self._conversation_user(self._answering(delivery))
        return self._find_message(delivery, self.account_id, psid, {self.account_id}) if psid else None


@register
class InstagramConnector(MetaConnector):
    """An Instagram professional account: comments on its media and its Direct messages."""

    platform: ClassVar[str] = "instagram"
    webhook_object: ClassVar[str] = "instagram"
    entry_keys: ClassVar[tuple[str, ...]] = ("changes", "messaging")

    def _read(self, reader: EntryReader, key: str, item: dict[str, Any], entry_time: Any) -> None:
        if key == "messaging":
            reader.messaging_event(item)
            return
        field = item.get("field")
        if field != "comments":
            reader.notes.add(f"instagram {reader.account_id}: field {str(field)[:50]!r} is not ingested")
            return
        reader.instagram_change(item, entry_time)

    def send_reply(self, delivery: OutboundDelivery) -> SendResult:
        answering = self._answering(delivery)
        text = delivery.message.text
        if delivery.message.is_public:
            if not answering.is_public:
                raise PermanentError("this Instagram conversation is private: there is no comment to answer")
            return self._comment_reply(f"{self._top_level(answering)}/replies", text)
        window = self._window(delivery, answering)
        if answering.is_public:
            return self._message("me/messages", {"comment_id": answering.external_id}, text, window)
        igsid = self._conversation_user(answering)
        if not igsid:
            raise PermanentError("the customer's Instagram id (IGSID) is unknown: nowhere to send")
        return self._message("me/messages", {"id": igsid}, text, window)

    def find_sent(self, delivery: OutboundDelivery) -> SendResult | None:
        answering = self._answering(delivery)
        if delivery.message.is_public:
            return self._find_comment(delivery, "replies", "id,text,from,timestamp", "text", "timestamp")
        user = self._customer_id(answering) if answering.is_public else self._conversation_user(answering)
        if not user:
            return None
        return self._find_message(delivery, "me", user, {self.account_id}, platform="instagram")
