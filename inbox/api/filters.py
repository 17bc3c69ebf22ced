"""Query-string filters of the API lists. They build the selectors' filter objects, so the
list and a lead's bulk operations select tickets the same way."""

from __future__ import annotations

import django_filters
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from inbox.models import Queue, Ticket
from inbox.selectors.tickets import TicketFilters, tickets_filter


class TicketFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(
        choices=Ticket.Status.choices, help_text=_("One or more statuses.")
    )
    queue = django_filters.ModelChoiceFilter(
        queryset=Queue.objects.all(),
        error_messages={"invalid_choice": _("No queue with id %(value)s.")},
        help_text=_("Queue id."),
    )
    assignee = django_filters.ModelChoiceFilter(
        queryset=get_user_model().objects.filter(agent_profile__isnull=False),
        error_messages={"invalid_choice": _("No agent with id %(value)s.")},
        help_text=_("Agent (user) id."),
    )
    unassigned = django_filters.BooleanFilter(help_text=_("Only tickets without an agent."))
    language = django_filters.CharFilter(help_text=_("Language code, e.g. nl."))
    priority = django_filters.MultipleChoiceFilter(
        choices=Ticket.Priority.choices, help_text=_("One or more priorities (0 low to 3 urgent).")
    )
    platform = django_filters.CharFilter(help_text=_("Platform of the ticket's source, e.g. mastodon."))
    tag = django_filters.CharFilter(help_text=_("Tag name."))

    class Meta:
        model = Ticket
        fields = ("status", "queue", "assignee", "unassigned", "language", "priority", "platform", "tag")

    def ticket_filters(self) -> TicketFilters:
        data = self.form.cleaned_data
        queue, assignee = data.get("queue"), data.get("assignee")
        return TicketFilters(
            queue_id=queue.pk if queue is not None else None,
            statuses=tuple(data.get("status") or ()),
            language=data.get("language") or "",
            priorities=tuple(int(p) for p in data.get("priority") or ()),
            assignee_id=assignee.pk if assignee is not None else None,
            unassigned=bool(data.get("unassigned")),
            tag=data.get("tag") or "",
            platform=data.get("platform") or "",
        )

    def filter_queryset(self, queryset: QuerySet[Ticket]) -> QuerySet[Ticket]:
        return tickets_filter(queryset, self.ticket_filters())
