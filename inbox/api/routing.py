"""REST endpoints for routing rules.

``/routing-rules/``: the ordered rules (every desk user reads; leads and admins write).
``reorder`` puts all rules in a new order; ``preview`` routes a sample message with the
rules in force and says, rule by rule, why it did or did not match. Every change goes
through ``inbox.services.routing_rules``. docs/routing.md has examples.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter

from inbox.api.permissions import IsLead
from inbox.models import Platform, Queue, RoutingRule, SlaPolicy, Source
from inbox.routing.engine import RuleTrace, rule_errors
from inbox.routing.language import desk_languages
from inbox.selectors.routing import (
    RoutingPreview,
    routing_preview,
    routing_rules_visible_to,
    user_is_desk_user,
)
from inbox.services.routing_rules import (
    FIELDS,
    routing_rule_create,
    routing_rule_delete,
    routing_rule_update,
    routing_rules_reorder,
)

_PLATFORMS = [value for value, _label in Platform.choices]


class IsDeskUser(BasePermission):
    """Agents, leads and admins."""

    message = _("Only desk users may see routing rules.")

    def has_permission(self, request: Request, view: Any) -> bool:
        return user_is_desk_user(request.user)


def _drf_errors(exc: DjangoValidationError) -> serializers.ValidationError:
    if hasattr(exc, "error_dict"):
        return serializers.ValidationError(exc.message_dict)
    return serializers.ValidationError({"non_field_errors": exc.messages})


# --- Rules --------------------------------------------------------------------------------


class RoutingRuleSerializer(serializers.ModelSerializer):
    """A rule as stored. Empty conditions do not constrain; see docs/routing.md."""

    sources = serializers.PrimaryKeyRelatedField(queryset=Source.objects.all(), many=True, required=False)
    platforms = serializers.ListField(
        child=serializers.ChoiceField(choices=Platform.choices), required=False, allow_empty=True
    )
    languages = serializers.ListField(
        child=serializers.CharField(max_length=10),
        required=False,
        allow_empty=True,
        help_text=_("ISO 639-1 codes among the desk languages."),
    )
    keywords = serializers.CharField(
        required=False, allow_blank=True, trim_whitespace=False,
        help_text=_("One word or phrase per line; matches when any occurs (whole words, any case)."),
    )  # fmt: skip
    text_regex = serializers.CharField(
        required=False, allow_blank=True, max_length=500, trim_whitespace=False,
        help_text=_("A regular expression searched in the text, ignoring case."),
    )  # fmt: skip
    active_weekdays = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6),
        required=False,
        allow_empty=True,
        help_text=_("0 = Monday … 6 = Sunday, in the desk time zone."),
    )
    add_tags = serializers.ListField(
        child=serializers.CharField(max_length=60), required=False, allow_empty=True
    )
    set_priority = serializers.IntegerField(
        min_value=0, max_value=3, required=False, allow_null=True,
        help_text=_("0 low, 1 normal, 2 high, 3 urgent."),
    )  # fmt: skip
    sentiment_below = serializers.FloatField(min_value=-1, max_value=1, required=False, allow_null=True)
    sentiment_above = serializers.FloatField(min_value=-1, max_value=1, required=False, allow_null=True)
    queue = serializers.PrimaryKeyRelatedField(queryset=Queue.objects.all(), required=False, allow_null=True)
    sla_policy = serializers.PrimaryKeyRelatedField(
        queryset=SlaPolicy.objects.all(), required=False, allow_null=True
    )

    class Meta:
        model = RoutingRule
        fields = (
            "id", "name", "position", "enabled", "continue_matching",
            "sources", "platforms", "visibility", "languages", "keywords", "text_regex",
            "min_followers", "verified", "vip", "sentiment_below", "sentiment_above",
            "active_from", "active_until", "active_weekdays", "has_open_ticket",
            "queue", "set_priority", "add_tags", "sla_policy", "mark_noise", "requires_approval",
            "created_at", "updated_at",
        )  # fmt: skip
        read_only_fields = ("id", "created_at", "updated_at")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        values = {name: attrs[name] for name in FIELDS if name in attrs}
        if self.instance is not None:
            values = {**{name: getattr(self.instance, name) for name in FIELDS}, **values}
        errors = rule_errors(values, languages=desk_languages(), platforms=_PLATFORMS)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def service_arguments(self) -> dict[str, Any]:
        """``fields`` and ``source_ids`` for the services, from the validated data."""
        data = dict(self.validated_data)
        sources = data.pop("sources", None)
        for name in ("queue", "sla_policy"):
            if name in data:
                related = data.pop(name)
                data[f"{name}_id"] = related.pk if related is not None else None
        return {
            "fields": {name: value for name, value in data.items() if name in FIELDS},
            "source_ids": None if sources is None else [source.pk for source in sources],
        }


class RoutingRuleReorderSerializer(serializers.Serializer):
    rule_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), help_text=_("Every rule id, in the new order.")
    )


# --- Preview --------------------------------------------------------------------------------


class RoutingPreviewInputSerializer(serializers.Serializer):
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=100_000)
    # A plain string in the schema: the platform values are the PlatformsEnum of a rule's
    # ``platforms`` (one choice set gets one name).
    platform = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=20,
        help_text=_("The platform (as in a rule's platforms); empty: the source's platform."),
    )  # fmt: skip
    source_id = serializers.PrimaryKeyRelatedField(
        queryset=Source.objects.all(), required=False, allow_null=True, default=None,
        help_text=_("The source the message came in on (its default queue, its platform)."),
    )  # fmt: skip
    is_public = serializers.BooleanField(required=False, default=True)
    followers_count = serializers.IntegerField(min_value=0, required=False, allow_null=True, default=None)
    verified = serializers.BooleanField(required=False, default=False)
    vip = serializers.BooleanField(required=False, default=False)
    has_open_ticket = serializers.BooleanField(required=False, default=False)
    language = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text=_("A desk language; empty: detect it from the text."),
    )  # fmt: skip
    language_hint = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=35,
        help_text=_("The platform's language tag, used when the text is too short to tell."),
    )  # fmt: skip
    sentiment = serializers.FloatField(
        min_value=-1, max_value=1, required=False, allow_null=True, default=None,
        help_text=_("Empty: scored from the text."),
    )  # fmt: skip
    created_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        default=None,
        help_text=_("Default: now. Sets the local time of day."),
    )

    def validate_platform(self, value: str) -> str:
        if value and value not in _PLATFORMS:
            raise serializers.ValidationError(
                _("Not a platform: %(platform)s. Choose from %(allowed)s.")
                % {"platform": value, "allowed": ", ".join(_PLATFORMS)}
            )
        return value

    def validate_language(self, value: str) -> str:
        value = value.strip().lower()
        if value and value not in desk_languages():
            raise serializers.ValidationError(
                _("Not a desk language: %(language)s. Choose from %(allowed)s.")
                % {"language": value, "allowed": ", ".join(desk_languages())}
            )
        return value


class _RuleRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class _DecisionSerializer(serializers.Serializer):
    queue_id = serializers.IntegerField(allow_null=True)
    queue_name = serializers.CharField(allow_blank=True)
    priority = serializers.IntegerField(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    sla_policy_id = serializers.IntegerField(allow_null=True)
    sla_policy_name = serializers.CharField(allow_blank=True)
    is_noise = serializers.BooleanField()
    requires_approval = serializers.BooleanField()
    rule_ids = serializers.ListField(child=serializers.IntegerField())
    reason = serializers.CharField()


class _TraceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    position = serializers.IntegerField()
    outcome = serializers.ChoiceField(
        choices=(
            (RuleTrace.Outcome.MATCHED, _("matched")),
            (RuleTrace.Outcome.NOT_MATCHED, _("did not match")),
            (RuleTrace.Outcome.NOT_REACHED, _("not reached: an earlier rule stopped evaluation")),
            (RuleTrace.Outcome.BROKEN, _("cannot run: stored with invalid values")),
        )
    )
    failed_condition = serializers.CharField(
        allow_blank=True, help_text=_("Field of the first condition that did not hold.")
    )
    detail = serializers.CharField(allow_blank=True)


class RoutingPreviewSerializer(serializers.Serializer):
    language = serializers.CharField(allow_blank=True, help_text=_("Empty: unknown."))
    language_detected = serializers.BooleanField()
    sentiment = serializers.FloatField(
        allow_null=True, help_text=_("Null: no sentiment library for the language.")
    )
    local_time = serializers.TimeField(allow_null=True)
    weekday = serializers.IntegerField(allow_null=True)
    decision = _DecisionSerializer()
    matched_rules = _RuleRefSerializer(many=True)
    rules = _TraceSerializer(many=True)
    rules_version = serializers.CharField()


def _preview_data(preview: RoutingPreview) -> dict[str, Any]:
    decision = preview.decision
    names = {trace.rule_id: trace.name for trace in preview.traces}
    return {
        "language": preview.language,
        "language_detected": preview.language_detected,
        "sentiment": preview.sentiment,
        "local_time": preview.facts.local_time,
        "weekday": preview.facts.weekday,
        "decision": {
            "queue_id": decision.queue_id,
            "queue_name": preview.queue_name,
            "priority": decision.priority,
            "tags": list(decision.tags),
            "sla_policy_id": decision.sla_policy_id,
            "sla_policy_name": preview.sla_policy_name,
            "is_noise": decision.is_noise,
            "requires_approval": decision.requires_approval,
            "rule_ids": list(decision.rule_ids),
            "reason": decision.reason,
        },
        "matched_rules": [{"id": rule_id, "name": names.get(rule_id, "")} for rule_id in decision.rule_ids],
        "rules": [
            {
                "id": trace.rule_id,
                "name": trace.name,
                "position": trace.position,
                "outcome": trace.outcome,
                "failed_condition": trace.failed_condition,
                "detail": trace.detail,
            }
            for trace in preview.traces
        ],
        "rules_version": preview.rules_version,
    }


# --- Viewset ---------------------------------------------------------------------------------

_ERRORS = {
    400: OpenApiResponse(description=_("Invalid input; the detail names each field and why.")),
    403: OpenApiResponse(description=_("Not allowed: reading needs a desk user, writing a lead.")),
}


@extend_schema_view(
    create=extend_schema(responses={201: RoutingRuleSerializer, **_ERRORS}),
    update=extend_schema(responses={200: RoutingRuleSerializer, **_ERRORS}),
    partial_update=extend_schema(responses={200: RoutingRuleSerializer, **_ERRORS}),
    destroy=extend_schema(responses={204: None, 403: _ERRORS[403]}),
)
class RoutingRuleViewSet(viewsets.ModelViewSet):
    """Routing rules in evaluation order (position, then id)."""

    serializer_class = RoutingRuleSerializer
    filterset_fields = ("enabled", "queue")
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self) -> QuerySet[RoutingRule]:
        return routing_rules_visible_to(self.request.user)

    def get_permissions(self) -> list[BasePermission]:
        if self.action in ("list", "retrieve", "preview"):
            return [IsAuthenticated(), IsDeskUser()]
        return [IsAuthenticated(), IsLead()]

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.get_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        arguments = data.service_arguments()
        try:
            rule = routing_rule_create(
                fields=arguments["fields"], source_ids=arguments["source_ids"] or (), actor=request.user
            )
        except DjangoValidationError as exc:
            raise _drf_errors(exc) from exc
        return Response(self._out(rule), status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rule = self.get_object()
        data = self.get_serializer(rule, data=request.data, partial=kwargs.get("partial", False))
        data.is_valid(raise_exception=True)
        arguments = data.service_arguments()
        try:
            rule = routing_rule_update(rule_id=rule.pk, actor=request.user, **arguments)
        except DjangoValidationError as exc:
            raise _drf_errors(exc) from exc
        return Response(self._out(rule))

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rule = self.get_object()
        routing_rule_delete(rule_id=rule.pk, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=RoutingRuleReorderSerializer, responses={200: RoutingRuleSerializer(many=True), **_ERRORS}
    )
    @action(detail=False, methods=["post"])
    def reorder(self, request: Request) -> Response:
        """Put every rule in the given order (positions become 10, 20, 30 …)."""
        data = RoutingRuleReorderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            routing_rules_reorder(rule_ids=data.validated_data["rule_ids"], actor=request.user)
        except DjangoValidationError as exc:
            raise _drf_errors(exc) from exc
        rules = self.get_queryset()
        return Response(self.get_serializer(rules, many=True).data)

    @extend_schema(
        request=RoutingPreviewInputSerializer,
        responses={200: RoutingPreviewSerializer, **_ERRORS},
        summary="Try a sample message against the rules in force",
    )
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """Route a sample message without storing anything: detected language, sentiment, the
        decision, and for every rule whether it matched or the first condition that did not hold."""
        data = RoutingPreviewInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        preview = routing_preview(
            text=given["text"],
            platform=given["platform"],
            source=given["source_id"],
            is_public=given["is_public"],
            followers_count=given["followers_count"],
            verified=given["verified"],
            vip=given["vip"],
            has_open_ticket=given["has_open_ticket"],
            language=given["language"],
            language_hint=given["language_hint"],
            sentiment=given["sentiment"],
            created_at=given["created_at"],
        )
        return Response(RoutingPreviewSerializer(_preview_data(preview)).data)

    def _out(self, rule: RoutingRule) -> dict[str, Any]:
        fresh = self.get_queryset().get(pk=rule.pk)
        return self.get_serializer(fresh).data


def register(router: DefaultRouter) -> None:
    """Register this area's viewsets on the API router."""
    router.register("routing-rules", RoutingRuleViewSet, basename="routing-rules")
