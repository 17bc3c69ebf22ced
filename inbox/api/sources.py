"""REST endpoints for sources: connect, change, enable, "poll now", and their health.

Team leads and admins only. Secrets are write-only: a request may set them
(``secrets`` replaces all stored ones), a response only says which names are stored.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import DefaultRouter
from rest_framework.settings import api_settings

from inbox.api.permissions import IsLead
from inbox.models import Queue, Source
from inbox.selectors.sources import sources_visible_to
from inbox.services.sources import (
    ProfileNoteFailed,
    SourceError,
    source_create,
    source_poll_now,
    source_update,
    source_update_profile_note,
)


class SourceSerializer(serializers.ModelSerializer):
    default_queue = serializers.PrimaryKeyRelatedField(
        queryset=Queue.objects.all(), allow_null=True, required=False
    )
    secrets = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), write_only=True, required=False,
        help_text=_("Tokens and app secrets. Write-only: replaces every stored secret; never returned."),
    )
    secret_names = serializers.SerializerMethodField(help_text=_("Names of the stored secrets (never values)."))

    class Meta:
        model = Source
        fields = [
            "id", "name", "platform", "enabled", "config", "account_id", "default_queue",
            "poll_interval_seconds", "secrets", "secret_names",
            "last_polled_at", "next_poll_at", "last_success_at", "last_error_at", "last_error",
            "consecutive_failures", "needs_reauth", "lag_seconds", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = [
            "last_polled_at", "next_poll_at", "last_success_at", "last_error_at", "last_error",
            "consecutive_failures", "needs_reauth", "lag_seconds", "created_at", "updated_at",
        ]  # fmt: skip

    def get_secret_names(self, source: Source) -> list[str]:
        return sorted(source.secrets or {})

    def validate_platform(self, value: str) -> str:
        if self.instance is not None and value != self.instance.platform:
            raise serializers.ValidationError(_("The platform of a source cannot change; connect a new source."))
        return value


def _service_error(exc: SourceError) -> serializers.ValidationError:
    return serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [str(exc)]})


class ProfileNoteSerializer(serializers.Serializer):
    text = serializers.CharField(allow_blank=True, trim_whitespace=False, max_length=10_000)


class ProfileNoteErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()


class SourceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                    mixins.UpdateModelMixin, viewsets.GenericViewSet):
    """Connected accounts and feeds with their health (last success, last error, lag, needs
    re-authorization). Sources are disabled rather than deleted: their messages stay."""

    serializer_class = SourceSerializer
    permission_classes = [IsAuthenticated, IsLead]

    def get_queryset(self):
        return sources_visible_to(self.request.user)

    def perform_create(self, serializer: SourceSerializer) -> None:
        attrs: dict[str, Any] = dict(serializer.validated_data)
        try:
            serializer.instance = source_create(actor=self.request.user, **attrs)
        except SourceError as exc:
            raise _service_error(exc) from exc

    def perform_update(self, serializer: SourceSerializer) -> None:
        attrs: dict[str, Any] = dict(serializer.validated_data)
        secrets = attrs.pop("secrets", None)
        attrs.pop("platform", None)
        try:
            serializer.instance = source_update(
                source=serializer.instance, actor=self.request.user, changes=attrs, secrets=secrets
            )
        except SourceError as exc:
            raise _service_error(exc) from exc

    @extend_schema(request=None, responses={202: SourceSerializer})
    @action(detail=True, methods=["post"], url_path="poll-now")
    def poll_now(self, request: Request, pk: str | None = None) -> Response:
        """Poll the source now (single-flight: a poll already running is not doubled)."""
        try:
            source = source_poll_now(source=self.get_object(), actor=request.user)
        except SourceError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(source).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=ProfileNoteSerializer,
        responses={200: SourceSerializer, 400: ProfileNoteErrorSerializer, 409: ProfileNoteErrorSerializer,
                   501: ProfileNoteErrorSerializer, 502: ProfileNoteErrorSerializer,
                   503: ProfileNoteErrorSerializer},
    )
    @action(detail=True, methods=["post"], url_path="profile-note")
    def profile_note(self, request: Request, pk: str | None = None) -> Response:
        """Write the brand's profile note on the platform (Mastodon note, Bluesky description).
        501: the platform has none; 502: the platform refused it (reason given); 503: try later."""
        payload = ProfileNoteSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            source = source_update_profile_note(
                source=self.get_object(), actor=request.user, text=payload.validated_data["text"]
            )
        except ProfileNoteFailed as exc:
            code = (
                status.HTTP_501_NOT_IMPLEMENTED if not exc.supported
                else status.HTTP_503_SERVICE_UNAVAILABLE if exc.retryable
                else status.HTTP_502_BAD_GATEWAY
            )
            return Response({"detail": str(exc)}, status=code)
        except SourceError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(source).data)


def register(router: DefaultRouter) -> None:
    router.register("sources", SourceViewSet, basename="source")
