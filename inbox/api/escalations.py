"""REST endpoints for escalations to back-office teams.

``/internal-teams/``: the teams (everyone reads, leads write). ``/escalations/``: escalations
the caller may see; POST escalates a ticket, ``answer`` and ``cancel`` close one.
``/escalations/inbound-email/``: mail gateways POST a reply's raw MIME here, authenticated by
a shared secret header instead of a user.
"""

from __future__ import annotations

import hmac
from typing import Any

import django_filters
from django.conf import settings
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, PermissionDenied
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from inbox.api.permissions import IsLead
from inbox.models import Escalation, InternalTeam, Queue, Ticket
from inbox.selectors.escalations import (
    DueState,
    EmailState,
    escalation_clock,
    escalation_email_states,
    escalation_may_answer,
    escalation_may_cancel,
    escalations_visible_to,
    internal_teams_visible_to,
)
from inbox.selectors.tickets import tickets_visible_to
from inbox.services.escalations import (
    MAX_EMAIL_BYTES,
    EscalationError,
    EscalationNotWaiting,
    InboundEmailIgnored,
    UnknownReplyToken,
    escalation_answer,
    escalation_answer_from_email,
    escalation_cancel,
    escalation_create,
    internal_team_create,
    internal_team_update,
)

#: Header a mail gateway sends the shared secret in.
INBOUND_SECRET_HEADER = "X-Webcare-Inbound-Secret"


class EscalationRefused(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = _("The request cannot be carried out.")
    default_code = "refused"


class EscalationConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = _("The escalation is no longer waiting.")
    default_code = "not_waiting"


class EmailTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = _("The e-mail is too large.")
    default_code = "too_large"


def _refused(exc: EscalationError) -> APIException:
    if isinstance(exc, EscalationNotWaiting):
        return EscalationConflict(str(exc))
    if isinstance(exc, UnknownReplyToken):
        return NotFound(str(exc), code="unknown_token")
    return EscalationRefused(str(exc))


# --- Internal teams -------------------------------------------------------------------


class InternalTeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = InternalTeam
        fields = ("id", "name", "queue", "email", "target_minutes", "active")
        read_only_fields = fields


class InternalTeamInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    queue = serializers.PrimaryKeyRelatedField(queryset=Queue.objects.all(), allow_null=True, required=False)
    email = serializers.EmailField(allow_blank=True, required=False)
    target_minutes = serializers.IntegerField(min_value=1, allow_null=True, required=False)
    active = serializers.BooleanField(required=False)


@extend_schema_view(
    create=extend_schema(request=InternalTeamInputSerializer, responses={201: InternalTeamSerializer}),
    update=extend_schema(request=InternalTeamInputSerializer, responses={200: InternalTeamSerializer}),
    partial_update=extend_schema(
        request=InternalTeamInputSerializer, responses={200: InternalTeamSerializer}
    ),
)
class InternalTeamViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Back-office teams: a desk queue of experts, or an e-mail address. Deactivate, never delete."""

    serializer_class = InternalTeamSerializer
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[InternalTeam]:
        return internal_teams_visible_to(self.request.user)

    def get_permissions(self) -> list[BasePermission]:
        if self.action in ("list", "retrieve"):
            return [IsAuthenticated()]
        return [IsAuthenticated(), IsLead()]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = InternalTeamInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            team = internal_team_create(**data.validated_data)
        except EscalationError as exc:
            raise _refused(exc) from exc
        return Response(InternalTeamSerializer(team).data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        team = self.get_object()
        data = InternalTeamInputSerializer(data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        try:
            team = internal_team_update(team=team, **data.validated_data)
        except EscalationError as exc:
            raise _refused(exc) from exc
        return Response(InternalTeamSerializer(team).data)


# --- Escalations ----------------------------------------------------------------------


class TeamSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class EscalationSerializer(serializers.ModelSerializer):
    """An escalation as the desk shows it; the reply token (a secret) is never included."""

    team = TeamSummarySerializer(read_only=True)
    waited_seconds = serializers.SerializerMethodField(
        help_text=_("Seconds the team has taken: until the answer, or until now while waiting.")
    )
    due_state = serializers.SerializerMethodField()
    email_state = serializers.SerializerMethodField()

    class Meta:
        model = Escalation
        fields = (
            "id",
            "ticket",
            "team",
            "note",
            "status",
            "created_by",
            "created_at",
            "due_at",
            "waited_seconds",
            "due_state",
            "email_state",
            "answer",
            "answered_by",
            "answered_at",
        )
        read_only_fields = fields

    def get_waited_seconds(self, obj: Escalation) -> int | None:
        return escalation_clock(escalation=obj, now=self.context.get("now")).waited_seconds

    @extend_schema_field(serializers.ChoiceField(choices=DueState.choices))
    def get_due_state(self, obj: Escalation) -> str:
        return escalation_clock(escalation=obj, now=self.context.get("now")).due_state

    @extend_schema_field(serializers.ChoiceField(choices=EmailState.choices))
    def get_email_state(self, obj: Escalation) -> str:
        states = self.context.get("email_states")
        if states is None:
            states = escalation_email_states(escalations=[obj])
        return states.get(obj.pk, EmailState.NOT_EMAILED.value)


class VisibleTicketField(serializers.PrimaryKeyRelatedField):
    """A ticket id among the tickets the caller may see; others read as "does not exist"."""

    def get_queryset(self) -> QuerySet[Ticket]:
        return tickets_visible_to(self.context["request"].user)


class EscalationCreateSerializer(serializers.Serializer):
    # The queryset names the model for the schema; get_queryset scopes it per request.
    ticket = VisibleTicketField(queryset=Ticket.objects.none())
    team = serializers.PrimaryKeyRelatedField(queryset=InternalTeam.objects.all())
    note = serializers.CharField(trim_whitespace=True)


class EscalationAnswerSerializer(serializers.Serializer):
    text = serializers.CharField(trim_whitespace=True)


class EscalationCancelSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


class InboundEmailResultSerializer(serializers.Serializer):
    result = serializers.ChoiceField(choices=(("stored", _("Stored")), ("ignored", _("Ignored"))))
    escalation = serializers.IntegerField(allow_null=True)
    ticket = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()


class EscalationFilter(django_filters.FilterSet):
    class Meta:
        model = Escalation
        fields = ("ticket", "team", "status")


class RawEmailParser(BaseParser):
    """The request body is one e-mail, as raw RFC 5322 bytes."""

    media_type = "message/rfc822"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> bytes:
        if stream is None:
            return b""
        raw = stream.read(MAX_EMAIL_BYTES + 1)
        if len(raw) > MAX_EMAIL_BYTES:
            raise EmailTooLarge(f"the e-mail is larger than {MAX_EMAIL_BYTES} bytes")
        return raw


class OctetStreamEmailParser(RawEmailParser):
    media_type = "application/octet-stream"


class HasInboundSecret(BasePermission):
    """The mail gateway's shared secret; an empty ESCALATION_INBOUND_SECRET disables the endpoint."""

    message = _("The inbound e-mail endpoint is disabled.")

    def has_permission(self, request: Request, view: Any) -> bool:
        secret = getattr(settings, "ESCALATION_INBOUND_SECRET", "") or ""
        if not secret:
            return False
        given = request.headers.get(INBOUND_SECRET_HEADER, "")
        if hmac.compare_digest(given.encode(), secret.encode()):
            return True
        self.message = _("Wrong or missing %(header)s header.") % {"header": INBOUND_SECRET_HEADER}
        return False


_ERRORS = {
    400: OpenApiResponse(description=_("Refused; the detail says why.")),
    403: OpenApiResponse(description=_("Not allowed.")),
    404: OpenApiResponse(description=_("No such escalation visible to you.")),
    409: OpenApiResponse(description=_("The escalation was already answered or cancelled.")),
}


@extend_schema_view(
    create=extend_schema(
        request=EscalationCreateSerializer, responses={201: EscalationSerializer, **_ERRORS}
    ),
)
class EscalationViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Escalations of tickets you may see, and those addressed to a desk queue you are in."""

    serializer_class = EscalationSerializer
    filterset_class = EscalationFilter
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[Escalation]:
        return escalations_visible_to(self.request.user)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        rows = list(page if page is not None else queryset)
        context = {**self.get_serializer_context(), "email_states": escalation_email_states(escalations=rows)}
        data = EscalationSerializer(rows, many=True, context=context).data
        return self.get_paginated_response(data) if page is not None else Response(data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = EscalationCreateSerializer(data=request.data, context=self.get_serializer_context())
        data.is_valid(raise_exception=True)
        try:
            escalation = escalation_create(actor=request.user, **data.validated_data)
        except EscalationError as exc:
            raise _refused(exc) from exc
        return Response(self._out(escalation), status=status.HTTP_201_CREATED)

    @extend_schema(request=EscalationAnswerSerializer, responses={200: EscalationSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def answer(self, request: Request, pk: str | None = None) -> Response:
        """Answer for the team, in the desk: members of the team's desk queue, and leads."""
        escalation = self.get_object()
        if not escalation_may_answer(user=request.user, escalation=escalation):
            raise PermissionDenied(
                _("Only members of the team's desk queue and team leads may answer escalation %(id)s.")
                % {"id": escalation.pk}
            )
        data = EscalationAnswerSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        user = request.user
        try:
            escalation = escalation_answer(
                escalation=escalation,
                text=data.validated_data["text"],
                answered_by=user.get_full_name() or user.get_username(),
                actor=user,
            )
        except EscalationError as exc:
            raise _refused(exc) from exc
        return Response(self._out(escalation))

    @extend_schema(request=EscalationCancelSerializer, responses={200: EscalationSerializer, **_ERRORS})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Stop waiting on the team: whoever may work the ticket."""
        escalation = self.get_object()
        if not escalation_may_cancel(user=request.user, escalation=escalation):
            raise PermissionDenied(
                _("Only agents who may work ticket #%(ticket)s may cancel its escalation.")
                % {"ticket": escalation.ticket_id}
            )
        data = EscalationCancelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            escalation = escalation_cancel(
                escalation=escalation, actor=request.user, reason=data.validated_data["reason"]
            )
        except EscalationError as exc:
            raise _refused(exc) from exc
        return Response(self._out(escalation))

    @extend_schema(
        request={"message/rfc822": OpenApiTypes.BINARY, "application/octet-stream": OpenApiTypes.BINARY},
        parameters=[
            OpenApiParameter(
                INBOUND_SECRET_HEADER,
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                required=True,
                description=_("The shared secret in ESCALATION_INBOUND_SECRET."),
            )
        ],
        responses={
            200: InboundEmailResultSerializer,
            400: OpenApiResponse(description=_("Not a usable reply (no text above the quote).")),
            403: OpenApiResponse(description=_("Endpoint disabled, or wrong or missing secret.")),
            404: OpenApiResponse(description=_("No escalation has the reply token.")),
            409: OpenApiResponse(description=_("The escalation was already answered or cancelled.")),
            413: OpenApiResponse(description=_("The e-mail is too large.")),
        },
        auth=[],
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="inbound-email",
        authentication_classes=[],
        permission_classes=[HasInboundSecret],
        parser_classes=[RawEmailParser, OctetStreamEmailParser],
        filterset_class=None,
        pagination_class=None,
    )
    def inbound_email(self, request: Request) -> Response:
        """A reply to an escalation e-mail, posted raw by a mail gateway."""
        raw = request.data if isinstance(request.data, bytes) else b""
        if not raw.strip():
            raise EscalationRefused(_("The request body must be the e-mail (message/rfc822)."))
        try:
            escalation = escalation_answer_from_email(raw=raw)
        except InboundEmailIgnored as exc:
            return Response({"result": "ignored", "escalation": None, "ticket": None, "detail": str(exc)})
        except EscalationError as exc:
            raise _refused(exc) from exc
        return Response(
            {
                "result": "stored",
                "escalation": escalation.pk,
                "ticket": escalation.ticket_id,
                "detail": f"answered by {escalation.answered_by}",
            }
        )

    def _out(self, escalation: Escalation) -> dict[str, Any]:
        escalation = self.get_queryset().get(pk=escalation.pk)
        return EscalationSerializer(escalation, context=self.get_serializer_context()).data


def register(router: DefaultRouter) -> None:
    """Register this area's viewsets on the API router."""
    router.register("internal-teams", InternalTeamViewSet, basename="internal-team")
    router.register("escalations", EscalationViewSet, basename="escalation")
