"""REST endpoints for SLA: policies and business calendars (leads and admins write, every desk
user reads), and a calendar's ``preview``: when a target of N business minutes started at a
given instant is due."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.settings import api_settings

from inbox.api.permissions import IsLead
from inbox.models import BusinessCalendar, Queue, SlaPolicy, Ticket
from inbox.selectors.sla import business_calendars_visible_to, calendar_spec, sla_policies_visible_to
from inbox.services.sla import (
    SlaConfigError,
    business_calendar_create,
    business_calendar_delete,
    business_calendar_update,
    calendar_problems,
    policy_problems,
    sla_policy_create,
    sla_policy_delete,
    sla_policy_update,
)
from inbox.sla.clock import CalendarNeverOpen, Shift, business_add, week_minutes

#: The longest target the preview computes: a year of minutes.
MAX_PREVIEW_MINUTES = 366 * 24 * 60
_READ_ACTIONS = frozenset({"list", "retrieve", "preview"})


class _LeadsWrite:
    """Every desk user reads; leads and admins write."""

    action: str

    def get_permissions(self) -> list[BasePermission]:
        if self.action in _READ_ACTIONS:
            return [IsAuthenticated()]
        return [IsAuthenticated(), IsLead()]


# --- Business calendars --------------------------------------------------------------------------


class BusinessHoursSerializer(serializers.Serializer):
    weekday = serializers.IntegerField(min_value=0, max_value=6, help_text=_("0 = Monday … 6 = Sunday."))
    start = serializers.TimeField()
    end = serializers.TimeField(help_text=_("At or before start: the shift ends the next day."))


class CalendarHolidaySerializer(serializers.Serializer):
    date = serializers.DateField()
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class BusinessCalendarSerializer(serializers.ModelSerializer):
    hours = BusinessHoursSerializer(many=True, required=False, help_text=_("Weekly shifts, in local time."))
    holidays = CalendarHolidaySerializer(
        many=True, required=False, source="custom_holidays", help_text=_("Custom closed dates.")
    )
    week_minutes = serializers.SerializerMethodField(help_text=_("Open minutes in a week without holidays."))

    class Meta:
        model = BusinessCalendar
        fields = [
            "id",
            "name",
            "time_zone",
            "always_open",
            "holiday_country",
            "holiday_subdivision",
            "hours",
            "holidays",
            "week_minutes",
        ]

    def get_week_minutes(self, calendar: BusinessCalendar) -> float:
        if calendar.always_open:
            return 7 * 24 * 60.0
        return week_minutes([Shift(h.weekday, h.start, h.end) for h in calendar.hours.all()])

    def validate_holiday_country(self, value: str) -> str:
        return value.upper()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: BusinessCalendar | None = self.instance

        def current(name: str, default: Any) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(instance, name) if instance is not None else default

        if "hours" in attrs:
            shifts = [Shift(h["weekday"], h["start"], h["end"]) for h in attrs["hours"]]
        elif instance is not None:
            shifts = [Shift(h.weekday, h.start, h.end) for h in instance.hours.all()]
        else:
            shifts = []
        problems = calendar_problems(
            time_zone=current("time_zone", "Europe/Amsterdam"),
            always_open=current("always_open", False),
            shifts=shifts,
            holiday_country=current("holiday_country", ""),
            holiday_subdivision=current("holiday_subdivision", ""),
        )
        days = [h["date"] for h in attrs.get("custom_holidays", [])]
        if len(set(days)) != len(days):
            problems.append(_("A date can be a holiday only once per calendar."))
        if problems:
            raise serializers.ValidationError([str(p) for p in problems])
        return attrs


class CalendarPreviewQuerySerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text=_("When the clock starts (ISO 8601 with offset)."))
    minutes = serializers.FloatField(
        min_value=0, max_value=MAX_PREVIEW_MINUTES, help_text=_("Target in business minutes.")
    )


class CalendarPreviewSerializer(serializers.Serializer):
    start = serializers.DateTimeField()
    minutes = serializers.FloatField()
    due_at = serializers.DateTimeField(allow_null=True, help_text=_("Null when the calendar is never open."))
    due_at_local = serializers.CharField(
        allow_null=True, help_text=_("The due time in the calendar's time zone, ISO 8601.")
    )
    time_zone = serializers.CharField()


_CALENDAR_FIELDS = ("name", "time_zone", "always_open", "holiday_country", "holiday_subdivision")


def _calendar_args(attrs: dict[str, Any]) -> dict[str, Any]:
    return {name: attrs[name] for name in _CALENDAR_FIELDS if name in attrs}


def _shifts(attrs: dict[str, Any]) -> list[Shift] | None:
    if "hours" not in attrs:
        return None
    return [Shift(h["weekday"], h["start"], h["end"]) for h in attrs["hours"]]


def _holidays(attrs: dict[str, Any]) -> list[tuple[Any, str]] | None:
    if "custom_holidays" not in attrs:
        return None
    return [(h["date"], h.get("name", "")) for h in attrs["custom_holidays"]]


class BusinessCalendarViewSet(_LeadsWrite, viewsets.ModelViewSet):
    """Business calendars: time zone, weekly shifts (split and overnight), public holidays of a
    country and custom closed dates. Nested ``hours`` and ``holidays`` are replaced as a whole
    when sent."""

    serializer_class = BusinessCalendarSerializer

    def get_queryset(self):
        return business_calendars_visible_to(self.request.user)

    def perform_create(self, serializer: BusinessCalendarSerializer) -> None:
        attrs = serializer.validated_data
        try:
            serializer.instance = business_calendar_create(
                **_calendar_args(attrs), hours=_shifts(attrs) or (), holidays=_holidays(attrs) or ()
            )
        except SlaConfigError as exc:
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]}) from exc

    def perform_update(self, serializer: BusinessCalendarSerializer) -> None:
        attrs = serializer.validated_data
        try:
            serializer.instance = business_calendar_update(
                calendar=serializer.instance,
                changes=_calendar_args(attrs),
                hours=_shifts(attrs),
                holidays=_holidays(attrs),
            )
        except SlaConfigError as exc:
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]}) from exc

    def perform_destroy(self, instance: BusinessCalendar) -> None:
        business_calendar_delete(calendar=instance)

    @extend_schema(parameters=[CalendarPreviewQuerySerializer], responses=CalendarPreviewSerializer)
    @action(detail=True, methods=["get"])
    def preview(self, request: Request, pk: str | None = None) -> Response:
        """When a target of ``minutes`` business minutes started at ``start`` is due."""
        query = CalendarPreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        calendar = self.get_object()
        spec = calendar_spec(calendar)
        start, minutes = query.validated_data["start"], query.validated_data["minutes"]
        try:
            due_at = business_add(spec, start, minutes)
        except CalendarNeverOpen:
            due_at = None
        data = {
            "start": start,
            "minutes": minutes,
            "due_at": due_at,
            "due_at_local": due_at.astimezone(spec.zone).isoformat() if due_at is not None else None,
            "time_zone": calendar.time_zone,
        }
        return Response(CalendarPreviewSerializer(data).data)


# --- SLA policies --------------------------------------------------------------------------------


class SlaPolicySerializer(serializers.ModelSerializer):
    queue = serializers.PrimaryKeyRelatedField(
        queryset=Queue.objects.all(), allow_null=True, required=False, help_text=_("Empty: any queue.")
    )
    priority = serializers.IntegerField(
        min_value=min(Ticket.Priority.values),
        max_value=max(Ticket.Priority.values),
        allow_null=True,
        required=False,
        help_text=_("0 low, 1 normal, 2 high, 3 urgent; empty: any priority."),
    )
    calendar = serializers.PrimaryKeyRelatedField(
        queryset=BusinessCalendar.objects.all(),
        allow_null=True,
        required=False,
        help_text=_("Empty: the queue's calendar, else around the clock."),
    )

    class Meta:
        model = SlaPolicy
        fields = [
            "id",
            "name",
            "queue",
            "priority",
            "calendar",
            "first_response_minutes",
            "next_response_minutes",
            "resolution_minutes",
            "at_risk_ratio",
            "notify_leads",
            "raise_priority",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: SlaPolicy | None = self.instance

        def current(name: str, attname: str, default: Any) -> Any:
            if name in attrs:
                value = attrs[name]
                return value.pk if hasattr(value, "pk") else value
            return getattr(instance, attname) if instance is not None else default

        problems = policy_problems(
            pk=instance.pk if instance is not None else None,
            queue_id=current("queue", "queue_id", None),
            priority=current("priority", "priority", None),
            at_risk_ratio=current("at_risk_ratio", "at_risk_ratio", 0.8),
        )
        if problems:
            raise serializers.ValidationError([str(p) for p in problems])
        return attrs


class SlaPolicyViewSet(_LeadsWrite, viewsets.ModelViewSet):
    """SLA policies: first-response, next-response and resolution targets in business minutes,
    per queue and priority (empty matches any; the most specific policy wins)."""

    serializer_class = SlaPolicySerializer
    filterset_fields = ["queue", "priority", "calendar"]

    def get_queryset(self):
        return sla_policies_visible_to(self.request.user)

    def perform_create(self, serializer: SlaPolicySerializer) -> None:
        try:
            serializer.instance = sla_policy_create(**serializer.validated_data)
        except SlaConfigError as exc:
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]}) from exc

    def perform_update(self, serializer: SlaPolicySerializer) -> None:
        try:
            serializer.instance = sla_policy_update(
                policy=serializer.instance, changes=serializer.validated_data
            )
        except SlaConfigError as exc:
            raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]}) from exc

    def perform_destroy(self, instance: SlaPolicy) -> None:
        sla_policy_delete(policy=instance)


def register(router: DefaultRouter) -> None:
    """Register this area's viewsets on the API router."""
    router.register("sla-policies", SlaPolicyViewSet, basename="sla-policy")
    router.register("business-calendars", BusinessCalendarViewSet, basename="business-calendar")
