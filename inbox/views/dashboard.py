"""The lead dashboard: the floor per queue, the agents, and moving work between them.

Leads only (agents get 403). The page is three server-rendered fragments (queues, agents,
ticket table), each with its own GET endpoint so ``static/js/desk/dashboard.js`` can
re-fetch them when live events arrive. Every change is a POST form (CSRF) that works
without JavaScript (redirect back with a message, or an error page with status 400, 403,
404 or 409) and answers JSON (``{"message": ...}`` or ``{"error": ...}``) to
``Desk.postForm``. The writes are the assignment and presence services; they audit each
change as TicketEvents and push them after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_GET, require_POST
from redis.exceptions import RedisError

from inbox.models import AgentProfile, Queue, Ticket
from inbox.selectors.agents import agents_visible_to, queues_visible_to
from inbox.selectors.collision import viewers_for
from inbox.selectors.dashboard import (
    ACTIVE_STATUSES,
    SHOW_ALL,
    SHOW_CHOICES,
    QueueMetrics,
    dashboard_agents,
    dashboard_queues,
    dashboard_tickets,
)
from inbox.selectors.tickets import tickets_visible_to, user_is_lead
from inbox.services.assignment import (
    MAX_CAPACITY,
    AssignmentError,
    agent_set_away_and_redistribute,
    agent_set_capacity,
    queue_move_backlog,
    queue_set_auto_assign,
    ticket_reassign,
)
from inbox.services.presence import agent_set_presence
from inbox.views.common import desk_page

logger = logging.getLogger(__name__)

PAGE_SIZE = 50
#: Tickets one bulk action may take (a page is 50; more is a forged or runaway request).
MAX_SELECTED = 500


class Refused(Exception):
    """The request cannot be carried out; ``message`` is for the lead, ``status`` the HTTP code."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --- Reading the request ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """What the page shows: the queue of the ticket table, which of its tickets, which page."""

    queue_id: int | None = None
    show: str = SHOW_ALL
    page: int = 1

    @classmethod
    def from_query(cls, query) -> Selection:
        queue_id = _optional_int(query.get("queue"), _("The queue must be given by its number."))
        show = query.get("show") or SHOW_ALL
        if show not in SHOW_CHOICES:
            raise Refused(_("Unknown ticket selection “%(show)s”.") % {"show": show})
        page = _optional_int(query.get("page"), _("The page must be a number.")) or 1
        return cls(queue_id=queue_id, show=show, page=max(page, 1))

    def query(self) -> str:
        values = {"queue": self.queue_id, "show": self.show, "page": self.page}
        return urlencode({k: v for k, v in values.items() if v is not None})


def _optional_int(value: str | None, error: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise Refused(error) from None


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, {request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return reverse("inbox:dashboard")


# --- Decorators ------------------------------------------------------------------------


def _lead_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed-in leads (and admins) only; ``Refused`` becomes its status with the message."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not user_is_lead(request.user):
            return _refusal(request, _("The dashboard is for team leads."), 403)
        try:
            return view(request, *args, **kwargs)
        except Refused as exc:
            return _refusal(request, exc.message, exc.status)

    return wrapper


def _refusal(request: HttpRequest, message: str, status: int) -> HttpResponse:
    """JSON for ``Desk.postForm``, plain text for fragment fetches, else an error page."""
    if _wants_json(request):
        if request.method == "POST":
            return JsonResponse({"error": message}, status=status)
        return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    back = _next_url(request) if request.method == "POST" else reverse("inbox:dashboard")
    return render(
        request,
        "inbox/desk/_dashboard_error.html",
        {"nav": "dashboard", "error": message, "back": back},
        status=status,
    )


def _done(request: HttpRequest, message: str) -> HttpResponse:
    if _wants_json(request):
        return JsonResponse({"message": message})
    messages.success(request, message)
    return redirect(_next_url(request))


def _call(service: Callable, **kwargs):
    """Run a service; its refusals become the lead's error (409: not possible now, 403).

    Presence lives in Redis: without it a presence change cannot be made (503), and the
    lead is told so instead of getting a server error.
    """
    try:
        return service(**kwargs)
    except AssignmentError as exc:
        raise Refused(str(exc), 409) from exc
    except PermissionDenied as exc:
        raise Refused(str(exc), 403) from exc
    except RedisError as exc:
        logger.warning("dashboard: %s failed, Redis unreachable", service.__name__, exc_info=True)
        raise Refused(
            _("Presence cannot be changed now: the presence store is unreachable. Try again."), 503
        ) from exc


# --- Pages and fragments ---------------------------------------------------------------


@desk_page
@require_GET
@_lead_only
def dashboard(request: HttpRequest) -> HttpResponse:
    selection = Selection.from_query(request.GET)
    context = _context(request, selection, parts=("queues", "agents", "tickets"))
    context["nav"] = "dashboard"
    return render(request, "inbox/desk/dashboard.html", context)


def _fragment(part: str, template: str) -> Callable[[HttpRequest], HttpResponse]:
    @login_required
    @require_GET
    @_lead_only
    def view(request: HttpRequest) -> HttpResponse:
        context = _context(request, Selection.from_query(request.GET), parts=(part,))
        return render(request, template, context)

    view.__name__ = f"dashboard_{part}"
    return view


dashboard_queues_fragment = _fragment("queues", "inbox/desk/_dashboard_queues.html")
dashboard_agents_fragment = _fragment("agents", "inbox/desk/_dashboard_agents.html")
dashboard_tickets_fragment = _fragment("tickets", "inbox/desk/_dashboard_tickets.html")


@dataclass(frozen=True, slots=True)
class QueueCard:
    metrics: QueueMetrics
    oldest_waiting_age: str
    selected: bool


def _context(request: HttpRequest, selection: Selection, *, parts: tuple[str, ...]) -> dict:
    """What the templates of ``parts`` need; fixed query count whatever the floor's size."""
    user = request.user
    now = timezone.now()
    queues = dashboard_queues(user=user)
    selected = _selected_queue(queues, selection.queue_id)
    if selected is not None and selection.queue_id is None:
        selection = Selection(queue_id=selected.queue_id, show=selection.show, page=selection.page)
    context: dict = {
        "selection": selection,
        "selected_queue": selected,
        "queues": queues,
        "dashboard_url": f"{reverse('inbox:dashboard')}?{selection.query()}",
        "now": now,
        "max_capacity": MAX_CAPACITY,
    }
    if "queues" in parts:
        context["queue_cards"] = [
            QueueCard(
                metrics=queue,
                oldest_waiting_age=_age(now, queue.oldest_waiting_since),
                selected=selected is not None and queue.queue_id == selected.queue_id,
            )
            for queue in queues
        ]
    if "agents" in parts or "tickets" in parts:
        agents = dashboard_agents(user=user, queues=queues)
        context["agents"] = agents
        context["queue_members"] = (
            [agent for agent in agents if selected.queue_id in agent.queue_ids] if selected else []
        )
    if "tickets" in parts:
        context["page"] = _ticket_page(request, selection, selected)
        context["show_choices"] = [
            (key, _SHOW_LABELS[key], _shown_count(selected, key)) for key in SHOW_CHOICES
        ]
        context["other_queues"] = [q for q in queues if selected is None or q.queue_id != selected.queue_id]
    return context


def _selected_queue(queues: list[QueueMetrics], queue_id: int | None) -> QueueMetrics | None:
    if queue_id is not None:
        for queue in queues:
            if queue.queue_id == queue_id:
                return queue
        raise Refused(_("No queue with number %(id)d.") % {"id": queue_id}, 404)
    return next((q for q in queues if q.is_default), queues[0] if queues else None)


_SHOW_LABELS = {
    "all": gettext_lazy("All active"),
    "backlog": gettext_lazy("Backlog"),
    "assigned": gettext_lazy("Assigned"),
    "pending": gettext_lazy("Pending"),
    "at_risk": gettext_lazy("At risk"),
    "breached": gettext_lazy("Breached"),
}


def _shown_count(queue: QueueMetrics | None, key: str) -> int:
    if queue is None:
        return 0
    return queue.active if key == SHOW_ALL else getattr(queue, key)


def _ticket_page(request: HttpRequest, selection: Selection, queue: QueueMetrics | None) -> Page | None:
    if queue is None:
        return None
    tickets = dashboard_tickets(user=request.user, queue_id=queue.queue_id, show=selection.show)
    page = Paginator(tickets, PAGE_SIZE).get_page(selection.page)
    rows = list(page.object_list)
    viewers = viewers_for([t.pk for t in rows]) if rows else {}
    for ticket in rows:
        ticket.dashboard_viewers = [v for v in viewers.get(ticket.pk, ()) if v.user_id != request.user.pk]
    page.object_list = rows
    return page


def _age(now: datetime, since: datetime | None) -> str:
    """A compact age like the SLA clocks show it: "3d 4h", "2h 5m", "12m"."""
    if since is None:
        return ""
    minutes = max(int((now - since).total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


# --- Moving work -----------------------------------------------------------------------


@login_required
@require_POST
@_lead_only
def reassign(request: HttpRequest) -> HttpResponse:
    """Selected tickets to an agent (``action=assign``) or back to their queue (``action=return``).

    All or nothing: every ticket is checked first (visible, active, the agent a member of
    its queue) and the reassignments run in one transaction.
    """
    action = request.POST.get("action", "")
    if action not in ("assign", "return"):
        raise Refused(_("Choose “Assign” or “Return to queue”."))
    tickets = _selected_tickets(request)
    agent = None
    if action == "assign":
        agent = _posted_agent(request)
        member_of = {queue.pk for queue in agent.user.desk_queues.all()}
        foreign = [t for t in tickets if t.queue_id is not None and t.queue_id not in member_of]
        if foreign:
            raise Refused(
                _(
                    "%(agent)s is not a member of queue %(queue)s (ticket #%(ticket)d). Choose a member of the queue."
                )
                % {"agent": _name(agent), "queue": foreign[0].queue.name, "ticket": foreign[0].pk},
                409,
            )
    assignee = agent.user if agent is not None else None
    new_id = assignee.pk if assignee is not None else None
    changed = 0
    with transaction.atomic():
        for ticket in tickets:
            stored = _call(ticket_reassign, ticket=ticket, assignee=assignee, actor=request.user)
            if ticket.assignee_id != new_id and stored.assignee_id == new_id:
                changed += 1
    unchanged = len(tickets) - changed
    if agent is not None:
        message = ngettext(
            "%(count)d ticket assigned to %(name)s.", "%(count)d tickets assigned to %(name)s.", changed
        ) % {"count": changed, "name": _name(agent)}
        if unchanged:
            message += " " + ngettext(
                "%(count)d already was theirs.", "%(count)d already were theirs.", unchanged
            ) % {"count": unchanged}
    else:
        message = ngettext(
            "%(count)d ticket returned to its queue.", "%(count)d tickets returned to their queues.", changed
        ) % {"count": changed}
        if unchanged:
            message += " " + ngettext(
                "%(count)d was unassigned already.", "%(count)d were unassigned already.", unchanged
            ) % {"count": unchanged}
    return _done(request, message)


def _selected_tickets(request: HttpRequest) -> list[Ticket]:
    raw = request.POST.getlist("ticket")
    if not raw:
        raise Refused(_("Select at least one ticket."))
    try:
        ids = sorted({int(value) for value in raw})
    except ValueError:
        raise Refused(_("A ticket is given by its number.")) from None
    if len(ids) > MAX_SELECTED:
        raise Refused(_("Select at most %(max)d tickets at once.") % {"max": MAX_SELECTED})
    tickets = list(tickets_visible_to(request.user).filter(pk__in=ids).order_by("pk"))
    missing = sorted(set(ids) - {t.pk for t in tickets})
    if missing:
        raise Refused(
            ngettext("Ticket %(ids)s does not exist.", "Tickets %(ids)s do not exist.", len(missing))
            % {"ids": ", ".join(f"#{pk}" for pk in missing)},
            404,
        )
    closed = [t for t in tickets if t.status not in ACTIVE_STATUSES]
    if closed:
        raise Refused(
            _("Ticket #%(id)d is %(status)s: only new, open or pending tickets can be reassigned.")
            % {"id": closed[0].pk, "status": closed[0].get_status_display().lower()},
            409,
        )
    return tickets


def _posted_agent(request: HttpRequest) -> AgentProfile:
    agent_id = _optional_int(request.POST.get("assignee"), _("An agent is given by their number."))
    if agent_id is None:
        raise Refused(_("Choose the agent to assign the tickets to."))
    profile = agents_visible_to(request.user).filter(user_id=agent_id).first()
    if profile is None:
        raise Refused(_("No agent with number %(id)d.") % {"id": agent_id})
    return profile


def _name(profile: AgentProfile) -> str:
    return profile.user.get_full_name() or profile.user.get_username()


def _visible_queue(request: HttpRequest, queue_id: int) -> Queue:
    queue = queues_visible_to(request.user).filter(pk=queue_id).first()
    if queue is None:
        raise Refused(_("No queue with number %(id)d.") % {"id": queue_id}, 404)
    return queue


def _visible_agent(request: HttpRequest, user_id: int) -> AgentProfile:
    profile = agents_visible_to(request.user).filter(user_id=user_id).first()
    if profile is None:
        raise Refused(_("No agent with number %(id)d.") % {"id": user_id}, 404)
    return profile


@login_required
@require_POST
@_lead_only
def queue_auto_assign(request: HttpRequest, queue_id: int) -> HttpResponse:
    """Pause (``paused=1``) or resume (``paused=0``) automatic assignment in the queue."""
    queue = _visible_queue(request, queue_id)
    paused = request.POST.get("paused")
    if paused not in ("0", "1"):
        raise Refused(_("Say whether to pause (1) or resume (0) auto-assign."))
    _call(queue_set_auto_assign, queue=queue, paused=paused == "1", actor=request.user)
    if paused == "1":
        message = _("Auto-assign paused in %(queue)s: tickets wait for you to hand them out.")
    else:
        message = _("Auto-assign resumed in %(queue)s: its backlog is being assigned.")
    return _done(request, message % {"queue": queue.name})


@login_required
@require_POST
@_lead_only
def queue_backlog_move(request: HttpRequest, queue_id: int) -> HttpResponse:
    """Move the queue's backlog (active unassigned tickets) to the queue ``target``."""
    source = _visible_queue(request, queue_id)
    target_id = _optional_int(request.POST.get("target"), _("The target queue is given by its number."))
    if target_id is None:
        raise Refused(_("Choose the queue to move the backlog to."))
    target = queues_visible_to(request.user).filter(pk=target_id).first()
    if target is None:
        raise Refused(_("No queue with number %(id)d.") % {"id": target_id})
    if target.pk == source.pk:
        raise Refused(_("Choose another queue than %(queue)s.") % {"queue": source.name})
    moved = _call(queue_move_backlog, source_queue=source, target_queue=target, actor=request.user)
    if not moved:
        return _done(request, _("Nothing to move: %(queue)s has no backlog.") % {"queue": source.name})
    return _done(
        request,
        ngettext(
            "%(count)d ticket moved from %(source)s to %(target)s.",
            "%(count)d tickets moved from %(source)s to %(target)s.",
            moved,
        )
        % {"count": moved, "source": source.name, "target": target.name},
    )


# --- Agents ----------------------------------------------------------------------------


@login_required
@require_POST
@_lead_only
def agent_presence(request: HttpRequest, user_id: int) -> HttpResponse:
    """Set the agent online, away or offline; away or offline can hand their tickets on
    (``redistribute``), keeping pending ones with them (``keep_pending``) if asked."""
    profile = _visible_agent(request, user_id)
    name = _name(profile)
    presence = request.POST.get("presence", "")
    if presence not in AgentProfile.Presence.values:
        raise Refused(_("Choose online, away or offline."))
    redistribute = request.POST.get("redistribute") == "1"
    if presence == AgentProfile.Presence.ONLINE:
        if redistribute:
            raise Refused(_("Tickets are redistributed only when an agent goes away or offline."))
        profile = _call(agent_set_presence, agent=profile, presence=presence, actor=request.user)
        if profile.presence != AgentProfile.Presence.ONLINE:
            return _done(
                request,
                _("%(name)s is set online and shows as online as soon as they have the desk open.")
                % {"name": name},
            )
        return _done(request, _("%(name)s is online.") % {"name": name})
    if not redistribute:
        profile = _call(agent_set_presence, agent=profile, presence=presence, actor=request.user)
        return _done(
            request,
            _("%(name)s is now %(presence)s; their tickets stay with them.")
            % {"name": name, "presence": _presence_word(profile.presence)},
        )
    result = _call(
        agent_set_away_and_redistribute,
        agent=profile,
        presence=presence,
        keep_pending=request.POST.get("keep_pending") == "1",
        actor=request.user,
    )
    parts = [
        _("%(name)s is now %(presence)s.") % {"name": name, "presence": _presence_word(result.presence)},
        ngettext(
            "%(count)d ticket went to another agent.",
            "%(count)d tickets went to other agents.",
            result.reassigned,
        )
        % {"count": result.reassigned},
        ngettext("%(count)d went back to its queue.", "%(count)d went back to their queues.", result.released)
        % {"count": result.released},
    ]
    if result.kept_pending:
        parts.append(
            ngettext(
                "%(count)d pending ticket stays with them.",
                "%(count)d pending tickets stay with them.",
                result.kept_pending,
            )
            % {"count": result.kept_pending}
        )
    return _done(request, " ".join(parts))


def _presence_word(presence: str) -> str:
    return str(AgentProfile.Presence(presence).label).lower()


@login_required
@require_POST
@_lead_only
def agent_capacity(request: HttpRequest, user_id: int) -> HttpResponse:
    """How many active (new and open) tickets the agent may hold."""
    profile = _visible_agent(request, user_id)
    error = _("Capacity is a whole number from 0 to %(max)d.") % {"max": MAX_CAPACITY}
    capacity = _optional_int(request.POST.get("capacity", "").strip(), error)
    if capacity is None or not 0 <= capacity <= MAX_CAPACITY:
        raise Refused(error)
    old = profile.capacity
    _call(agent_set_capacity, agent=profile, capacity=capacity, actor=request.user)
    name = _name(profile)
    if old == capacity:
        return _done(
            request, _("%(name)s's capacity stays %(capacity)d.") % {"name": name, "capacity": capacity}
        )
    return _done(
        request,
        _("%(name)s's capacity is now %(capacity)d (was %(old)d).")
        % {"name": name, "capacity": capacity, "old": old},
    )


urlpatterns = [
    path("desk/dashboard/", dashboard, name="dashboard"),
    path("desk/dashboard/queues", dashboard_queues_fragment, name="dashboard-queues"),
    path("desk/dashboard/agents", dashboard_agents_fragment, name="dashboard-agents"),
    path("desk/dashboard/tickets", dashboard_tickets_fragment, name="dashboard-tickets"),
    path("desk/dashboard/reassign", reassign, name="dashboard-reassign"),
    path("desk/dashboard/queues/<int:queue_id>/auto-assign", queue_auto_assign, name="dashboard-auto-assign"),
    path(
        "desk/dashboard/queues/<int:queue_id>/move-backlog", queue_backlog_move, name="dashboard-move-backlog"
    ),
    path("desk/dashboard/agents/<int:user_id>/presence", agent_presence, name="dashboard-presence"),
    path("desk/dashboard/agents/<int:user_id>/capacity", agent_capacity, name="dashboard-capacity"),
]
