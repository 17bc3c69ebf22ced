"""Reply windows: whether a private reply can still be sent (``inbox.connectors.limits``).

The composer shows the window, ``reply_create`` refuses a reply into a closed one, and the
Meta connectors read it again at send time (a queued reply may wait past the edge) to pick
a normal response, the HUMAN_AGENT tag, or a clear "window closed" error.
"""

from __future__ import annotations

from datetime import datetime

from django.db.models import Max
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from inbox.connectors.limits import ReplyWindow, WindowState, has_reply_windows, reply_window
from inbox.models import Message, Platform


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
    if answering is None or is_public or not has_reply_windows(platform):
        return ReplyWindow(WindowState.NONE)
    return reply_window(
        platform,
        is_public=is_public,
        answering_is_public=answering.is_public,
        customer_wrote_at=customer_wrote_at(answering),
        now=now,
    )


def _when(moment: datetime | None) -> str:
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT") if moment else "?"


def _label(platform: str) -> str:
    return str(Platform(platform).label) if platform in Platform.values else platform


def describe_window(platform: str, window: ReplyWindow, *, answering_is_public: bool) -> str:
    """What the agent needs to know about the window, in their language ("" when none applies)."""
    values = {
        "platform": _label(platform),
        "until": _when(window.closes_at),
        "when": _when(window.counted_from),
    }
    if window.state == WindowState.NONE:
        return ""
    if answering_is_public:
        if window.state == WindowState.CLOSED:
            return _(
                "A private reply to a comment is possible up to 7 days after it (this one is from "
                "%(when)s): reply publicly instead."
            ) % values
        return _("A private reply to this comment is possible once, until %(until)s.") % values
    if window.state == WindowState.OPEN:
        return _(
            "%(platform)s 24-hour window: a normal reply until %(until)s; after that it goes with "
            "the Human Agent tag, up to 7 days after the customer's last message."
        ) % values
    if window.state == WindowState.TAGGED:
        return _(
            "Past the 24-hour window of %(platform)s: this reply goes with the Human Agent tag, "
            "possible until %(until)s."
        ) % values
    return _(
        "%(platform)s takes replies up to 7 days after the customer's last message (%(when)s): "
        "this conversation is closed until they write again."
    ) % values
