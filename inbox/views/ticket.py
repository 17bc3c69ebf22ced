"""The ticket view: conversation, customer panel, controls and composer (docs/desk/ticket.md).

Every endpoint works as a plain form post (the page is rendered again, with the error and
the agent's draft, or the browser is redirected back) and, called by ``ticket.js`` with
``X-Requested-With: fetch``, answers with the server-rendered fragment to swap in, or
with the error as plain text and a 400/403/404/409 status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from redis.exceptions import RedisError

from inbox.models import Message, ReplyTemplate, Ticket
from inbox.selectors.collision import viewers_for
from inbox.selectors.realtime import last_event_id
from inbox.selectors.ticket_view import (
    DESK_STATUSES,
    assignable_agent,
    composer_options,
    customers_matching,
    customers_visible_to,
    reply_template_for,
    ticket_delivery,
    ticket_for_view,
    ticket_messages,
    ticket_panel,
)
from inbox.services.assignment import AssignmentError, ticket_reassign
from inbox.services.customers import CustomerError, customer_merge, customer_set_vip
from inbox.services.desk import ticket_mark_seen
from inbox.services.replies import (
    ReplyError,
    ReplyHeldBack,
    delivery_approve,
    delivery_reject,
    delivery_retry,
    note_create,
    reply_create,
)
from inbox.services.tickets import (
    TicketChangeError,
    ticket_change_priority,
    ticket_change_status,
    ticket_change_tags,
)
from inbox.views.common import desk_page

logger = logging.getLogger(__name__)

#: Most message ids one ``messages?ids=`` request may ask for.
MAX_IDS = 200


class BadRequest(ValueError):
    """The request's input is malformed; the message says what (HTTP 400)."""


@dataclass(slots=True)
class Draft:
    """What the agent had in the composer, given back when the page is rendered again."""

    text: str = ""
    kind: str = "reply"
    visibility: str = ""
    reply_template: str = ""
    seen_message_id: int | None = None


# --- Helpers -----------------------------------------------------------------------------------


def _is_fetch(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


def _ticket_or_404(request: HttpRequest, pk: int) -> Ticket:
    ticket = ticket_for_view(user=request.user, ticket_id=pk)
    if ticket is None:
        raise Http404(_("No such ticket, or it is not in your queues."))
    return ticket


def _int(data: QueryDict, name: str, *, required: bool = False) -> int | None:
    raw = data.get(name, "").strip()
    if not raw:
        if required:
            raise BadRequest(_("%(field)s is missing.") % {"field": name})
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            _("%(field)s must be a whole number, not %(value)r.") % {"field": name, "value": raw}
        ) from None
    if value < 0:
        raise BadRequest(_("%(field)s must not be negative.") % {"field": name})
    return value


def _ids(raw: str) -> list[int]:
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if len(parts) > MAX_IDS:
        raise BadRequest(_("Ask for at most %(max)d messages at once.") % {"max": MAX_IDS})
    try:
        ids = [int(part) for part in parts]
    except ValueError:
        raise BadRequest(_("ids must be whole numbers separated by commas.")) from None
    if any(value < 0 for value in ids):
        raise BadRequest(_("ids must not be negative."))
    return ids


def _viewers(ticket: Ticket) -> tuple[list, bool]:
    """Who else has the ticket open (first render; collision.js keeps it live)."""
    try:
        return viewers_for([ticket.pk]).get(ticket.pk, []), True
    except (RedisError, OSError):
        logger.warning("viewers of ticket %s unavailable", ticket.pk, exc_info=True)
        return [], False


def _panel_context(request: HttpRequest, ticket: Ticket) -> dict:
    viewers, viewers_known = _viewers(ticket)
    return {
        "ticket": ticket,
        "panel": ticket_panel(user=request.user, ticket=ticket),
        "viewers": [v for v in viewers if v.user_id != request.user.pk],
        "viewers_known": viewers_known,
    }


def _render_page(
    request: HttpRequest,
    ticket: Ticket,
    *,
    status: int = 200,
    error: str = "",
    draft: Draft | None = None,
    held_back: list[Message] | None = None,
) -> HttpResponse:
    if getattr(request, "desk_last_event_id", None) is None:
        # A form post rendered again is a full page too: it needs the live-update position.
        request.desk_last_event_id = last_event_id()
    messages = ticket_messages(ticket=ticket)
    newest = max((m.pk for m in messages), default=0)
    draft_given = draft is not None
    draft = draft or Draft()
    if held_back:
        # The page shows the new messages highlighted: sending again means "I've read them".
        draft.seen_message_id = newest
    composer = composer_options(ticket=ticket, messages=messages)
    context = {
        **_panel_context(request, ticket),
        "nav": "inbox",
        "messages_list": messages,
        "newest_message_id": newest,
        "composer": composer,
        "draft": draft,
        "seen_message_id": draft.seen_message_id if draft.seen_message_id is not None else newest,
        "held_back_ids": {m.pk for m in held_back or ()},
        # A failed reply's error is shown at the composer, next to the draft it is about.
        "page_error": "" if draft_given else error,
        "composer_error": error if draft_given else "",
    }
    return render(request, "inbox/desk/ticket.html", context, status=status)


def _fail(
    request: HttpRequest, ticket: Ticket, message: str, status: int, *, draft: Draft | None = None
) -> HttpResponse:
    if _is_fetch(request):
        return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    return _render_page(request, ticket, status=status, error=message, draft=draft)


def _back(ticket: Ticket, anchor: str = "") -> HttpResponse:
    return redirect(reverse("inbox:ticket", args=[ticket.pk]) + anchor, permanent=False)


def _panel_response(request: HttpRequest, ticket_id: int) -> HttpResponse:
    ticket = _ticket_or_404(request, ticket_id)
    if not _is_fetch(request):
        return _back(ticket)
    return render(request, "inbox/desk/_ticket_panel.html", _panel_context(request, ticket))


def _messages_response(request: HttpRequest, ticket: Ticket, messages: list[Message], *, status: int = 200):
    return render(
        request, "inbox/desk/_messages.html", {"ticket": ticket, "messages_list": messages}, status=status
    )


# --- Page and fragments ------------------------------------------------------------------------


@desk_page
@require_GET
def ticket_page(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = _ticket_or_404(request, pk)
    ticket_mark_seen(ticket=ticket, user=request.user)
    return _render_page(request, ticket)


@login_required
@require_GET
def ticket_messages_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    """``?after=<id>``: messages newer than that; ``?ids=1,2``: those messages (delivery
    state changed); both may be given. One of them is required."""
    ticket = _ticket_or_404(request, pk)
    try:
        after = _int(request.GET, "after")
        ids = _ids(request.GET.get("ids", ""))
    except BadRequest as exc:
        return HttpResponse(str(exc), status=400, content_type="text/plain; charset=utf-8")
    if after is None and not ids:
        return HttpResponse(
            _("Give after=<message id> or ids=<message ids>."),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    return _messages_response(request, ticket, ticket_messages(ticket=ticket, after_id=after, ids=ids))


@login_required
@require_GET
def ticket_panel_fragment(request: HttpRequest, pk: int) -> HttpResponse:
    """Header, controls and customer panel, for live updates."""
    ticket = _ticket_or_404(request, pk)
    return render(request, "inbox/desk/_ticket_panel.html", _panel_context(request, ticket))


@login_required
@require_POST
def ticket_seen(request: HttpRequest, pk: int) -> HttpResponse:
    """The agent has the newest messages on screen (shown live): clear "unread"."""
    ticket = _ticket_or_404(request, pk)
    ticket_mark_seen(ticket=ticket, user=request.user)
    return HttpResponse(status=204)


# --- Composer ----------------------------------------------------------------------------------


def _reply_template(ticket: Ticket, raw: str) -> ReplyTemplate | None:
    if not raw.strip():
        return None
    try:
        template_id = int(raw)
    except ValueError:
        raise BadRequest(_("reply_template must be a template id.")) from None
    template = reply_template_for(ticket=ticket, template_id=template_id)
    if template is None:
        raise BadRequest(_("This template is not available for this ticket."))
    return template


@login_required
@require_POST
def ticket_reply(request: HttpRequest, pk: int) -> HttpResponse:
    """Send a reply (``kind=reply``) or add an internal note (``kind=note``)."""
    ticket = _ticket_or_404(request, pk)
    data = request.POST
    draft = Draft(
        text=data.get("text", ""),
        kind=data.get("kind", "reply") or "reply",
        visibility=data.get("visibility", ""),
        reply_template=data.get("reply_template", ""),
    )
    try:
        draft.seen_message_id = _int(data, "seen_message_id")
        if draft.kind not in ("reply", "note"):
            raise BadRequest(_("kind must be reply or note."))
        if draft.visibility not in ("", "public", "private"):
            raise BadRequest(_("visibility must be public or private."))
        template = _reply_template(ticket, draft.reply_template)
    except BadRequest as exc:
        return _fail(request, ticket, str(exc), 400, draft=draft)
    try:
        if draft.kind == "note":
            message = note_create(ticket=ticket, author=request.user, text=draft.text)
        else:
            message = reply_create(
                ticket=ticket,
                author=request.user,
                text=draft.text,
                is_public={"": None, "public": True, "private": False}[draft.visibility],
                seen_message_id=draft.seen_message_id,
                reply_template=template,
            ).message
    except ReplyHeldBack as exc:
        if _is_fetch(request):
            held = ticket_messages(ticket=ticket, ids=[m.pk for m in exc.messages])
            return render(
                request,
                "inbox/desk/_message_held_back.html",
                {
                    "ticket": ticket,
                    "notice": str(exc),
                    "messages_list": held,
                    "held_back_ids": {m.pk for m in held},
                },
                status=409,
            )
        return _render_page(request, ticket, status=409, error=str(exc), draft=draft, held_back=exc.messages)
    except ReplyError as exc:
        return _fail(request, ticket, str(exc), 400, draft=draft)
    if not _is_fetch(request):
        return _back(ticket, f"#message-{message.pk}")
    return _messages_response(request, ticket, ticket_messages(ticket=ticket, ids=[message.pk]))


# --- Delivery actions --------------------------------------------------------------------------


@login_required
@require_POST
def delivery_action(request: HttpRequest, pk: int, delivery_id: int, action: str) -> HttpResponse:
    """Retry a failed reply; a lead approves or rejects a reply awaiting approval."""
    if action not in ("retry", "approve", "reject"):
        raise Http404(_("No such action."))
    ticket = _ticket_or_404(request, pk)
    delivery = ticket_delivery(ticket=ticket, delivery_id=delivery_id)
    if delivery is None:
        raise Http404(_("No such reply on this ticket."))
    try:
        if action == "retry":
            delivery_retry(delivery=delivery, actor=request.user)
        elif action == "approve":
            delivery_approve(delivery=delivery, actor=request.user)
        else:
            reason = request.POST.get("reason", "").strip()
            if not reason:
                return _fail(request, ticket, _("Say why the reply is rejected."), 400)
            delivery_reject(delivery=delivery, actor=request.user, reason=reason)
    except PermissionDenied as exc:
        return _fail(request, ticket, str(exc) or _("Only team leads may do this."), 403)
    except ReplyError as exc:
        return _fail(request, ticket, str(exc), 409)
    if not _is_fetch(request):
        return _back(ticket, f"#message-{delivery.message_id}")
    return _messages_response(request, ticket, ticket_messages(ticket=ticket, ids=[delivery.message_id]))


# --- Controls ----------------------------------------------------------------------------------


@login_required
@require_POST
def ticket_status(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = _ticket_or_404(request, pk)
    status = request.POST.get("status", "")
    if status not in DESK_STATUSES:
        return _fail(request, ticket, _("status must be open, pending or solved."), 400)
    try:
        ticket_change_status(ticket=ticket, status=status, actor=request.user)
    except TicketChangeError as exc:
        return _fail(request, ticket, str(exc), 409)
    return _panel_response(request, pk)


@login_required
@require_POST
def ticket_priority(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = _ticket_or_404(request, pk)
    try:
        priority = _int(request.POST, "priority", required=True)
        if priority not in Ticket.Priority.values:
            raise BadRequest(_("priority must be 0 (low) to 3 (urgent)."))
    except BadRequest as exc:
        return _fail(request, ticket, str(exc), 400)
    try:
        ticket_change_priority(ticket=ticket, priority=priority, actor=request.user)
    except TicketChangeError as exc:
        return _fail(request, ticket, str(exc), 409)
    return _panel_response(request, pk)


@login_required
@require_POST
def ticket_tags(request: HttpRequest, pk: int) -> HttpResponse:
    """``add``: one or more tag names separated by commas; ``remove``: a tag name."""
    ticket = _ticket_or_404(request, pk)
    add = [name for name in request.POST.get("add", "").split(",") if name.strip()]
    remove = [name for name in request.POST.getlist("remove") if name.strip()]
    if not add and not remove:
        return _fail(request, ticket, _("Type a tag to add."), 400)
    try:
        ticket_change_tags(ticket=ticket, add=add, remove=remove, actor=request.user)
    except TicketChangeError as exc:
        return _fail(request, ticket, str(exc), 400)
    return _panel_response(request, pk)


@login_required
@require_POST
def ticket_assignee(request: HttpRequest, pk: int) -> HttpResponse:
    """A lead gives the ticket to an agent of its queue, or back to the queue (empty)."""
    ticket = _ticket_or_404(request, pk)
    try:
        user_id = _int(request.POST, "assignee")
    except BadRequest as exc:
        return _fail(request, ticket, str(exc), 400)
    assignee = None
    if user_id is not None:
        assignee = assignable_agent(user=request.user, ticket=ticket, user_id=user_id)
        if assignee is None:
            return _fail(request, ticket, _("This agent cannot take this ticket (not in its queue)."), 400)
    try:
        ticket_reassign(ticket=ticket, assignee=assignee, actor=request.user)
    except PermissionDenied as exc:
        return _fail(request, ticket, str(exc), 403)
    except AssignmentError as exc:
        return _fail(request, ticket, str(exc), 409)
    return _panel_response(request, pk)


# --- Customer ----------------------------------------------------------------------------------


@login_required
@require_POST
def customer_vip(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = _ticket_or_404(request, pk)
    vip = request.POST.get("vip", "")
    if vip not in ("0", "1"):
        return _fail(request, ticket, _("vip must be 0 or 1."), 400)
    try:
        customer_set_vip(customer=ticket.customer, vip=vip == "1", actor=request.user)
    except PermissionDenied as exc:
        return _fail(request, ticket, str(exc), 403)
    return _panel_response(request, pk)


@login_required
@require_GET
def customer_search(request: HttpRequest, pk: int) -> HttpResponse:
    """Customers to merge into this ticket's customer: only those with tickets you may see."""
    ticket = _ticket_or_404(request, pk)
    query = request.GET.get("q", "")
    matches = customers_matching(user=request.user, query=query, exclude_id=ticket.customer_id)
    return render(
        request,
        "inbox/desk/_ticket_customer_search.html",
        {"ticket": ticket, "query": query.strip(), "matches": matches},
    )


@login_required
@require_POST
def customer_merge_view(request: HttpRequest, pk: int) -> HttpResponse:
    """Merge the chosen customer (``source``) into this ticket's customer."""
    ticket = _ticket_or_404(request, pk)
    try:
        source_id = _int(request.POST, "source", required=True)
    except BadRequest as exc:
        return _fail(request, ticket, str(exc), 400)
    source = customers_visible_to(request.user).filter(pk=source_id).first()
    if source is None:
        raise Http404(_("No such customer, or none of their tickets is in your queues."))
    try:
        customer_merge(source=source, target=ticket.customer, actor=request.user)
    except CustomerError as exc:
        return _fail(request, ticket, str(exc), 400)
    return _panel_response(request, pk)


urlpatterns = [
    path("desk/tickets/<int:pk>/", ticket_page, name="ticket"),
    path("desk/tickets/<int:pk>/messages", ticket_messages_fragment, name="ticket-messages"),
    path("desk/tickets/<int:pk>/panel", ticket_panel_fragment, name="ticket-panel"),
    path("desk/tickets/<int:pk>/seen", ticket_seen, name="ticket-seen"),
    path("desk/tickets/<int:pk>/reply", ticket_reply, name="ticket-reply"),
    path("desk/tickets/<int:pk>/status", ticket_status, name="ticket-status"),
    path("desk/tickets/<int:pk>/priority", ticket_priority, name="ticket-priority"),
    path("desk/tickets/<int:pk>/tags", ticket_tags, name="ticket-tags"),
    path("desk/tickets/<int:pk>/assignee", ticket_assignee, name="ticket-assignee"),
    path("desk/tickets/<int:pk>/customer/vip", customer_vip, name="ticket-customer-vip"),
    path("desk/tickets/<int:pk>/customer/search", customer_search, name="ticket-customer-search"),
    path("desk/tickets/<int:pk>/customer/merge", customer_merge_view, name="ticket-customer-merge"),
    path(
        "desk/tickets/<int:pk>/deliveries/<int:delivery_id>/<str:action>",
        delivery_action,
        name="ticket-delivery",
    ),
]
