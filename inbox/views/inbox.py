"""The inbox: the ticket lists (mine, my queues, unassigned, pending, all), their live rows
and "next ticket".

* ``/`` the page; query ``view``, the filters, ``q``, ``page``; ``fragment=rows`` answers
  with the rows of that page only (a client re-syncing after ``desk:reset``).
* ``/desk/rows?ids=1,2,3&<the list's query>`` how those tickets stand in that list now:
  their rows (with a sort key) and the ids that are no longer in it (live updates).
* ``/desk/next`` GET: to the first ticket of "mine" (``after`` skipped); POST may also take
  the next ticket of a pull queue.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.translation import get_language_info, gettext_lazy
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from inbox.models import Platform, Ticket
from inbox.routing.language import desk_languages
from inbox.selectors.agents import agents_visible_to
from inbox.selectors.collision import Viewer
from inbox.selectors.inbox import (
    COUNT_CAP,
    MAX_ROW_IDS,
    MAX_SEARCH_LENGTH,
    PAGE_SIZE,
    UNASSIGNED,
    InboxFilters,
    InboxRow,
    InboxView,
    SlaFilter,
    inbox_counts,
    inbox_default_view,
    inbox_next_ticket,
    inbox_page,
    inbox_rows,
    inbox_views_for,
    user_in_pull_queue,
)
from inbox.services.assignment import AssignmentError, assignment_take_next
from inbox.views.common import desk_page

#: The query parameters of a list besides ``page`` (kept in tab, pager and live-update links).
FILTER_PARAMS = ("status", "priority", "language", "platform", "tag", "sla", "assignee", "q")


def ticket_url(ticket_id: int) -> str:
    """The ticket page (``inbox:ticket``), built by hand so the inbox does not depend on it."""
    return f"/desk/tickets/{ticket_id}/"


class InboxQueryForm(forms.Form):
    """The list's filters: a GET form, so a filtered list is a link that can be shared."""

    status = forms.ChoiceField(label=gettext_lazy("Status"), required=False)
    priority = forms.TypedChoiceField(
        label=gettext_lazy("Priority"), required=False, coerce=int, empty_value=None
    )
    language = forms.ChoiceField(label=gettext_lazy("Language"), required=False)
    platform = forms.ChoiceField(label=gettext_lazy("Platform"), required=False)
    tag = forms.CharField(label=gettext_lazy("Tag"), required=False, max_length=60)
    sla = forms.ChoiceField(label=gettext_lazy("SLA"), required=False)
    assignee = forms.ChoiceField(label=gettext_lazy("Agent"), required=False)
    q = forms.CharField(label=gettext_lazy("Search"), required=False, max_length=MAX_SEARCH_LENGTH)
    page = forms.IntegerField(label=gettext_lazy("Page"), required=False, min_value=1)

    def __init__(self, data, *, user: AbstractBaseUser, view: str) -> None:
        super().__init__(data)
        any_ = [("", _("Any"))]
        statuses = Ticket.Status.choices if view == InboxView.ALL else [
            (value, label) for value, label in Ticket.Status.choices if value in Ticket.ACTIVE_STATUSES
        ]  # fmt: skip
        self.fields["status"].choices = any_ + list(statuses)
        self.fields["priority"].choices = any_ + [
            (str(v), label) for v, label in reversed(Ticket.Priority.choices)
        ]
        self.fields["language"].choices = any_ + [(code, _language_name(code)) for code in desk_languages()]
        self.fields["platform"].choices = any_ + list(Platform.choices)
        self.fields["sla"].choices = any_ + list(SlaFilter.choices)
        agents = agents_visible_to(user).values_list(
            "user_id", "user__first_name", "user__last_name", "user__username"
        )
        self.fields["assignee"].choices = any_ + [(UNASSIGNED, _("Nobody (unassigned)"))] + [
            (str(uid), f"{first} {last}".strip() or username) for uid, first, last, username in agents
        ]  # fmt: skip

    def filters(self) -> InboxFilters:
        data = self.cleaned_data
        assignee = data.get("assignee") or ""
        return InboxFilters(
            statuses=(data["status"],) if data.get("status") else (),
            priorities=(data["priority"],) if data.get("priority") is not None else (),
            language=data.get("language") or "",
            platform=data.get("platform") or "",
            tag=(data.get("tag") or "").strip(),
            sla_state=data.get("sla") or "",
            unassigned=assignee == UNASSIGNED,
            assignee_id=int(assignee) if assignee and assignee != UNASSIGNED else None,
            q=(data.get("q") or "").strip(),
        )

    def query(self) -> dict[str, str]:
        """The non-empty filter values as query parameters."""
        return {
            name: str(self.cleaned_data[name])
            for name in FILTER_PARAMS
            if self.cleaned_data.get(name) not in (None, "")
        }


def _language_name(code: str) -> str:
    try:
        return f"{get_language_info(code)['name_translated']} ({code})"
    except KeyError:
        return code


def _plain(message: str, status: int) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _form_errors(form: forms.Form) -> str:
    return "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())


PREVIEW_LENGTH = 140


@dataclass(frozen=True, slots=True)
class RowView:
    """One list row as the template shows it: labels and names worked out once per request
    (model ``get_FOO_display`` and template filters per row cost more than the query)."""

    ticket: Ticket
    unread: bool
    viewers: list[Viewer]
    sort_key: str
    customer_name: str
    handle: str
    vip: bool
    platform: str
    platform_label: str
    preview: str
    queue_name: str
    tags: list[str]
    priority_label: str
    status_label: str
    assignee_name: str


def present_rows(rows: list[InboxRow]) -> list[RowView]:
    platforms = {value: str(label) for value, label in Platform.choices}
    priorities = {value: str(label) for value, label in Ticket.Priority.choices}
    statuses = {value: str(label) for value, label in Ticket.Status.choices}
    views = []
    for row in rows:
        t = row.ticket
        preview = t.subject if len(t.subject) <= PREVIEW_LENGTH else t.subject[: PREVIEW_LENGTH - 1] + "…"
        assignee = t.assignee
        views.append(
            RowView(
                ticket=t, unread=row.unread, viewers=row.viewers, sort_key=row.sort_key,
                customer_name=t.customer.display_name or t.contact.display_name or t.contact.handle,
                handle=t.contact.handle, vip=t.customer.vip,
                platform=t.source.platform, platform_label=platforms.get(t.source.platform, t.source.platform),
                preview=preview, queue_name=t.queue.name if t.queue is not None else "",
                tags=[tag.name for tag in t.tags.all()],
                priority_label=priorities.get(t.priority, str(t.priority)),
                status_label=statuses.get(t.status, t.status),
                assignee_name=(assignee.get_full_name() or assignee.get_username()) if assignee is not None else "",
            )
        )  # fmt: skip
    return views


@dataclass(frozen=True, slots=True)
class FilterField:
    """A filter of the form, rendered by hand: Django's widget templates render every
    ``<option>`` through a template of its own, which a 300-agent select feels."""

    name: str
    id: str
    label: str
    value: str
    errors: list[str]
    options: list[tuple[str, str, bool]] | None = None  # (value, label, selected); None: text input
    max_length: int | None = None


def filter_fields(form: forms.Form) -> list[FilterField]:
    fields = []
    for name in FILTER_PARAMS:
        bound = form[name]
        value = form.data.get(name, "") or ""
        field = bound.field
        options = None
        if isinstance(field, forms.ChoiceField):
            options = [(str(v), str(label), str(v) == value) for v, label in field.choices]
        fields.append(
            FilterField(
                name=name, id=bound.auto_id, label=str(bound.label), value=value, errors=list(bound.errors),
                options=options, max_length=getattr(field, "max_length", None),
            )
        )  # fmt: skip
    return fields


def _count_label(count: int) -> str:
    return f"{COUNT_CAP - 1}+" if count >= COUNT_CAP else str(count)


def _requested_view(request: HttpRequest) -> tuple[str | None, HttpResponse | None]:
    """The ``view`` parameter checked: (view or None when absent, error response)."""
    view = request.GET.get("view", "")
    if not view:
        return None, None
    if view not in InboxView.values:
        return None, _plain(_("Unknown list %(view)r.") % {"view": view}, 400)
    if view not in inbox_views_for(request.user):
        return None, _plain(_("Only team leads can see all tickets."), 403)
    return view, None


@desk_page
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    user = request.user
    view, error = _requested_view(request)
    if error is not None:
        return error
    fragment = request.GET.get("fragment", "")
    if fragment not in ("", "rows"):
        return _plain(_("Unknown fragment %(fragment)r.") % {"fragment": fragment}, 400)
    counts = inbox_counts(user=user)
    view = view or inbox_default_view(user, counts)
    form = InboxQueryForm(request.GET, user=user, view=view)
    valid = form.is_valid()
    if fragment:
        if not valid:
            return _plain(_form_errors(form), 400)
        page = inbox_page(user=user, view=view, filters=form.filters(), page=form.cleaned_data["page"] or 1)
        return render(
            request, "inbox/desk/_ticket_rows.html", {"rows": present_rows(page.rows), "gone": [], "counts": counts,
                                                      "viewers_known": page.viewers_known},
        )  # fmt: skip

    query = form.query() if valid else {}
    tabs = [
        {
            "view": str(name),
            "label": name.label,
            "count": counts[str(name)],
            "count_label": _count_label(counts[str(name)]),
            "url": "?" + urlencode({"view": str(name), **query}),
            "current": name == view,
        }
        for name in inbox_views_for(user)
    ]
    context = {
        "nav": "inbox",
        "view": view,
        "view_label": InboxView(view).label,
        "tabs": tabs,
        "form": form,
        "filter_fields": filter_fields(form),
        "filtered": bool(query),
        "active_filters": len([name for name in query if name != "q"]),
        "page": None,
        "rows": [],
        "list_query": urlencode({"view": view, **query}),
        "count_cap": COUNT_CAP,
        "page_size": PAGE_SIZE,
        "can_take_next": user_in_pull_queue(user),
        "clear_url": "?" + urlencode({"view": view}),
    }
    if not valid:
        return render(request, "inbox/desk/inbox.html", context, status=400)
    page = inbox_page(user=user, view=view, filters=form.filters(), page=form.cleaned_data["page"] or 1)
    context.update(
        page=page,
        rows=present_rows(page.rows),
        viewers_known=page.viewers_known,
        previous_url="?" + urlencode({"view": view, **query, "page": page.number - 1}),
        next_url="?" + urlencode({"view": view, **query, "page": page.number + 1}),
        last_url="?" + urlencode({"view": view, **query, "page": page.num_pages}),
        first_url="?" + urlencode({"view": view, **query}),
    )
    return render(request, "inbox/desk/inbox.html", context, status=404 if page.past_end else 200)


def parse_ids(raw: str) -> list[int]:
    """``"1,2,3"`` → ``[1, 2, 3]``; raises ValueError with the reason."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts:
        raise ValueError(_("ids is required: ticket ids separated by commas."))
    if len(parts) > MAX_ROW_IDS:
        raise ValueError(_("At most %(max)d ticket ids at a time.") % {"max": MAX_ROW_IDS})
    ids = []
    for part in parts:
        if not part.isascii() or not part.isdigit() or len(part) > 18 or int(part) < 1:
            raise ValueError(_("%(value)r is not a ticket id.") % {"value": part})
        ids.append(int(part))
    return ids


@login_required
@require_GET
def rows(request: HttpRequest) -> HttpResponse:
    """Live updates: the rows of ``ids`` that are (still) in the list, and the gone ids."""
    try:
        ids = parse_ids(request.GET.get("ids", ""))
    except ValueError as exc:
        return _plain(str(exc), 400)
    view, error = _requested_view(request)
    if error is not None:
        return error
    if view is None:
        return _plain(_("view is required."), 400)
    form = InboxQueryForm(request.GET, user=request.user, view=view)
    if not form.is_valid():
        return _plain(_form_errors(form), 400)
    result = inbox_rows(user=request.user, view=view, filters=form.filters(), ticket_ids=ids)
    return render(
        request,
        "inbox/desk/_ticket_rows.html",
        {
            "rows": present_rows(result.rows),
            "gone": result.gone,
            "counts": inbox_counts(user=request.user),
            "viewers_known": result.viewers_known,
        },  # fmt: skip
    )


@login_required
@require_http_methods(["GET", "POST"])
def next_ticket(request: HttpRequest) -> HttpResponse:
    """To the user's next ticket. GET only goes to one they have; POST also takes the next
    ticket of a pull queue when they have none."""
    raw_after = (request.POST if request.method == "POST" else request.GET).get("after", "")
    after = None
    if raw_after:
        if not raw_after.isascii() or not raw_after.isdigit() or len(raw_after) > 18:
            return _plain(_("after must be a ticket id."), 400)
        after = int(raw_after)
    user = request.user
    ticket = inbox_next_ticket(user=user, after=after)
    if ticket is not None:
        return HttpResponseRedirect(ticket_url(ticket.pk))
    inbox_url = reverse("inbox:inbox")
    pull = user_in_pull_queue(user)
    if request.method == "GET":
        if pull:
            messages.info(request, _("Nothing assigned to you. Take the next ticket of your queue."))
        else:
            messages.info(request, _("Nothing waiting"))
        return HttpResponseRedirect(inbox_url)
    profile = getattr(user, "agent_profile", None)
    if pull and profile is not None:
        try:
            taken = assignment_take_next(agent=profile)
        except AssignmentError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(inbox_url)
        if taken is not None:
            return HttpResponseRedirect(ticket_url(taken.pk))
    messages.info(request, _("Nothing waiting"))
    return HttpResponseRedirect(inbox_url)


urlpatterns = [
    path("", inbox, name="inbox"),
    path("desk/rows", rows, name="inbox-rows"),
    path("desk/next", next_ticket, name="next"),
]
