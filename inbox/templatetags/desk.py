"""Template filters and tags of the desk pages.

Social text is hostile: every filter here escapes first and only then adds markup of
its own (links, line breaks), and the result is passed through an allow-list sanitiser
(nh3) as a second line of defence.
"""

from __future__ import annotations

from datetime import datetime

import nh3
from django import template
from django.utils import timezone
from django.utils.html import escape, urlize
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import normalize_newlines

register = template.Library()

_LINK_REL = "noopener noreferrer nofollow ugc"


@register.filter(is_safe=True)
def social_text(value: object) -> SafeString:
    """A customer's or agent's text as HTML: escaped, http(s) links clickable, line breaks kept.

    Links open in a new tab with ``rel="noopener noreferrer nofollow ugc"``; any scheme other
    than http and https (``javascript:``, ``data:``) never becomes a link.
    """
    text = normalize_newlines("" if value is None else str(value))
    linked = urlize(text, trim_url_limit=60, autoescape=True)
    html = linked.replace("\n", "<br>")
    cleaned = nh3.clean(
        html,
        tags={"a", "br"},
        attributes={"a": {"href", "title"}},
        url_schemes={"http", "https"},
        link_rel=_LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )
    return mark_safe(cleaned)  # noqa: S308 - built from escaped text and sanitised above


@register.inclusion_tag("inbox/desk/_sla_clock.html")
def sla_clock(ticket: object, now: datetime | None = None) -> dict:
    """The SLA clock of a ticket: its nearest open target, ticking in the browser.

    Green while on track, orange once the SLA evaluation marked it at risk (80% of the
    target's business time used), red once breached or past due.
    """
    now = now or timezone.now()
    status = getattr(ticket, "status", "")
    due = None
    if status in ("new", "open"):
        if getattr(ticket, "first_response_at", None) is None and getattr(ticket, "first_response_due_at", None):
            due = ticket.first_response_due_at
        elif getattr(ticket, "next_response_due_at", None):
            due = ticket.next_response_due_at
        elif getattr(ticket, "resolution_due_at", None):
            due = ticket.resolution_due_at
    state = getattr(ticket, "sla_state", "") or ""
    if due is not None and due <= now:
        state = "breached"
    return {"due": due, "state": state, "paused": status == "pending", "ticket": ticket}


@register.simple_tag
def bidi(value: object) -> SafeString:
    """A name or handle isolated from the surrounding text direction (RTL names stay readable)."""
    return mark_safe(f"<bdi>{escape('' if value is None else value)}</bdi>")  # noqa: S308 - escaped
