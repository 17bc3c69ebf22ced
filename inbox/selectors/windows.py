"""Reply windows: whether a private reply can still be sent (``inbox.connectors.limits``).

The composer shows the window, ``reply_create`` refuses a reply into a closed one, and the
Meta connectors read it again at send time (a queued reply may wait past the edge) to pick
a normal response, the HUMAN_AGENT tag, or a clear "window closed" error.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Max

from inbox.connectors.limits import ReplyWindow, WindowState, reply_window
from inbox.models import Message


def customer_wrote_at(answering: Message) -> datetime | None:
    """What a window is counted from when answering ``answering`` privately: the comment
    itself for a public comment; for a private conversation, the customer's newest message
    in it (a later message reopens the window)."""
    if answering.is_public:
        return answering.created_at
    inbound = Message.objects.filter(
        source_id=answering.source_id, direction=Message.Direction.INBOUND, is_public=False
    )
    if answering.conversation_id:
        inbound = inbound.filter(conversation_id=answering.conversation_id)
    elif answering.ticket_id is not None:
        inbound = inbound.filter(ticket_id=answering.ticket_id)
    else:
        return answering.created_at
    newest = inbound.aggregate(newest=Max("created_at"))["newest"]
    return max(newest, answering.created_at) if newest is not None else answering.created_at


def window_for_reply(
    *, platform: str, is_public: bool, answering: Message | None, now: datetime
) -> ReplyWindow:
    """The window a reply of this kind to ``answering`` falls in at ``now``."""
    if answering is None or is_public:
        return ReplyWindow(WindowState.NONE)
    return reply_window(
        platform,
        is_public=is_public,
        answering_is_public=answering.is_public,
        customer_wrote_at=customer_wrote_at(answering),
        now=now,
    )
