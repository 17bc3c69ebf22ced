"""REST endpoints of the floor: tickets and who works them, agents, queues.

``/tickets/``: tickets you may see (filters: status, queue, assignee, unassigned, language,
priority, platform, tag); ``assign`` and ``bulk-reassign`` for leads, ``take-next`` for
agents (pull). ``/agents/``: agents with load, capacity, presence, languages and queues;
``presence`` (the agent or a lead), ``capacity`` and ``away`` (leads). ``/queues/``: queues
with their backlog; ``pause``, ``resume``, ``move-backlog`` and ``sweep`` (leads).
Every change goes through ``inbox.services.assignment`` or ``inbox.services.presence``,
which audit it as TicketEvents. docs/assignment.md has examples.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, PermissionDenied
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from inbox.api.filters import TicketFilter
from inbox.api.permissions import IsAgent, IsLead, IsSelfOrLead
from inbox.models import AgentProfile, Queue, Tag, Ticket
from inbox.selectors.agents import agents_visible_to, queues_visible_to
from inbox.selectors.tickets import TicketFilters, tickets_visible_to
from inbox.services.assignment import (
    MAX_CAPACITY,
    AssignmentError,
    agent_set_away_and_redistribute,
    agent_set_capacity,
    assignment_sweep,
    assignment_take_next,
    queue_move_backlog,
    queue_set_auto_assign,
    ticket_reassign,
    tickets_bulk_reassign,
)
from inbox.services.presence import agent_set_presence

User = get_user_model()


class AssignmentConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The request conflicts with the current state.")
    default_code = "conflict"


def _refused(exc: AssignmentError | DjangoPermissionDenied) -> APIException:
    if isinstance(exc, DjangoPermissionDenied):
        return PermissionDenied(str(exc))
    return AssignmentConflict(str(exc))


_ERRORS = {
    400: OpenApiResponse(description=_("Invalid input; the detail names the field and why.")),
    403: OpenApiResponse(description=_("Not allowed.")),
    404: OpenApiResponse(description=_("Not found among what you may see.")),
    409: OpenApiResponse(description=_("Not possible in the current state; the detail says why.")),
}


def _agent_users() -> QuerySet:
    return User.objects.filter(agent_profile__isnull=False)


class AgentField(serializers.PrimaryKeyRelatedField):
    default_error_messages = {
        "does_not_exist": _("No agent with id {pk_value}."),
        "incorrect_type": _("An agent id is a number, not {data_type}."),
    }


class QueueField(serializers.PrimaryKeyRelatedField):
    default_error_messages = {
        "does_not_exist": _("No queue with id {pk_value}."),
        "incorrect_type": _("A queue id is a number, not {data_type}."),
    }


# --- Tickets ----------------------------------------------------------------------------


class TicketSerializer(serializers.ModelSerializer):
    queue_name = serializers.CharField(source="queue.name", read_only=True, allow_null=True, default=None)
    assignee_name = serializers.CharField(
        source="assignee.username", read_only=True, allow_null=True, default=None
    )
    platform = serializers.CharField(source="source.platform", read_only=True)
    tags = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = Ticket
        fields = (
            "id", "subject", "status", "priority", "language", "queue", "queue_name", "assignee",
            "assignee_name", "assigned_at", "platform", "tags", "is_private", "opened_at", "last_message_at",
        )  # fmt: skip
        read_only_fields = fields


class TicketAssignSerializer(serializers.Serializer):
    assignee = AgentField(
        queryset=_agent_users(), allow_null=True, help_text=_("Agent id; null puts it back in its queue.")
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class TicketFiltersSerializer(serializers.Serializer):
    """The ticket list's filters, as an object (at least one)."""

    queue = QueueField(queryset=Queue.objects.all(), required=False)
    status = serializers.ListField(
        child=serializers.ChoiceField(
            choices=[s for s in Ticket.Status.choices if s[0] in Ticket.ACTIVE_STATUSES]
        ),
        required=False,
    )
    language = serializers.CharField(required=False, max_length=10)
    priority = serializers.ListField(
        child=serializers.ChoiceField(choices=Ticket.Priority.choices), required=False
    )
    assignee = AgentField(queryset=_agent_users(), required=False)
    unassigned = serializers.BooleanField(required=False, default=False)
    tag = serializers.CharField(required=False, max_length=60)
    platform = serializers.CharField(required=False, max_length=20)

    def validate(self, attrs: dict) -> dict:
        if attrs.get("unassigned") and attrs.get("assignee") is not None:
            raise serializers.ValidationError(_("Filter by assignee or by unassigned, not both."))
        if _ticket_filters(attrs).is_empty():
            raise serializers.ValidationError(
                _("Give at least one filter: bulk reassign never applies to every ticket.")
            )
        return attrs


def _ticket_filters(data: dict) -> TicketFilters:
    return TicketFilters(
        queue_id=data["queue"].pk if data.get("queue") else None,
        statuses=tuple(data.get("status", ())),
        language=data.get("language", ""),
        priorities=tuple(int(p) for p in data.get("priority", ())),
        assignee_id=data["assignee"].pk if data.get("assignee") else None,
        unassigned=data.get("unassigned", False),
        tag=data.get("tag", ""),
        platform=data.get("platform", ""),
    )


class BulkReassignSerializer(serializers.Serializer):
    filters = TicketFiltersSerializer()
    assignee = AgentField(
        queryset=_agent_users(),
        allow_null=True,
        help_text=_("Agent id; null puts them back in their queues."),
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class BulkReassignResultSerializer(serializers.Serializer):
    reassigned = serializers.IntegerField()


class TicketViewSet(viewsets.ReadOnlyModelViewSet):
    """Tickets you may see: leads every ticket, agents their queues' and their own."""

    serializer_class = TicketSerializer
    filterset_class = TicketFilter
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[Ticket]:
        return (
            tickets_visible_to(self.request.user)
            .prefetch_related(Prefetch("tags", queryset=Tag.objects.order_by("name")))
            .order_by("-last_message_at", "-id")
        )

    def get_permissions(self) -> list[BasePermission]:
        if self.action in ("assign", "bulk_reassign"):
            return [IsAuthenticated(), IsLead()]
        if self.action == "take_next":
            return [IsAuthenticated(), IsAgent()]
        return [IsAuthenticated()]

    @extend_schema(request=TicketAssignSerializer, responses={200: TicketSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def assign(self, request: Request, pk: str | None = None) -> Response:
        """Lead: give the ticket to an agent, or back to its queue (assignee null)."""
        ticket = self.get_object()
        data = TicketAssignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            ticket = ticket_reassign(
                ticket=ticket, assignee=data.validated_data["assignee"], actor=request.user,
                reason=data.validated_data["reason"],
            )  # fmt: skip
        except (AssignmentError, DjangoPermissionDenied) as exc:
            raise _refused(exc) from exc
        return Response(TicketSerializer(ticket).data)

    @extend_schema(request=BulkReassignSerializer, responses={200: BulkReassignResultSerializer, **_ERRORS})
    @action(
        detail=False, methods=["post"], url_path="bulk-reassign", filterset_class=None, pagination_class=None
    )
    def bulk_reassign(self, request: Request) -> Response:
        """Lead: give every active ticket matching the filters to an agent, or back to their queues."""
        data = BulkReassignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            count = tickets_bulk_reassign(
                filters=_ticket_filters(data.validated_data["filters"]), assignee=data.validated_data["assignee"], actor=request.user,
                reason=data.validated_data["reason"],
            )  # fmt: skip
        except (AssignmentError, DjangoPermissionDenied) as exc:
            raise _refused(exc) from exc
        return Response({"reassigned": count})

    @extend_schema(
        request=None,
        responses={
            200: TicketSerializer,
            204: OpenApiResponse(description=_("Nothing is waiting for you.")),
            403: _ERRORS[403],
            409: OpenApiResponse(description=_("You are not online, or at capacity.")),
        },
    )
    @action(detail=False, methods=["post"], url_path="take-next", filterset_class=None, pagination_class=None)
    def take_next(self, request: Request) -> Response:
        """Agent: take the next waiting ticket of your queues (highest priority, then oldest)."""
        try:
            ticket = assignment_take_next(agent=request.user.agent_profile)
        except AssignmentError as exc:
            raise _refused(exc) from exc
        if ticket is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        ticket = self.get_queryset().get(pk=ticket.pk)
        return Response(TicketSerializer(ticket).data)


# --- Agents -----------------------------------------------------------------------------


class AgentSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(source="user_id", read_only=True, help_text=_("The agent's user id."))
    username = serializers.CharField(source="user.username", read_only=True)
    name = serializers.CharField(source="user.get_full_name", read_only=True)
    languages = serializers.ListField(child=serializers.CharField(), read_only=True)
    load = serializers.IntegerField(read_only=True, help_text=_("Active (new and open) tickets."))
    queues = serializers.PrimaryKeyRelatedField(source="user.desk_queues", many=True, read_only=True)

    class Meta:
        model = AgentProfile
        fields = (
            "id", "username", "name", "role", "languages", "capacity", "load", "presence",
            "presence_changed_at", "last_assigned_at", "queues",
        )  # fmt: skip
        read_only_fields = fields


class PresenceSerializer(serializers.Serializer):
    presence = serializers.ChoiceField(choices=AgentProfile.Presence.choices)


class CapacitySerializer(serializers.Serializer):
    capacity = serializers.IntegerField(min_value=0, max_value=MAX_CAPACITY)


class AwaySerializer(serializers.Serializer):
    presence = serializers.ChoiceField(choices=AgentProfile.Presence.choices, help_text=_("away or offline"))
    keep_pending = serializers.BooleanField(
        default=True, help_text=_("Pending tickets (waiting on the customer) stay with the agent.")
    )

    def validate_presence(self, value: str) -> str:
        if value == AgentProfile.Presence.ONLINE:
            raise serializers.ValidationError(_("Choose away or offline."))
        return value


class RedistributeResultSerializer(serializers.Serializer):
    agent = AgentSerializer()
    reassigned = serializers.IntegerField(help_text=_("Tickets given to other agents."))
    released = serializers.IntegerField(help_text=_("Tickets put back in their queue to wait."))
    kept_pending = serializers.IntegerField(help_text=_("Pending tickets left with the agent."))


class AgentViewSet(viewsets.ReadOnlyModelViewSet):
    """Agents: leads see everyone, agents the members of their queues."""

    serializer_class = AgentSerializer
    lookup_field = "user_id"
    lookup_url_kwarg = "id"
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[AgentProfile]:
        return agents_visible_to(self.request.user)

    def get_permissions(self) -> list[BasePermission]:
        if self.action in ("capacity", "away"):
            return [IsAuthenticated(), IsLead()]
        if self.action == "presence":
            return [IsAuthenticated(), IsSelfOrLead()]
        return [IsAuthenticated()]

    def _agent_out(self, agent: AgentProfile) -> dict[str, Any]:
        return AgentSerializer(self.get_queryset().get(pk=agent.pk)).data

    @extend_schema(request=PresenceSerializer, responses={200: AgentSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def presence(self, request: Request, id: str | None = None) -> Response:
        """The agent or a lead: online, away or offline. Away and offline stick until set online;
        online takes effect while the agent has the desk open."""
        agent = self.get_object()
        data = PresenceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            agent_set_presence(agent=agent, presence=data.validated_data["presence"], actor=request.user)
        except DjangoPermissionDenied as exc:
            raise _refused(exc) from exc
        return Response(self._agent_out(agent))

    @extend_schema(request=CapacitySerializer, responses={200: AgentSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def capacity(self, request: Request, id: str | None = None) -> Response:
        """Lead: how many active tickets the agent may hold."""
        agent = self.get_object()
        data = CapacitySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            agent_set_capacity(agent=agent, capacity=data.validated_data["capacity"], actor=request.user)
        except (AssignmentError, DjangoPermissionDenied) as exc:
            raise _refused(exc) from exc
        return Response(self._agent_out(agent))

    @extend_schema(request=AwaySerializer, responses={200: RedistributeResultSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def away(self, request: Request, id: str | None = None) -> Response:
        """Lead: set the agent away or offline and hand their tickets to the others."""
        agent = self.get_object()
        data = AwaySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            result = agent_set_away_and_redistribute(
                agent=agent, presence=data.validated_data["presence"],
                keep_pending=data.validated_data["keep_pending"], actor=request.user,
            )  # fmt: skip
        except (AssignmentError, DjangoPermissionDenied) as exc:
            raise _refused(exc) from exc
        return Response(
            {
                "agent": self._agent_out(agent),
                "reassigned": result.reassigned,
                "released": result.released,
                "kept_pending": result.kept_pending,
            }
        )


# --- Queues -----------------------------------------------------------------------------


class QueueSerializer(serializers.ModelSerializer):
    waiting = serializers.IntegerField(read_only=True, help_text=_("Unassigned new and open tickets."))
    member_count = serializers.IntegerField(read_only=True)
    online_count = serializers.IntegerField(read_only=True, help_text=_("Members online now."))

    class Meta:
        model = Queue
        fields = (
            "id", "name", "slug", "assignment_mode", "auto_assign_paused", "sticky_follow_ups",
            "waiting", "member_count", "online_count",
        )  # fmt: skip
        read_only_fields = fields


class MoveBacklogSerializer(serializers.Serializer):
    target_queue = QueueField(queryset=Queue.objects.all())


class MoveBacklogResultSerializer(serializers.Serializer):
    moved = serializers.IntegerField()


class SweepResultSerializer(serializers.Serializer):
    assigned = serializers.IntegerField()
    waiting = serializers.IntegerField(help_text=_("Tickets still waiting after the sweep."))


class QueueViewSet(viewsets.ReadOnlyModelViewSet):
    """Queues with their backlog: leads see all, agents the ones they are members of."""

    serializer_class = QueueSerializer
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[Queue]:
        return queues_visible_to(self.request.user)

    def get_permissions(self) -> list[BasePermission]:
        if self.action in ("pause", "resume", "move_backlog", "sweep"):
            return [IsAuthenticated(), IsLead()]
        return [IsAuthenticated()]

    def _set_paused(self, request: Request, *, paused: bool) -> Response:
        queue = self.get_object()
        try:
            queue_set_auto_assign(queue=queue, paused=paused, actor=request.user)
        except DjangoPermissionDenied as exc:
            raise _refused(exc) from exc
        return Response(QueueSerializer(self.get_queryset().get(pk=queue.pk)).data)

    @extend_schema(request=None, responses={200: QueueSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str | None = None) -> Response:
        """Lead: stop automatic assignment (and taking next) in this queue."""
        return self._set_paused(request, paused=True)

    @extend_schema(request=None, responses={200: QueueSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Lead: assign automatically again; the backlog is swept."""
        return self._set_paused(request, paused=False)

    @extend_schema(request=MoveBacklogSerializer, responses={200: MoveBacklogResultSerializer, **_ERRORS})
    @action(detail=True, methods=["post"], url_path="move-backlog")
    def move_backlog(self, request: Request, pk: str | None = None) -> Response:
        """Lead: move this queue's unassigned tickets to another queue."""
        queue = self.get_object()
        data = MoveBacklogSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        target = data.validated_data["target_queue"]
        if target.pk == queue.pk:
            raise serializers.ValidationError({"target_queue": [_("The target is this queue itself.")]})
        try:
            moved = queue_move_backlog(source_queue=queue, target_queue=target, actor=request.user)
        except (AssignmentError, DjangoPermissionDenied) as exc:
            raise _refused(exc) from exc
        return Response({"moved": moved})

    @extend_schema(request=None, responses={200: SweepResultSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def sweep(self, request: Request, pk: str | None = None) -> Response:
        """Lead: assign the waiting tickets now, as far as agents have room."""
        queue = self.get_object()
        result = assignment_sweep(queue_id=queue.pk)
        return Response({"assigned": result.assigned, "waiting": result.waiting})


def register(router: DefaultRouter) -> None:
    """Register this area's viewsets on the API router."""
    router.register("tickets", TicketViewSet, basename="ticket")
    router.register("agents", AgentViewSet, basename="agent")
    router.register("queues", QueueViewSet, basename="queue")
